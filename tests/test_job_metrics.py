"""Watching a running job (issue 10, point 8): Prometheus metrics of a run in a textfile and
on a port, and one JSON log line per commit."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cli import app
from embedops.config import Settings
from tests.fakes import FakeEmbedder

SMALL_WINDOWS = {"EMBEDOPS_SORT_WINDOW": "100", "EMBEDOPS_READ_ROWS": "100"}


def _source(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("id,text\n" + "".join(f"{i},item {i}\n" for i in range(n)) + "x,\n")
    return path


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in:\n{text}")


def test_a_run_writes_its_metrics_to_a_textfile(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    out = tmp_path / "metrics" / "embedops.prom"
    settings = Settings(store=tmp_path / "s", sort_window=100, read_rows=100)
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        p.process(_source(tmp_path, 500), collection="c", id_field="id", text_field="text",
                  metrics_file=out)  # fmt: skip
    text = out.read_text()
    labels = {"collection": "c", "model_version": fake.spec.version}
    assert _metric(text, "embedops_job_rows", outcome="read", **labels) == 501
    assert _metric(text, "embedops_job_rows", outcome="inserted", **labels) == 500
    assert _metric(text, "embedops_job_rows", outcome="quarantined", **labels) == 1
    assert _metric(text, "embedops_job_progress_ratio", **labels) == 1.0
    assert _metric(text, "embedops_job_running", **labels) == 0
    assert _metric(text, "embedops_job_batch_seconds_count", **labels) >= 5
    assert _metric(text, "embedops_job_max_rss_bytes", **labels) > 10_000_000


def test_metrics_are_served_on_a_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        p.process(_source(tmp_path, 50), collection="c", id_field="id", text_field="text",
                  metrics_port=port)  # fmt: skip
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    assert _metric(text, "embedops_job_rows", outcome="inserted", collection="c") == 50


def test_log_json_gives_one_line_per_commit(tmp_path: Path) -> None:
    import embedops.processor

    fake = FakeEmbedder()
    source = _source(tmp_path, 1000)
    runner = CliRunner()
    original = embedops.processor.load_embedder
    embedops.processor.load_embedder = lambda *a, **k: fake  # type: ignore[assignment]
    try:
        result = runner.invoke(app, ["--log-json", "embed", str(source), "-c", "c", "--id-field",
                                     "id", "--text-field", "text", "--store", str(tmp_path / "s"),
                                     "--commit-every", "300", "--quiet"],
                               env=SMALL_WINDOWS)  # fmt: skip
    finally:
        embedops.processor.load_embedder = original  # type: ignore[assignment]
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    commits = [x for x in lines if x["message"].startswith("committed")]
    assert sum(x["rows"] for x in commits) == 1000 and len(commits) >= 3
    assert commits[-1]["committed"] == 1000 and commits[-1]["table"].startswith("c--")
