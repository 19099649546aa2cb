"""The Ray Data engine gives the local engine's table, quarantine and counts (issue 10, point 9).

A real local Ray with 2 CPUs and the ``static`` backend of the real default model: the same
input goes through ``engine="local"`` and ``engine="ray"`` into two stores, and the tables,
quarantine files and reports must agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedops import ConfigError, EmbeddingProcessor, ModelError, RunReport, Settings
from tests.conftest import shared_file

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

# Ray Data sizes the actor pool against its one input, the feed (see engines.ray).
pytestmark = pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors")

COLLECTION = "news"
# Small windows and reads: many windows stream through Ray, and bad rows fall in several.
SETTINGS: dict[str, Any] = {"backend": "static", "sort_window": 64, "read_rows": 50}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with 2 CPUs for the module (the engine uses it instead of starting one)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def _messy_csv(path: Path, news: Path) -> Path:
    """400 AG News records with an id column, and bad rows among them: an empty text, a
    duplicate id, invalid UTF-8; and an emoji-only text and repeated texts under new ids
    (the run's cache)."""
    lines = news.read_bytes().splitlines()[:400]
    out = [b"id,label,title,description"]
    for i, line in enumerate(lines):
        out.append(b'"n%d",' % i + line)
    out += [
        b'"empty","1","",""',
        b'"n7","2","A duplicate id","Its text is new."',
        b'"utf8","3","Bad \xff\xfe bytes","in the title"',
        b'"emoji","4","\xf0\x9f\x98\x80\xf0\x9f\x98\x80",""',
    ]
    out += [b'"copy%d",' % i + line for i, line in enumerate(lines[:30])]
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def _embed(store: Path, source: Path, engine: str) -> RunReport:
    settings = Settings(store=store, **SETTINGS)
    with EmbeddingProcessor(settings=settings) as processor:
        return processor.process(
            source,
            collection=COLLECTION,
            id_field="id",
            template="{title}. {description}",
            keep=["label"],
            engine=engine,
        )


def _table(store: Path, version: str) -> dict[str, tuple[np.ndarray, str, str, Any]]:
    import lancedb

    data = lancedb.connect(str(store)).open_table(f"{COLLECTION}--{version}").to_arrow()
    vectors = np.asarray(data.column("vector").to_pylist(), dtype=np.float32)
    return {
        i: (v, t, h, label)
        for i, v, t, h, label in zip(
            data.column("id").to_pylist(),
            vectors,
            data.column("text").to_pylist(),
            data.column("content_hash").to_pylist(),
            data.column("label").to_pylist(),
            strict=True,
        )
    }


def _quarantine(report: RunReport) -> list[tuple[int, str | None, str, str]]:
    assert report.quarantine_path is not None
    lines = Path(report.quarantine_path).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return sorted((r["row"], r["id"], r["reason"], r["detail"]) for r in records)


def _counts(report: RunReport) -> dict[str, Any]:
    keys = (
        "read",
        "embedded",
        "inserted",
        "updated",
        "metadata_updated",
        "unchanged",
        "quarantined",
        "reasons",
        "cleaned",
        "truncated",
    )
    return {k: getattr(report, k) for k in keys}


@pytest.mark.integration
def test_cli_starts_its_own_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``embedops embed --engine ray`` starts a local Ray, embeds, and shuts Ray down; run
    again, it finds every row unchanged and does not start Ray at all."""
    from typer.testing import CliRunner

    from embedops.cli import app
    from embedops.engines import ray as engine

    news = shared_file("ag_news_test.csv")
    source = tmp_path / "news.csv"
    source.write_bytes(b"\n".join(news.read_bytes().splitlines()[:200]) + b"\n")
    assert not ray.is_initialized()
    args = [
        "embed",
        str(source),
        "--collection",
        COLLECTION,
        "--columns",
        "label,title,description",
        "--template",
        "{title}. {description}",
        "--store",
        str(tmp_path / "store"),
        "--backend",
        "static",
        "--engine",
        "ray",
        "--quiet",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["read"], report["embedded"], report["status"]) == (200, 200, "finished")
    assert not ray.is_initialized()

    def no_ray(cpus: int | None = None) -> None:
        raise AssertionError("Ray was started for a run with nothing to embed")

    monkeypatch.setattr(engine, "ray_session", no_ray)
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert (again["embedded"], again["unchanged"], again["status"]) == (0, 200, "finished")


@pytest.mark.integration
def test_ray_engine_gives_the_local_table(tmp_path: Path, local_ray: None) -> None:
    source = _messy_csv(tmp_path / "news.csv", shared_file("ag_news_test.csv"))
    local = _embed(tmp_path / "local", source, "local")
    remote = _embed(tmp_path / "ray", source, "ray")

    assert remote.status == "finished"
    assert _counts(remote) == _counts(local)
    assert remote.read == remote.embedded + remote.unchanged + remote.quarantined
    assert remote.reasons == {"duplicate_id": 1, "empty_text": 1, "invalid_utf8": 1}
    assert _quarantine(remote) == _quarantine(local)
    assert remote.stored == local.stored == remote.embedded

    expected = _table(tmp_path / "local", local.model_version)
    got = _table(tmp_path / "ray", remote.model_version)
    assert sorted(got) == sorted(expected)
    ids = sorted(expected)
    a = np.stack([expected[i][0] for i in ids])
    b = np.stack([got[i][0] for i in ids])
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.9999
    assert [got[i][1:] for i in ids] == [expected[i][1:] for i in ids]  # text, hash, label

    # Rows stored with the same content hash are not embedded again, whichever engine
    # stored them.
    again = _embed(tmp_path / "local", source, "ray")
    assert (again.embedded, again.unchanged) == (0, local.embedded)
    assert again.quarantined == local.quarantined

    # A second version of the file: one text changed, one label changed (metadata only),
    # one new row. Both engines update both stores alike.
    lines = source.read_bytes().splitlines()
    lines[1] = b'"n0","1","A new title","and a new description"'
    item, label, rest = lines[2].split(b",", 2)
    lines[2] = b",".join([item, b'"0"' if label != b'"0"' else b'"1"', rest])
    lines.append(b'"new","2","One more","row"')
    changed = tmp_path / "news2.csv"
    changed.write_bytes(b"\n".join(lines) + b"\n")
    local2 = _embed(tmp_path / "local", changed, "local")
    remote2 = _embed(tmp_path / "ray", changed, "ray")
    assert _counts(remote2) == _counts(local2)
    assert (remote2.embedded, remote2.read - remote2.unchanged - remote2.quarantined) == (2, 3)
    expected = _table(tmp_path / "local", local.model_version)
    got = _table(tmp_path / "ray", remote.model_version)
    assert sorted(got) == sorted(expected)
    assert [got[i][1:] for i in sorted(got)] == [expected[i][1:] for i in sorted(got)]


def test_engine_is_checked_before_reading(tmp_path: Path, processor: EmbeddingProcessor) -> None:
    """An unknown engine, or the ray engine with an injected embedder (each actor loads the
    model itself), is a ConfigError before the source is opened."""
    missing = tmp_path / "missing.csv"
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        processor.process(missing, collection="c", text_field="t", engine="spark")
    with pytest.raises(ConfigError, match="loads the model in each Ray actor"):
        processor.process(missing, collection="c", text_field="t", engine="ray")


def test_an_actors_embedops_error_reaches_the_caller() -> None:
    """A ModelError raised in an actor arrives wrapped by Ray; the engine raises the original
    (its message and exit code), not Ray's wrapper with a remote traceback."""
    from ray.exceptions import RayTaskError

    from embedops.engines.ray import _embedops_cause

    original = ModelError("the model returned an array of shape (1,)")
    wrapped = RayTaskError("EmbedActor.__call__", "Traceback ...", original)
    try:
        raise RuntimeError("Ray Data failed") from wrapped
    except RuntimeError as outer:
        assert _embedops_cause(outer) is original
    assert _embedops_cause(RuntimeError("no embedops error")) is None
