"""Helpers of the experiment tests: tiny model directories that the ``hash`` backend serves
(no weights run: the vectors come from word hashes, the dimension from config.json), each
registered as its own model version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedops.models.registry import resolve_model
from embedops.registry import ModelRegistry


def tiny_model(folder: Path, name: str, dim: int) -> Path:
    """A model directory ``folder/name`` of dimension ``dim`` with MiniLM's tokenizer (for
    real token counts) and weights of its own (so its own digest and version)."""
    from safetensors.numpy import save_file

    path = folder / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"hidden_size": dim, "max_position_embeddings": 128})
    )
    tokenizer = resolve_model("all-MiniLM-L6-v2").path / "tokenizer.json"
    shutil.copy(tokenizer, path / "tokenizer.json")
    weights = np.full((2, 2), float(dim), dtype=np.float32)
    save_file({"w": weights, name.replace("-", "_"): weights}, str(path / "model.safetensors"))
    return path


def register(store: Path, model: Path, backend: str = "hash") -> str:
    """Register ``model`` run by ``backend`` in ``store``'s registry; its version."""
    return ModelRegistry(store=store).add(str(model), backend=backend).version


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    """Two tiny models: ``model-a`` (32 dimensions) and ``model-b`` (48)."""
    folder = tmp_path / "models"
    return {"a": tiny_model(folder, "model-a", 32), "b": tiny_model(folder, "model-b", 48)}


def register_evaluated(store: Path, model: Path, *, passed: bool) -> str:
    """Register ``model`` (hash backend) with recorded STS-B scores that pass the fp32 gate,
    or miss it (``passed=False``); its version."""
    import dataclasses

    from embedops.model_versions import Evaluation, version_record
    from embedops.models.loader import load_embedder
    from embedops.quality import GATES, STSB_REFERENCE

    spec = load_embedder(str(model), "hash").spec
    record = version_record(spec, model=str(model), local=True)
    gate = GATES["fp32"]
    evaluation = Evaluation(
        stsb_spearman=STSB_REFERENCE if passed else STSB_REFERENCE - 10,
        cosine_min=1.0,
        cosine_mean=1.0,
        reference=None,
        gate=gate,
        failures=(),
        data="stsb-dev.tsv",
        evaluated_at="2026-01-01T00:00:00+00:00",
    )
    failures = tuple(gate.failures(evaluation.scores(record.version)))
    evaluation = dataclasses.replace(evaluation, failures=failures)
    ModelRegistry(store=store).register(dataclasses.replace(record, evaluation=evaluation))
    return record.version
