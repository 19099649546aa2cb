"""Every validation and cleaning case, each with its exact count and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from embedops import EmbeddingProcessor
from tests.fakes import FakeEmbedder


def _quarantine(report_path: str | None) -> list[dict[str, object]]:
    assert report_path is not None
    return [json.loads(line) for line in Path(report_path).read_text().splitlines()]


def test_messy_csv(tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder) -> None:
    long_text = " ".join(["word"] * 50)  # 52 fake tokens > max_tokens 32
    src = tmp_path / "messy.csv"
    src.write_bytes(
        b"id,title,body\n"
        b"1,Good row,plain text\n"  # ok
        b"2,,\n"  # empty_text (both template fields empty)
        b"3,   ,\t \n"  # empty_text (whitespace only)
        b"1,Again,duplicate id\n"  # duplicate_id
        b"4,Bad \xff\xfe bytes,x\n"  # invalid_utf8
        b"5,NUL\x00 and \x07bell,ctl\n"  # cleaned: control chars
        b"6,<b>Bold</b> &amp; costs  #36;5,html\n"  # cleaned: markup
        b"7," + long_text.encode() + b",long\n"  # truncated
        b",No id,missing id\n"  # missing_id
        b"8,<br/>,<p></p>\n"  # empty_text after cleaning
        b"9,\xef\xac\x81ne   caf\xc3\xa9,nfkc\n"  # cleaned: normalized (NFKC)
    )
    report = processor.process(src, collection="messy", id_field="id", template="{title} {body}")
    assert report.read == 11
    assert report.quarantined == 6
    assert report.reasons == {
        "duplicate_id": 1,
        "empty_text": 3,
        "invalid_utf8": 1,
        "missing_id": 1,
    }
    assert report.embedded == 5
    assert report.read == report.embedded + report.unchanged + report.quarantined
    assert report.truncated == 1
    assert report.cleaned["control_chars"] == 1
    assert report.cleaned["markup"] == 1
    records = _quarantine(report.quarantine_path)
    by_row = {r["row"]: r for r in records}
    assert set(by_row) == {2, 3, 4, 5, 9, 10}
    assert by_row[4]["reason"] == "duplicate_id" and "row 1" in str(by_row[4]["detail"])
    assert by_row[5]["values"] == {"id": "4", "title": "Bad \\xff\\xfe bytes", "body": "x"}
    assert by_row[9]["reason"] == "missing_id"
    assert by_row[10]["reason"] == "empty_text" and "after cleaning" in str(by_row[10]["detail"])
    stored = processor.store.collection("messy", fake.spec.version)
    texts = dict(
        zip(*[stored._table.to_arrow().column(c).to_pylist() for c in ("id", "text")], strict=True)
    )
    assert texts["5"] == "NUL and bell ctl"
    assert texts["6"] == "Bold & costs $5 html"
    assert texts["9"] == "fine café nfkc"


def test_messy_jsonl(tmp_path: Path, processor: EmbeddingProcessor) -> None:
    src = tmp_path / "messy.jsonl"
    lines = [
        b'{"id": "a", "text": "fine"}',
        b'{"id": "b", "text": 42}',
        b'{"id": "c", "text": {"nested": true}}',
        b'{"id": "d", "text": null}',
        b'{"id": "e"}',
        b'{"id": {"x": 1}, "text": "object id"}',
        b'{"id": "f", "text": "bad \xc3\x28 utf8"}',
        b'{"id": 7, "text": "numeric id is fine"}',
        b'{"id": true, "text": "bool id"}',
        b"",
        b'{"id": "g", "text": "   "}',
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    report = processor.process(src, collection="j", id_field="id", text_field="text")
    assert report.read == 10
    assert report.reasons == {
        "empty_text": 1,
        "invalid_id": 2,
        "invalid_utf8": 1,
        "missing_text": 2,
        "non_string_text": 2,
    }
    assert report.embedded == 2
    assert report.read == report.embedded + report.unchanged + report.quarantined
    assert processor.vectors("j", ["a", "7"]).shape == (2, 8)


def test_parquet_non_string_text_and_row_ids(tmp_path: Path, processor: EmbeddingProcessor) -> None:
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["one", None, "three"], "n": [1, 2, 3]}), src)
    report = processor.process(src, collection="p", text_field="text", keep=["n"])
    assert (report.embedded, report.quarantined, report.reasons) == (2, 1, {"missing_text": 1})
    # Without an id field the 1-based row number is the id.
    assert processor.vectors("p", ["3", "1"]).shape == (2, 8)
    bad = tmp_path / "q.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), bad)
    report = processor.process(bad, collection="q", text_field="text")
    assert report.reasons == {"non_string_text": 2}
