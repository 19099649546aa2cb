from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from embedops.errors import ModelLoadError
from embedops.models.artifacts import ensure_artefact, file_sha256
from embedops.models.base import ModelSpec

SPEC = ModelSpec(
    name="m",
    path=Path("."),
    digest="sha256:" + "a" * 64,
    dim=4,
    max_tokens=8,
    backend="onnx",
    precision="fp32",
)


RECIPE = "plain graph, opset 17"


class Builder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, folder: Path) -> dict[str, Any]:
        self.calls += 1
        (folder / "model.onnx").write_bytes(b"built %d" % self.calls)
        return {"note": "test"}


def test_built_once_then_reused(tmp_path: Path) -> None:
    build = Builder()
    first = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    again = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    assert first == again == tmp_path / SPEC.version / "model.onnx"
    assert build.calls == 1
    manifest = json.loads((first.parent / "manifest.json").read_text())
    assert manifest["weights_digest"] == SPEC.digest
    assert manifest["sha256"] == file_sha256(first)
    assert manifest["note"] == "test"


def test_file_not_matching_manifest_is_rebuilt(tmp_path: Path) -> None:
    build = Builder()
    path = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    path.write_bytes(b"tampered")
    path = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    assert build.calls == 2 and path.read_bytes() == b"built 2"


def test_other_weights_digest_is_rebuilt(tmp_path: Path) -> None:
    build = Builder()
    path = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["weights_digest"] = "sha256:" + "b" * 64
    manifest_path.write_text(json.dumps(manifest))
    ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    assert build.calls == 2
    assert json.loads(manifest_path.read_text())["weights_digest"] == SPEC.digest


def test_folder_artefacts_and_failed_builds(tmp_path: Path) -> None:
    def build_folder(folder: Path) -> dict[str, Any]:
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_bytes(b"x")
        return {}

    spec = dataclasses.replace(SPEC, backend="static")
    path = ensure_artefact(tmp_path, spec, "model", build_folder, RECIPE)
    assert path.is_dir()

    def broken(folder: Path) -> dict[str, Any]:
        raise RuntimeError("exporter crashed")

    other = dataclasses.replace(SPEC, precision="int8")
    with pytest.raises(ModelLoadError, match="exporter crashed"):
        ensure_artefact(tmp_path, other, "model.onnx", broken, RECIPE)
    assert not (tmp_path / other.version).exists()


def test_artefact_of_another_recipe_is_rebuilt(tmp_path: Path) -> None:
    """A cached file from an older build (e.g. fused offline) is not used for a new recipe."""
    build = Builder()
    ensure_artefact(tmp_path, SPEC, "model.onnx", build, "offline BERT fusions")
    path = ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    assert build.calls == 2 and path.read_bytes() == b"built 2"
    assert json.loads((path.parent / "manifest.json").read_text())["recipe"] == RECIPE
    ensure_artefact(tmp_path, SPEC, "model.onnx", build, RECIPE)
    assert build.calls == 2
