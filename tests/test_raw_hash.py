"""Unchanged rows found by their raw cells (issue 10, point 2): a row whose id, text and kept
cells the table holds as read is neither decoded nor cleaned again; everything else takes the
full path, and the reports are those of the full path."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedops import EmbeddingProcessor, RunReport
from embedops.cleaning import Cleaner, CleanOptions, FieldSpec
from embedops.sources import open_source
from embedops.state import StoredState, hex64, hex64_arrow, raw_words
from embedops.store import raw_column
from tests.fakes import FakeEmbedder


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("id,text,cat\n" + "".join(line + "\n" for line in lines))
    return path


def _counts(report: RunReport) -> tuple[int, int, int, int, int]:
    return (
        report.inserted,
        report.updated,
        report.metadata_updated,
        report.unchanged,
        report.quarantined,
    )


class _Counting:
    """Counts the records the cleaner cleans (``Cleaner._clean_record`` calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = Cleaner._clean_record

        def counted(cleaner: Cleaner, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(cleaner, *args, **kwargs)

        monkeypatch.setattr(Cleaner, "_clean_record", counted)


def _process(p: EmbeddingProcessor, src: Path, **options: Any) -> RunReport:
    return p.process(src, collection="c", id_field="id", text_field="text", **options)


def test_unchanged_rows_are_not_cleaned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [f"r{i},text  number {i} <b>bold</b>,c{i % 3}" for i in range(50)]
    src = _csv(tmp_path / "in.csv", [*lines, ",no id,c1", "r7,a duplicate of r7,c1"])
    fake = FakeEmbedder()
    counting = _Counting(monkeypatch)
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        first = _process(p, src, keep=["cat"])
        assert counting.calls == 52 and _counts(first) == (50, 0, 0, 0, 2)
        counting.calls = 0
        again = _process(p, src, keep=["cat"])
    # Only the two bad rows were cleaned; the 50 stored ones were matched by their raw cells.
    assert counting.calls == 2
    assert _counts(again) == (0, 0, 0, 50, 2)
    assert again.reasons == first.reasons == {"duplicate_id": 1, "missing_id": 1}
    # What cleaning changed is kept with the raw hash: the counts of a re-run stay the same.
    assert first.cleaned == again.cleaned == {"markup": 50, "control_chars": 0, "normalized": 50}
    assert len(fake.texts_embedded) == 50


def test_changed_cells_that_clean_to_the_same_row_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        _process(p, _csv(src, ["a,hello world,x", "b,second text,y"]), keep=["cat"])
        counting = _Counting(monkeypatch)
        # Other raw text, same cleaned text; and a row whose kept cell changed.
        report = _process(p, _csv(src, ["a,  hello   world ,x", "b,second text,z"]), keep=["cat"])
        assert counting.calls == 2  # neither row matched by its raw cells
        assert _counts(report) == (0, 0, 1, 1, 0)
        counting.calls = 0
        again = _process(p, src, keep=["cat"])
    # The metadata update stored b's new raw hash; a's stored hash is still of its old cells.
    assert counting.calls == 1
    assert _counts(again) == (0, 0, 0, 2, 0)
    assert len(fake.texts_embedded) == 2


def test_a_known_row_repeated_or_after_its_id_is_a_duplicate(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        _process(p, _csv(src, ["a,alpha,x", "b,beta,y", "c,gamma,z"]))
        # "a" twice as stored; "b" first with a new text, then as stored.
        report = _process(
            p, _csv(src, ["a,alpha,x", "b,beta changed,y", "a,alpha,x", "b,beta,y", "c,gamma,z"])
        )
    assert _counts(report) == (0, 1, 0, 2, 2)
    records = [
        json.loads(line)
        for line in Path(report.quarantine_path or "").read_text().split("\n")
        if line
    ]
    found = sorted((r["row"], r["id"], r["reason"], r["detail"]) for r in records)
    assert found == [
        (3, "a", "duplicate_id", "id 'a' already used by row 1"),
        (4, "b", "duplicate_id", "id 'b' already used by row 2"),
    ]
    assert records[0]["values"] == {"id": "a", "text": "alpha", "cat": "x"}


def test_another_recipe_matches_nothing(tmp_path: Path) -> None:
    """Other cleaning options or kept fields clean the same cells into other rows: no raw
    hash matches, and the full path finds what changed."""
    src = _csv(tmp_path / "in.csv", ["a,Caf\u00e9  ok,x", "b,plain,y"])
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        _process(p, src)
        kept = _process(p, src, keep=["cat"])
        assert _counts(kept) == (0, 0, 2, 0, 0)
        raw = _process(p, src, keep=["cat"], normalize=False)
    assert _counts(raw) == (0, 1, 0, 1, 0)  # only a's text cleans differently


def test_a_table_without_raw_hashes_takes_the_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        _process(p, _csv(src, ["a,alpha,x", "b,beta,y"]))
        name = p.store.table_name("c", fake.spec.version)
    # A table written before raw hashes: the column is gone.
    table = lancedb.connect(tmp_path / "s").open_table(name)
    table.drop_columns(["raw_hash"])
    assert "raw_hash" not in table.schema.names
    counting = _Counting(monkeypatch)
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        report = _process(p, src)
        assert counting.calls == 2 and _counts(report) == (0, 0, 0, 2, 0)
        # A changed row is written with its raw hash (the column comes back) ...
        changed = _process(p, _csv(src, ["a,alpha,x", "b,beta two,y"]))
        assert _counts(changed) == (0, 1, 0, 1, 0)
        counting.calls = 0
        again = _process(p, src)
    # ... and is matched by it from then on; the old row still takes the full path.
    assert counting.calls == 1 and _counts(again) == (0, 0, 0, 2, 0)
    rows = {
        r["id"]: r for r in lancedb.connect(tmp_path / "s").open_table(name).to_arrow().to_pylist()
    }
    assert rows["a"]["raw_hash"] is None and len(rows["b"]["raw_hash"]) == 16


def test_parquet_cells_of_other_types_are_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.parquet"
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "text": ["one", "two", "three"],
            "price": pa.array([1.5, None, -0.0]),
            "day": pa.array([date(2024, 1, 1), None, date(2024, 2, 29)], pa.date32()),
        }
    )
    pq.write_table(table, src)
    counting = _Counting(monkeypatch)
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        p.process(src, collection="c", id_field="id", text_field="text", keep=["price", "day"])
        counting.calls = 0
        again = p.process(
            src, collection="c", id_field="id", text_field="text", keep=["price", "day"]
        )
        assert counting.calls == 0 and again.unchanged == 3
        # The same numbers as text are other cells: a string id "1" is not the int 1.
        pq.write_table(table.set_column(0, "id", pa.array(["1", "2", "3"])), src)
        as_text = p.process(
            src, collection="c", id_field="id", text_field="text", keep=["price", "day"]
        )
    assert counting.calls == 3 and as_text.unchanged == 3


def test_raw_hashes_depend_on_every_read_cell_and_the_recipe(tmp_path: Path) -> None:
    src = _csv(tmp_path / "in.csv", ["a,t,x", "a,t,y", "a,t ,x", "a,t,", "a,t,x"])
    batch = next(open_source(src).batches())
    spec = FieldSpec(text_field="text", id_field="id", keep=("cat",))
    words = Cleaner(spec, CleanOptions()).raw_hashes(batch)
    assert words is not None and words.shape == (5, 2)
    assert len({tuple(w) for w in words[:4].tolist()}) == 4  # each cell counts
    assert words[0].tolist() == words[4].tolist()
    assert not (words[:, 1] & np.uint64(7)).any()  # the flag bits are clear
    other = Cleaner(spec, CleanOptions(strip_markup=False)).raw_hashes(batch)
    unkept = Cleaner(FieldSpec(text_field="text", id_field="id"), CleanOptions()).raw_hashes(batch)
    assert other is not None and unkept is not None
    assert not (other[0] == words[0]).all() and not (unkept[0] == words[0]).all()
    # Without an id field the row number is the id: it is part of the hash.
    by_row = Cleaner(FieldSpec(text_field="text"), CleanOptions()).raw_hashes(batch)
    assert by_row is not None and by_row[0].tolist() != by_row[4].tolist()
    assert Cleaner(spec, CleanOptions(), feed=True).raw_hashes(batch) is None


def test_stored_state_matches_raw_hashes_and_keeps_flags(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    state = StoredState(folder)
    raws = [11 | (8 | 3) << 64, 0, 13 | 16 << 64]  # a: flags 3; b: no raw hash
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(["a", "b", "c"]),
            pa.array(["f" * 32, "0" * 32, "1" * 32]),
            pa.array(["", None, "2" * 16]),
            raw_column(raws, 3),
        ],
        names=["id", "content_hash", "meta_hash", "raw_hash"],
    )
    state.add_batch(batch)
    state.compact()
    assert state.has_raw
    query = np.array([[11, 8], [13, 16], [13, 24], [12, 8]], dtype=np.uint64)
    found, ids, flags = state.match(query)
    assert found.tolist() == [True, True, False, False]
    assert flags.tolist()[:2] == [3, 0]
    stored, content, meta = state.lookup(ids[:2])
    assert stored.all() and content.tolist() == [int("f" * 16, 16), int("1" * 16, 16)]
    assert meta.tolist() == [0, int("2" * 16, 16)]
    assert raw_words(batch.column(3)).tolist() == [[11, 11], [0, 0], [13, 16]]


def test_vectorised_hex_prefixes_read_as_hex64() -> None:
    values = ["0123456789abcdefXYZ", "", None, "abc", "FFFFFFFFFFFFFFFF", "1" * 32]
    array = pa.array(values).slice(0)
    assert hex64_arrow(array).tolist() == hex64(values).tolist()
    assert hex64_arrow(pa.chunked_array([array.slice(2)])).tolist() == hex64(values[2:]).tolist()
