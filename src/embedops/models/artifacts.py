"""Built model artefacts (ONNX exports, quantised and static models), cached by weights digest.

Each artefact lives in ``<cache>/<model version>/`` with a ``manifest.json`` naming the source
weights' digest, the artefact's own sha256, and the library versions that built it. An
artefact whose manifest does not match the weights (or whose file does not match its manifest)
is rebuilt, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from embedops.errors import ModelLoadError
from embedops.models.base import ModelSpec

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, in name order)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
            digest.update(file_sha256(item).encode())
        return digest.hexdigest()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions(*names: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _valid(folder: Path, spec: ModelSpec, filename: str, recipe: str) -> bool:
    manifest_path = folder / MANIFEST
    artefact = folder / filename
    if not manifest_path.is_file() or not artefact.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    if manifest.get("weights_digest") != spec.digest or manifest.get("version") != spec.version:
        logger.warning("artefact %s was built from other weights; rebuilding", folder)
        return False
    if manifest.get("recipe") != recipe:
        logger.warning(
            "artefact %s was built by another recipe (%r, now %r); rebuilding",
            folder,
            manifest.get("recipe"),
            recipe,
        )
        return False
    if manifest.get("sha256") != file_sha256(artefact):
        logger.warning("artefact %s does not match its manifest; rebuilding", artefact)
        return False
    return True


def ensure_artefact(
    cache_dir: Path,
    spec: ModelSpec,
    filename: str,
    build: Callable[[Path], dict[str, Any]],
    recipe: str,
) -> Path:
    """Return ``<cache>/<version>/<filename>``, building it first if missing or stale.

    Args:
        cache_dir: the artefact cache root.
        spec: the model version the artefact belongs to.
        filename: the artefact inside its folder (a file, or a folder for static models).
        build: writes the artefact into the folder it is given and returns extra manifest
            fields. It runs under an exclusive lock, so parallel processes build once.
        recipe: how ``build`` makes the artefact (export, fusions, quantisation settings); an
            artefact built by another recipe is rebuilt, not used.

    Raises:
        ModelLoadError: the build failed.
    """
    folder = cache_dir / spec.version
    if _valid(folder, spec, filename, recipe):
        return folder / filename
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f".{spec.version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _valid(folder, spec, filename, recipe):
            return folder / filename
        staging = cache_dir / f".{spec.version}.building"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        started = time.perf_counter()
        logger.warning("building %s for %s (once; cached in %s)", filename, spec.version, folder)
        try:
            extra = build(staging)
        except Exception as exc:  # export and quantisation raise many types
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelLoadError(
                f"cannot build {filename} for {spec.version} from {spec.path} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        artefact = staging / filename
        manifest = {
            "name": spec.name,
            "version": spec.version,
            "weights_digest": spec.digest,
            "dim": spec.dim,
            "backend": spec.backend,
            "precision": spec.precision,
            "recipe": recipe,
            "sha256": file_sha256(artefact),
            "build_seconds": round(time.perf_counter() - started, 1),
            **extra,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        logger.info("built %s in %.1fs", folder / filename, manifest["build_seconds"])
        return folder / filename
