"""Input edges users hit (issue 14, points 10 to 14): a BOM before JSONL, a header-only CSV
without a final line break, compressed files, a quoted value longer than the read block, and
an empty name in --columns."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import embedops.processor
from embedops import EmbeddingProcessor, errors
from embedops.cli import _split, app
from embedops.errors import ConfigError, InvalidFormat
from embedops.sources import SourceFormat, detect_format, open_source
from tests.fakes import FakeEmbedder

runner = CliRunner()
ROWS = "id,text\n1,red shoe\n2,blue hat\n3,green scarf\n"
TEXTS = ["red shoe", "blue hat", "green scarf"]


def _texts(path: Path, **kw: object) -> list[object]:
    source = open_source(path, **kw)  # type: ignore[arg-type]
    return [v for b in source.batches() for v in b.values("text")]


def _embed(
    source: Path, store: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[int, str, str]:
    """``embed`` through the CLI with a fake embedder."""
    fake = FakeEmbedder()
    monkeypatch.setattr(embedops.processor, "load_embedder", lambda *a, **k: fake)
    args = ["embed", str(source), "-c", "c", "--text-field", "text", "--store", str(store)]
    result = runner.invoke(app, [*args, "--quiet", *extra])
    return result.exit_code, result.stdout, result.stderr


# 10: a UTF-8 BOM before the first JSONL record


def test_a_jsonl_file_that_starts_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    records = [{"id": 1, "text": "red shoe"}, {"id": 2, "text": "blue hat"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in records).encode())
    source = open_source(path)
    assert source.fields == ["id", "text"]
    assert _texts(path) == ["red shoe", "blue hat"]


def test_a_bom_only_counts_at_the_start_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    path.write_bytes(b'{"id": 1, "text": "a"}\n\xef\xbb\xbf{"id": 2, "text": "b"}\n')
    with pytest.raises(InvalidFormat, match=r"late.jsonl line 2: not valid JSON"):
        _texts(path)


# 11: a CSV file of only its header, with or without a final line break


@pytest.mark.parametrize("content", ["id,text", "id,text\n", "\ufeffid,text", "id,text\r\n"])
def test_a_header_only_csv_is_zero_rows(tmp_path: Path, content: str) -> None:
    path = tmp_path / "header.csv"
    path.write_text(content, encoding="utf-8", newline="")
    source = open_source(path)
    assert source.fields == ["id", "text"]
    assert list(source.batches()) == []


def test_a_header_only_tsv_without_a_line_break_is_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.tsv"
    path.write_text("id\ttext")
    assert list(open_source(path).batches()) == []


def test_embed_of_a_header_only_csv_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "header.csv"
    path.write_text("id,text")
    code, stdout, stderr = _embed(path, tmp_path / "s", monkeypatch, "--id-field", "id")
    assert code == 0, stderr
    assert stdout.startswith("0 read")


# 12: compressed input


def _zstd(data: bytes, path: Path) -> None:
    with pa.CompressedOutputStream(str(path), "zstd") as out:
        out.write(data)


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst", ".csv.bz2", ".CSV.GZ"])
def test_compressed_csv_is_read_as_a_stream(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"items{suffix}"
    data = ROWS.encode()
    if suffix.lower().endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif suffix.endswith(".bz2"):
        path.write_bytes(bz2.compress(data))
    else:
        _zstd(data, path)
    assert detect_format(path) is SourceFormat.CSV
    source = open_source(path)
    batches = list(source.batches())
    assert source.fields == ["id", "text"]
    assert [v for b in batches for v in b.values("text")] == TEXTS
    assert batches[-1].position == source.total == path.stat().st_size  # progress: on disk


def test_compressed_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = tmp_path / "items.tsv.gz"
    tsv.write_bytes(gzip.compress(ROWS.replace(",", "\t").encode()))
    assert _texts(tsv) == TEXTS
    jsonl = tmp_path / "items.jsonl.gz"
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS))
    jsonl.write_bytes(gzip.compress(b"\xef\xbb\xbf" + lines.encode()))
    source = open_source(jsonl)
    batches = list(source.batches())
    assert [v for b in batches for v in b.values("text")] == TEXTS
    assert batches[-1].position == source.total == jsonl.stat().st_size


def test_a_large_compressed_file_streams_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    path.write_bytes(
        gzip.compress(("id,text\n" + "".join(f"{i},row {i}\n" for i in range(50_000))).encode())
    )
    source = open_source(path, rows=256)  # 128 KB blocks: many reads of the stream
    batches = list(source.batches())
    assert max(b.num_rows for b in batches) == 256
    assert sum(b.num_rows for b in batches) == 50_000
    assert batches[-1].values("text")[-1] == "row 49999"
    positions = [b.position for b in batches]
    assert positions == sorted(positions) and positions[-1] == path.stat().st_size


def test_format_overrides_the_suffix_of_a_compressed_file(tmp_path: Path) -> None:
    path = tmp_path / "export.gz"
    path.write_bytes(gzip.compress(ROWS.encode()))
    with pytest.raises(ConfigError, match="--format"):
        open_source(path)
    assert _texts(path, fmt="csv") == TEXTS


def test_errors_in_a_compressed_file_name_the_decompressed_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"id,text\n1,ok\n2,too,many\n"))
    with pytest.raises(InvalidFormat, match=r"bad.csv.gz line 3: expected 2 fields, found 3"):
        _texts(bad)
    stray = tmp_path / "stray.csv.gz"
    stray.write_bytes(gzip.compress(b'id,text\n1,ok\n2,"never closed\n3,x\n'))
    with pytest.raises(InvalidFormat, match=r"stray.csv.gz line 3: a quoted value opens here"):
        _texts(stray)
    header = tmp_path / "header.csv.gz"
    header.write_bytes(gzip.compress(b"id,text"))
    assert list(open_source(header).batches()) == []


def test_truncated_compressed_data_is_an_invalid_format(tmp_path: Path) -> None:
    data = gzip.compress(("id,text\n" + "".join(f"{i},row {i}\n" for i in range(50_000))).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidFormat, match=r"cut.csv.gz: the compressed data is corrupt"):
        _texts(path, rows=256)
    plain = tmp_path / "plain.csv.gz"  # not compressed at all
    plain.write_text(ROWS)
    with pytest.raises(InvalidFormat, match=r"plain.csv.gz: .*compress"):
        _texts(plain)


@pytest.mark.parametrize("name", ["items.csv", "items.jsonl", "items.tsv", "items.parquet"])
def test_a_compressed_file_whose_name_hides_it_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(ROWS.encode()))
    with pytest.raises(InvalidFormat) as info:
        open_source(path)
    message = str(info.value)
    assert str(path) in message and "looks gzip-compressed" in message
    assert f"rename it to {name}.gz" in message
    assert "block size" not in message


def test_a_compressed_parquet_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(InvalidFormat, match="compressed Parquet"):
        open_source(path)


def test_embed_of_a_compressed_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "items.csv.gz"
    path.write_bytes(gzip.compress(ROWS.encode()))
    code, stdout, stderr = _embed(path, tmp_path / "s", monkeypatch, "--id-field", "id")
    assert code == 0, stderr
    assert stdout.startswith("3 read: 3 embedded")
    hidden = tmp_path / "hidden.csv"
    hidden.write_bytes(path.read_bytes())
    code, _, stderr = _embed(hidden, tmp_path / "s", monkeypatch, "--id-field", "id")
    assert code == errors.InvalidFormat.exit_code
    assert "looks gzip-compressed" in stderr and str(hidden) in stderr


# 13: a closed quoted value longer than the read block


def test_a_long_closed_value_is_not_called_a_stray_quote(tmp_path: Path) -> None:
    """A closed 50 MB value was reported as "not closed within 2 MB (a stray quote...)"; the
    error now gives its length and the setting that reads it, and that setting does."""
    path = tmp_path / "big.csv"
    path.write_text('id,text\n1,a\n2,"' + "x" * (50 << 20) + '"\n3,c\n')
    with pytest.raises(InvalidFormat) as info:
        _texts(path)  # 2 MB blocks
    message = str(info.value)
    assert message.startswith(f"{path} line 3: a quoted value opens here that is 50 MB long")
    assert "stray" not in message and "not closed" not in message
    assert "EMBEDOPS_READ_ROWS=131072 reads 64 MB blocks" in message
    assert [len(t) for t in _texts(path, rows=131072)] == [1, 50 << 20, 1]  # type: ignore[arg-type]


def test_a_long_value_across_lines_names_where_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text('id,text\n1,"' + 'say ""hi""\n' * 100_000 + '"\n2,b\n')
    with pytest.raises(InvalidFormat, match=r"line 2: .* long \(to line 100002\).*READ_ROWS=4096"):
        _texts(path, rows=64)  # 64 KB blocks; the value is 1.1 MB
    assert len(_texts(path, rows=4096)) == 2


def test_a_stray_quote_before_a_long_tail_is_still_a_stray_quote(tmp_path: Path) -> None:
    path = tmp_path / "stray.csv"
    path.write_text('id,text\n1,a\n2,"stray\n' + "".join(f"{i},row {i}\n" for i in range(200_000)))
    with pytest.raises(InvalidFormat, match=r"stray.csv line 3: .* is never closed"):
        _texts(path, rows=64)


# 14: an empty name in --columns


@pytest.mark.parametrize("columns", [["cls", "", "desc"], ["cls", "desc", " "]])
def test_columns_with_an_empty_name_are_a_config_error(tmp_path: Path, columns: list[str]) -> None:
    path = tmp_path / "x.csv"
    path.write_text("1,red,shoe\n")
    with pytest.raises(ConfigError, match=r"--columns .* field \d has no name"):
        open_source(path, columns=columns)


def test_the_cli_passes_an_empty_column_name_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _split("cls,,desc", keep_empty=True) == ["cls", "", "desc"]
    assert _split("a, b,", keep_empty=False) == ["a", "b"]  # --keep stays lenient
    path = tmp_path / "x.csv"
    path.write_text("1,red,shoe\n")
    code, _, stderr = _embed(path, tmp_path / "s", monkeypatch, "--columns", "cls,,text")
    assert code == errors.ConfigError.exit_code
    assert "--columns 'cls,,text': field 2 has no name" in stderr


def test_processor_refuses_an_empty_column_name(
    tmp_path: Path, processor: EmbeddingProcessor
) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("1\tred\n")
    with pytest.raises(ConfigError, match="field 1 has no name"):
        processor.process(path, collection="c", text_field="text", columns=["", "text"])


# 12 and 13 over many blocks of a compressed file: the quote tracker follows the decompressed
# bytes


def test_long_multiline_values_in_a_compressed_file_read_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "values.csv.gz"
    value = "a line of a long value, with a comma\n" * 800  # 30 KB, across lines
    rows = "".join(f'{i},"{value}{i}"\n' for i in range(200))  # 6 MB: many 128 KB blocks
    path.write_bytes(gzip.compress(("id,text\n" + rows).encode()))
    texts = _texts(path, rows=256)
    assert len(texts) == 200 and texts[-1] == f"{value}199"


def test_a_stray_quote_deep_in_a_compressed_file_names_its_line(tmp_path: Path) -> None:
    lines = [f"{i},row {i} text" for i in range(1, 50_001)]
    lines[29_999] = '30000,"row 30000 opens a quote'
    path = tmp_path / "stray.csv.gz"
    path.write_bytes(gzip.compress(("id,text\n" + "\n".join(lines) + "\n").encode()))
    with pytest.raises(InvalidFormat, match=r"stray.csv.gz line 30001: a quoted value opens"):
        _texts(path, rows=256)


def test_a_long_value_in_a_compressed_file_says_how_to_read_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv.gz"
    path.write_bytes(gzip.compress(('id,text\n1,a\n2,"' + "y" * (20 << 20) + '"\n3,c\n').encode()))
    with pytest.raises(InvalidFormat, match=r"long.csv.gz line 3: .* 20 MB long.*READ_ROWS=65536"):
        _texts(path)  # 2 MB blocks
    assert [len(t) for t in _texts(path, rows=65536)] == [1, 20 << 20, 1]  # type: ignore[arg-type]


def test_the_end_of_a_csv_is_judged_by_what_the_tracker_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow reads ahead in its own threads: its position, read after the quote tracker
    caught up, can already be the end of the file while the tracker stopped inside a quoted
    value. That made a well-formed file fail as 'never closed' now and then; the end is now
    judged by the bytes the tracker saw."""
    from embedops import sources

    path = tmp_path / "multi.csv"
    path.write_text("id,text\n" + "".join(f'{i},"line one\nline two {i}"\n' for i in range(200)))
    inside = path.read_bytes().index(b"line one") + 3  # inside the first quoted value
    original = sources._Follower.catch_up

    def lagging(self: sources._Follower, until: int | None = None) -> None:
        original(self, inside if until is None and self.count < inside else until)

    monkeypatch.setattr(sources._Follower, "catch_up", lagging)
    rows = list(open_source(path).batches())
    assert sum(b.num_rows for b in rows) == 200
