"""Published versions (issue 11, point 2): readers see a run whole or not at all; history,
rollback and promotion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cli import app
from embedops.config import Settings
from embedops.errors import ConfigError
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int, word: str = "text") -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"{word} number {i}"} for i in range(n)]


def _texts(p: EmbeddingProcessor, fake: FakeEmbedder) -> dict[str, str]:
    table = p.store.collection("c", fake.spec.version)._table.to_arrow()
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))


def test_history_and_rollback(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src = tmp_path / "in.jsonl"
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        first = p.process(_jsonl(src, _rows(10)), collection="c", id_field="id", text_field="text")
        second = p.process(_jsonl(src, _rows(12, "new")), collection="c", id_field="id",
                           text_field="text", delete_missing=True)  # fmt: skip
        assert (first.published, second.published) == (1, 2)
        assert _texts(p, fake)["r11"] == "new number 11" and len(_texts(p, fake)) == 12
        history = p.history("c")
        assert [(e.number, e.action) for e in history] == [(1, "run"), (2, "run")]
        assert history[1].report is not None and history[1].report["updated"] == 10
        entry = p.rollback("c", 1)
        assert (entry.number, entry.action, entry.note) == (3, "rollback", "rollback to 1")
        assert _texts(p, fake) == {f"r{i}": f"text number {i}" for i in range(10)}
        # the next run builds on the rolled-back state
        again = p.process(src, collection="c", id_field="id", text_field="text")
        assert (again.updated, again.inserted, again.published) == (10, 2, 4)
        with pytest.raises(ConfigError, match=r"no published version 9; versions: 1, 2, 3, 4"):
            p.rollback("c", 9)


def test_rollback_through_the_cli(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    store = tmp_path / "s"
    with EmbeddingProcessor(store=store, embedder=fake) as p:
        p.process(_jsonl(tmp_path / "a.jsonl", _rows(3)), collection="c", id_field="id",
                  text_field="text")  # fmt: skip
        p.process(_jsonl(tmp_path / "a.jsonl", _rows(5)), collection="c", id_field="id",
                  text_field="text")  # fmt: skip
    result = runner.invoke(app, ["history", "c", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.stderr
    assert [e["report"]["inserted"] for e in json.loads(result.stdout)] == [3, 2]
    result = runner.invoke(app, ["rollback", "c", "7", "--store", str(store)])
    assert result.exit_code == ConfigError.exit_code
    assert "no published version 7; versions: 1, 2" in result.stderr
    result = runner.invoke(app, ["rollback", "c", "1", "--store", str(store)])
    assert result.exit_code == 0, result.stderr
    assert "as published version 3" in result.stdout


_READER = """
import json, sys, time
from embedops.store import VectorStore
store, version, seconds = VectorStore(sys.argv[1]), sys.argv[2], float(sys.argv[3])
seen = set()
end = time.monotonic() + seconds
while time.monotonic() < end:
    table = store.collection("c", version)._table.to_arrow()
    snapshot = sorted(zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist()))
    if not seen:
        print("ready", flush=True)
    seen.add(json.dumps(snapshot))
print(json.dumps(sorted(seen)))
"""


def test_readers_see_a_run_whole_or_not_at_all(tmp_path: Path) -> None:
    """A second process reads the collection over and over while a sync of 6,000 rows commits
    in steps of 500; every snapshot it saw is the state before or after the run."""
    fake = FakeEmbedder()
    store = tmp_path / "s"
    src = tmp_path / "in.jsonl"
    settings = Settings(store=store, commit_rows=500, sort_window=500, read_rows=500)
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        p.process(_jsonl(src, _rows(3000)), collection="c", id_field="id", text_field="text")

        def state() -> str:
            table = p.store.collection("c", fake.spec.version)._table.to_arrow()
            ids = table.column("id").to_pylist()
            hashes = table.column("content_hash").to_pylist()
            return json.dumps(sorted(zip(ids, hashes, strict=True)))

        before = state()
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, str(store), fake.spec.version, "6"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        rows = _rows(3000, "changed") + [{"id": f"n{i}", "text": f"new {i}"} for i in range(3000)]
        report = p.process(_jsonl(src, rows), collection="c", id_field="id", text_field="text")
        assert (report.updated, report.inserted, report.stored) == (3000, 3000, 6000)
        after = state()
        out = reader.stdout.read()
        reader.wait(timeout=60)
    seen = set(json.loads(out))
    assert before != after and before in seen
    assert seen <= {before, after}, f"{len(seen)} snapshots, {len(seen - {before, after})} mixed"


def test_only_the_newest_published_versions_stay_tagged(tmp_path: Path) -> None:
    """LanceDB's cleanup stops at the oldest tagged version: tags of every version ever
    published would keep every version, so only EMBEDOPS_KEEP_PUBLISHED stay tagged."""
    fake = FakeEmbedder()
    src = tmp_path / "in.jsonl"
    settings = Settings(store=tmp_path / "s", keep_published=3, upkeep=False)
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        for n in range(6):
            p.process(_jsonl(src, _rows(3, f"w{n}")), collection="c", id_field="id",
                      text_field="text")  # fmt: skip
        table = p.store.collection("c", fake.spec.version)._table
        tags = sorted(table.tags.list())
        assert [t.split("-v")[0] for t in tags] == ["published-4", "published-5", "published-6"]
        assert [e.number for e in p.history("c")] == [1, 2, 3, 4, 5, 6]


def test_a_table_says_which_model_made_its_vectors(tmp_path: Path) -> None:
    from embedops.store import model_spec_of

    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        p.process(_jsonl(tmp_path / "a.jsonl", _rows(3)), collection="c", id_field="id",
                  text_field="text")  # fmt: skip
        spec = model_spec_of(p.store.collection("c", fake.spec.version)._table)
    assert spec["model_version"] == fake.spec.version
    assert (spec["dim"], spec["digest"], spec["pooling"]) == ("8", fake.spec.digest, "mean")
