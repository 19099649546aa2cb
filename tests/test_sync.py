"""Incremental sync (issue 11, point 1): inserts, text updates, metadata-only updates,
unchanged rows, deletes of a full snapshot, kept fields added later; the counts add up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from embedops import EmbeddingProcessor, RunReport
from embedops.config import Settings
from tests.fakes import FakeEmbedder


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "text": f"text number {i}", "cat": f"c{i % 3}", "n": i} for i in range(n)
    ]


def _adds_up(report: RunReport) -> None:
    assert report.read == (
        report.inserted
        + report.updated
        + report.metadata_updated
        + report.unchanged
        + report.deleted
        + report.quarantined
    )
    assert report.embedded == report.inserted + report.updated


def _table(p: EmbeddingProcessor, fake: FakeEmbedder) -> dict[str, dict[str, Any]]:
    data = p.store.collection("c", fake.spec.version)._table.to_arrow().to_pylist()
    return {row["id"]: row for row in data}


def test_each_kind_of_change_is_applied_and_counted(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src = tmp_path / "in.jsonl"
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        first = p.process(_jsonl(src, _rows(30)), collection="c", id_field="id",
                          text_field="text", keep=["cat"])  # fmt: skip
        assert (first.inserted, first.updated, first.unchanged) == (30, 0, 0)
        rows = _rows(30)
        rows[1]["text"] = "a new text"  # text changed: embedded again
        rows[2]["cat"] = "moved"  # metadata alone: no embedding
        rows.append({"id": "new", "text": "brand new", "cat": "c9"})  # inserted
        calls = len(fake.texts_embedded)
        report = p.process(_jsonl(src, rows), collection="c", id_field="id",
                           text_field="text", keep=["cat"])  # fmt: skip
        _adds_up(report)
        assert (report.inserted, report.updated, report.metadata_updated) == (1, 1, 1)
        assert (report.unchanged, report.embedded, report.deleted) == (28, 2, 0)
        assert sorted(fake.texts_embedded[calls:]) == ["a new text", "brand new"]
        table = _table(p, fake)
        assert len(table) == 31
        assert table["r2"]["cat"] == "moved" and table["r2"]["text"] == "text number 2"
        np.testing.assert_allclose(table["r2"]["vector"], fake.embed(["text number 2"])[0], 1e-6)
        assert table["r1"]["text"] == "a new text"


def test_a_kept_field_added_later_fills_unchanged_rows(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src = _jsonl(tmp_path / "in.jsonl", _rows(10))
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        p.process(src, collection="c", id_field="id", text_field="text", keep=["cat"])
        calls = len(fake.texts_embedded)
        report = p.process(src, collection="c", id_field="id", text_field="text",
                           keep=["cat", "n"])  # fmt: skip
        _adds_up(report)
        assert (report.metadata_updated, report.embedded) == (10, 0)
        assert len(fake.texts_embedded) == calls
        table = _table(p, fake)
        assert sorted(row["n"] for row in table.values()) == list(range(10))
        again = p.process(src, collection="c", id_field="id", text_field="text",
                          keep=["cat", "n"])  # fmt: skip
        assert again.unchanged == 10


def test_delete_missing_treats_the_input_as_a_snapshot(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src = tmp_path / "in.jsonl"
    settings = Settings(store=tmp_path / "s", read_rows=7, sort_window=5)  # many windows
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        p.process(_jsonl(src, _rows(40)), collection="c", id_field="id", text_field="text")
        rows = [r for r in _rows(40) if r["n"] % 4]  # every fourth row gone
        rows.append({"id": "r0", "text": ""})  # id present but quarantined: not deleted
        report = p.process(_jsonl(src, rows), collection="c", id_field="id",
                           text_field="text", delete_missing=True)  # fmt: skip
        _adds_up(report)
        assert (report.deleted, report.unchanged, report.quarantined) == (9, 30, 1)
        assert sorted(_table(p, fake)) == sorted(["r0", *(r["id"] for r in rows[:-1])])


def test_duplicates_across_windows_are_found_on_disk(tmp_path: Path) -> None:
    rows = [*_rows(50), {"id": "r3", "text": "again"}, {"id": "r49", "text": "again"}]
    src = _jsonl(tmp_path / "d.jsonl", rows)
    settings = Settings(store=tmp_path / "s", read_rows=4, sort_window=4)
    with EmbeddingProcessor(settings=settings, embedder=FakeEmbedder()) as p:
        report = p.process(src, collection="c", id_field="id", text_field="text")
    _adds_up(report)
    assert (report.inserted, report.reasons) == (50, {"duplicate_id": 2})
    lines = Path(str(report.quarantine_path)).read_text().splitlines()
    assert [json.loads(x)["detail"] for x in lines] == [
        "id 'r3' already used by row 4",
        "id 'r49' already used by row 50",
    ]


def test_a_change_feed_is_applied_in_order(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        p.process(_jsonl(tmp_path / "base.jsonl", _rows(5)), collection="c", id_field="id",
                  text_field="text", keep=["cat"])  # fmt: skip
        feed = [
            {"op": "upsert", "id": "r1", "text": "changed one", "cat": "c1"},  # updated
            {"op": "delete", "id": "r2"},  # deleted
            {"op": "upsert", "id": "x", "text": "fresh", "cat": "k"},  # inserted
            {"op": "delete", "id": "x"},  # deleted (the insert above came first)
            {"op": "upsert", "id": "x", "text": "fresh again", "cat": "k"},  # inserted again
            {"op": "delete", "id": "nobody"},  # not stored: unchanged
            {"op": "upsert", "id": "r3", "text": "text number 3", "cat": "moved"},  # metadata
            {"op": "upsert", "id": "r4", "text": "text number 4", "cat": "c1"},  # unchanged
            {"op": "merge", "id": "r0"},  # unknown op: quarantined
            {"op": "delete"},  # no id: quarantined
        ]
        report = p.process(_jsonl(tmp_path / "feed.jsonl", feed), collection="c",
                           id_field="id", text_field="text", keep=["cat"], feed=True)  # fmt: skip
        _adds_up(report)
        assert (report.inserted, report.updated, report.metadata_updated) == (2, 1, 1)
        assert (report.deleted, report.unchanged, report.quarantined) == (2, 2, 2)
        assert report.reasons == {"invalid_op": 1, "missing_id": 1}
        table = _table(p, fake)
        assert sorted(table) == ["r0", "r1", "r3", "r4", "x"]
        assert (table["x"]["text"], table["r1"]["text"]) == ("fresh again", "changed one")
        assert table["r3"]["cat"] == "moved"


def test_feed_and_delete_missing_are_refused_together(tmp_path: Path) -> None:
    import pytest

    from embedops.errors import ConfigError

    src = _jsonl(tmp_path / "f.jsonl", [{"op": "delete", "id": "a"}])
    with (
        EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p,
        pytest.raises(ConfigError, match="feed and delete_missing cannot go together"),
    ):
        p.process(src, collection="c", id_field="id", text_field="text", feed=True,
                  delete_missing=True)  # fmt: skip


def test_the_shared_embedding_cache_serves_a_second_collection(tmp_path: Path) -> None:
    """The same texts into a second collection cost lookups, not inference; the cache is
    bounded by size and keyed by model version."""
    fake = FakeEmbedder()
    src = _jsonl(tmp_path / "in.jsonl", _rows(40))
    settings = Settings(store=tmp_path / "s", embed_cache="on")
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        first = p.process(src, collection="one", id_field="id", text_field="text")
        assert (first.embed_cache_hits, first.embed_cache_hit_rate) == (0, 0.0)
        calls = len(fake.texts_embedded)
        second = p.process(src, collection="two", id_field="id", text_field="text")
        assert (second.inserted, second.embed_cache_hits, second.embed_cache_hit_rate) == (
            40,
            40,
            1.0,
        )
        assert len(fake.texts_embedded) == calls  # no inference
        np.testing.assert_array_equal(p.vectors("two", ["r5"]), p.vectors("one", ["r5"]))
    other = FakeEmbedder(dim=4)  # another model version: its own cache
    with EmbeddingProcessor(settings=settings, embedder=other) as p:
        third = p.process(src, collection="three", id_field="id", text_field="text")
        assert third.embed_cache_hits == 0
    from embedops.embed_cache import EmbedCache

    small = EmbedCache(tmp_path / "c", "m", dim=8, max_bytes=10 * (8 * 4 + 64))
    small.put([f"h{i}" for i in range(40)], np.ones((40, 8), dtype=np.float32))
    assert len(small.get([f"h{i}" for i in range(40)])) == 10  # the 10 most recent kept


def test_a_bad_row_budget_stops_the_run_and_keeps_what_was_stored(tmp_path: Path) -> None:
    import pytest

    from embedops.errors import ConfigError, TooManyBadRows

    rows: list[dict[str, Any]] = [
        {"id": f"r{i}", "text": "" if i % 10 == 9 else f"text {i}"} for i in range(3000)
    ]
    src = _jsonl(tmp_path / "bad.jsonl", rows)
    settings = Settings(store=tmp_path / "s", read_rows=500, sort_window=500)
    with EmbeddingProcessor(settings=settings, embedder=FakeEmbedder()) as p:
        with pytest.raises(TooManyBadRows, match=r"more than --max-quarantined allows \(5%\)"):
            p.process(src, collection="c", id_field="id", text_field="text",
                      max_quarantined="5%")  # fmt: skip
        report = p.last_report
        assert report is not None and report.status == "failed" and report.quarantined == 100
        ok = p.process(
            src, collection="c", id_field="id", text_field="text", max_quarantined="10%"
        )  # fmt: skip  (10% exactly is within the budget)
        assert (ok.quarantined, ok.read) == (300, 3000)
        with pytest.raises(TooManyBadRows, match=r"\(299 rows\)"):
            p.process(src, collection="d", id_field="id", text_field="text",
                      max_quarantined=299)  # fmt: skip
        with pytest.raises(ConfigError, match="a number of rows or a percentage"):
            p.process(src, collection="c", id_field="id", text_field="text",
                      max_quarantined="lots")  # fmt: skip


def test_malformed_rows_are_quarantined_and_the_run_goes_on(tmp_path: Path, capfd: Any) -> None:
    import pytest

    from embedops.errors import InvalidFormat

    csv_file = tmp_path / "m.csv"
    csv_file.write_text('id,text\n1,hello\n2,too,many,fields\n3,"a quoted\nvalue"\n4,x,y\n5,ok\n')
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"id": "1", "text": "a"}\nnot json\n[1, 2]\n{"id": "2", "text": "b"}\n')
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        report = p.process(csv_file, collection="c", id_field="id", text_field="text")
        _adds_up(report)
        assert (report.read, report.inserted, report.reasons) == (5, 3, {"malformed_row": 2})
        lines = [json.loads(x) for x in Path(str(report.quarantine_path)).read_text().splitlines()]
        assert [(q["row"], q["values"]["raw"]) for q in lines] == [
            (3, "2,too,many,fields"),
            (6, "4,x,y"),  # line 6: the quoted value above spans two lines
        ]
        report = p.process(jsonl, collection="j", id_field="id", text_field="text")
        _adds_up(report)
        assert (report.inserted, report.quarantined) == (2, 2)
        # Without an id field, ids are row numbers: a skipped line would renumber the rest.
        with pytest.raises(InvalidFormat, match="with --id-field, such rows are quarantined"):
            p.process(csv_file, collection="n", text_field="text")
        undecodable = tmp_path / "u.csv"
        undecodable.write_bytes(b"id,text\n1,ok\n2,bad\xff,x\n")
        with pytest.raises(InvalidFormat, match="holds bytes that are not UTF-8"):
            p.process(undecodable, collection="u", id_field="id", text_field="text")
    assert "Traceback" not in capfd.readouterr().err
