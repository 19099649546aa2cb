from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedops.errors import ConfigError, InvalidFormat, SourceNotFound
from embedops.sources import SourceFormat, detect_format, open_source


def _rows(path: Path, field: str, **kw: object) -> list[object]:
    source = open_source(path, **kw)  # type: ignore[arg-type]
    return [v for b in source.batches() for v in b.values(field)]


def test_csv_streams_in_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,text\n" + "".join(f"{i},row {i}\n" for i in range(1, 1001)))
    source = open_source(path, rows=64)
    batches = list(source.batches())
    assert source.fields == ["id", "text"]
    assert max(b.num_rows for b in batches) == 64
    assert sum(b.num_rows for b in batches) == 1000
    assert [b.first_row for b in batches[:3]] == [1, 65, 129]
    assert batches[-1].values("text")[-1] == "row 1000"
    assert batches[-1].position == path.stat().st_size


def test_csv_quoted_multiline_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'\xef\xbb\xbfid,text\n1,"line one\nline two, with comma"\n2,plain\n')
    source = open_source(path)
    assert source.fields == ["id", "text"]
    assert _rows(path, "text") == ["line one\nline two, with comma", "plain"]


def test_tsv_and_headerless_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text('1\tsays "hi"\n2\tsecond\n')
    assert _rows(path, "text", columns=["id", "text"]) == ['says "hi"', "second"]


def test_jsonl_keeps_types_and_reads_lazily(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [{"id": 1, "text": "a"}, {"id": 2, "text": 5}, {"id": 3}, {"id": 4, "text": {"x": 1}}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    assert _rows(path, "text") == ["a", 5, None, {"x": 1}]
    assert _rows(path, "id") == [1, 2, 3, 4]


def test_parquet_batches(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": list(range(10)), "text": [f"t{i}" for i in range(10)]}), path)
    source = open_source(path, rows=4)
    assert source.unit == "rows" and source.total == 10
    assert [b.num_rows for b in source.batches()] == [4, 4, 2]


def test_format_detection() -> None:
    assert detect_format(Path("x.CSV")) is SourceFormat.CSV
    assert detect_format(Path("x.ndjson")) is SourceFormat.JSONL
    assert detect_format(Path("x.data"), "tsv") is SourceFormat.TSV
    with pytest.raises(ConfigError, match="--format"):
        detect_format(Path("x.data"))
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        detect_format(Path("x.csv"), "xml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match=r"nope\.csv: no such file"):
        open_source(tmp_path / "nope.csv")


def test_csv_bad_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,text\n1,ok\n2,too,many\n3,fine\n")
    with pytest.raises(InvalidFormat, match=r"bad.csv line 3: expected 2 fields, found 3"):
        list(open_source(path).batches())


def test_jsonl_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n')
    with pytest.raises(InvalidFormat, match=r"bad.jsonl line 2: not valid JSON"):
        list(open_source(path).batches())
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InvalidFormat, match=r"line 2: expected a JSON object per line, found list"):
        list(open_source(path).batches())


def test_empty_csv_and_not_parquet(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidFormat, match="empty"):
        open_source(empty)
    fake = tmp_path / "fake.parquet"
    fake.write_text("id,text\n1,a\n")
    with pytest.raises(InvalidFormat, match="not a readable Parquet file"):
        open_source(fake)


def test_columns_that_name_a_field_twice_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("1\tred\tshoe\n")
    with pytest.raises(ConfigError, match=r"--columns names a field more than once: \['a'\]"):
        open_source(path, columns=["a", "a", "b"])


def test_a_quote_that_is_never_closed_is_refused_with_its_line(tmp_path: Path) -> None:
    """pyarrow reads a stray quote's value to the end of the file (990 rows silently became
    one text); the reader refuses the file and names the line where the quote opens."""
    path = tmp_path / "stray.csv"
    rows = [f"{i},row {i} text" for i in range(1, 1001)]
    rows[9] = '10,"row 10 starts a quote that never ends'
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    with pytest.raises(InvalidFormat, match=r"stray.csv line 11: a quoted value opens here and"):
        _rows(path, "text")
    short = tmp_path / "short.csv"
    short.write_text('id,text\n1,"unterminated\n2,ok\n')
    with pytest.raises(InvalidFormat, match=r"short.csv line 2: .* is never closed"):
        _rows(short, "text", rows=1)
    merged = tmp_path / "merged.csv"
    merged.write_text('id,text\n1,a\n2,"stray start\n3,b\n4,a "quoted" word\n5,c\n')
    with pytest.raises(InvalidFormat, match=r"merged.csv line 3: .* closes before text"):
        _rows(merged, "text")


def test_quotes_that_close_are_read_as_before(tmp_path: Path) -> None:
    """Quoted newlines, doubled quotes, a quote inside an unquoted value, an empty quoted
    value, text after a quoted word on one line (read as pyarrow and Python's csv read it), a
    BOM, CRLF and a last value closed at the very end of the file."""
    path = tmp_path / "ok.csv"
    path.write_bytes(
        b'\xef\xbb\xbf"id","text"\r\n1,"two\r\nlines"\r\n2,12" pizza\r\n3,"say ""hi"""\r\n'
        b'4,""\r\n5,"Best" seller\r\n6,"last"'
    )
    texts = ["two\r\nlines", '12" pizza', 'say "hi"', "", "Best seller", "last"]
    assert _rows(path, "text") == texts


def test_a_pipe_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    with pytest.raises(InvalidFormat, match="not a regular file"):
        open_source(fifo)


def test_a_quoted_value_longer_than_the_read_block_names_its_line(tmp_path: Path) -> None:
    """The line of the long value, not of a later one pyarrow read ahead to."""
    path = tmp_path / "long.csv"
    later = "".join(f'{i},"row {i}"\n' for i in range(4, 40_000)) + '40000,"Best" seller\n'
    path.write_text('id,text\n1,a\n2,"' + "a long line\n" * 30_000 + '"\n3,c\n' + later)
    with pytest.raises(
        InvalidFormat, match=r"long.csv line 3: .* longer than the read block \(64 KB\)"
    ):
        _rows(path, "text", rows=1)  # 64 KB blocks
    assert len(_rows(path, "text", rows=4096)) == 40_000  # 2 MB blocks hold it


def test_blanks_after_a_closing_quote_are_read_as_pyarrow_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text('id,text\n1,"first line\nsecond line" \n2,ok\n')
    assert _rows(path, "text") == ["first line\nsecond line ", "ok"]


def test_line_numbers_count_cr_only_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "cr.csv"
    path.write_bytes(b'1,hello\r2,"abc\r3,x\r')
    with pytest.raises(InvalidFormat, match=r"cr.csv line 2: a quoted value opens here"):
        _rows(path, "text", columns=["id", "text"])
