"""Streaming readers: CSV, TSV, JSONL and Parquet files as a stream of Arrow record batches.

No reader holds a whole file in memory: each yields ``SourceBatch`` objects of at most
``rows`` records. Cell values keep enough of their raw form for the cleaning step to judge them:

- CSV/TSV cells are read as raw bytes, so invalid UTF-8 reaches the cleaner instead of failing
  the whole file;
- JSONL values are kept JSON-encoded, so a number or an object in a text field is seen as what
  it is; invalid UTF-8 in a line survives as surrogate escapes;
- Parquet columns keep their native Arrow types.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from embedops.errors import ConfigError, InvalidFormat, SourceNotFound
from embedops.quotes import QuoteTracker


class SourceFormat(StrEnum):
    """Input formats embedops reads."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    PARQUET = "parquet"


class CellEncoding(StrEnum):
    """How a batch's cells are stored, so the cleaner can decode them."""

    UTF8_BYTES = "utf8-bytes"
    JSON = "json"
    NATIVE = "native"


_SUFFIXES = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.TSV,
    ".tab": SourceFormat.TSV,
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
}


@dataclass(frozen=True)
class SourceBatch:
    """Up to ``rows`` records of one input file.

    Attributes:
        records: the cells, one column per field, encoded as ``encoding`` says.
        first_row: 1-based number of the first record in the input (header not counted).
        encoding: how to turn cells into Python values (see ``values``).
        position: progress so far, in the source's ``unit`` (bytes or rows).
    """

    records: pa.RecordBatch
    first_row: int
    encoding: CellEncoding
    position: int

    @property
    def num_rows(self) -> int:
        return int(self.records.num_rows)

    def values(self, field: str) -> list[Any]:
        """The Python values of one field; ``None`` where the record lacks it.

        Strings decoded from invalid UTF-8 carry surrogate escapes (U+DC80..U+DCFF).
        """
        if field not in self.records.schema.names:
            return [None] * self.num_rows
        raw: list[Any] = self.records.column(field).to_pylist()
        if self.encoding is CellEncoding.UTF8_BYTES:
            return [None if v is None else v.decode("utf-8", "surrogateescape") for v in raw]
        if self.encoding is CellEncoding.JSON:
            return [None if v is None else json.loads(v) for v in raw]
        return raw


class Source:
    """An opened input file. Iterate ``batches()`` once.

    Attributes:
        path: the input file.
        format: its format.
        fields: the field names the file has (for JSONL: those seen in the first batch).
        total: the size to reach, in ``unit`` (bytes or rows), for progress bars.
        unit: ``"bytes"`` or ``"rows"``.
    """

    def __init__(
        self,
        path: Path,
        fmt: SourceFormat,
        fields: list[str],
        total: int,
        unit: str,
        batches: Iterator[SourceBatch],
    ) -> None:
        self.path = path
        self.format = fmt
        self.fields = fields
        self.total = total
        self.unit = unit
        self._batches = batches

    def batches(self) -> Iterator[SourceBatch]:
        """Yield the file's record batches in order."""
        yield from self._batches


def detect_format(path: Path, explicit: str | None = None) -> SourceFormat:
    """Pick the format from ``explicit`` or the file suffix.

    Raises:
        ConfigError: the format is unknown.
    """
    if explicit:
        try:
            return SourceFormat(explicit.lower())
        except ValueError:
            known = ", ".join(f.value for f in SourceFormat)
            raise ConfigError(f"unknown format {explicit!r}; use one of: {known}") from None
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(f.value for f in SourceFormat)
        raise ConfigError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({known})"
        )
    return fmt


def open_source(
    path: str | Path,
    *,
    fmt: str | None = None,
    columns: list[str] | None = None,
    rows: int = 4096,
) -> Source:
    """Open an input file for streaming.

    Args:
        path: the file.
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``parquet``; guessed from the suffix when ``None``.
        columns: field names of a headerless CSV or TSV file.
        rows: records per batch.

    Raises:
        SourceNotFound: the file does not exist.
        InvalidFormat: the file cannot be read as that format.
        ConfigError: the format is unknown, or ``columns`` was given for JSONL or Parquet.
    """
    p = Path(path)
    if not p.exists():
        raise SourceNotFound(f"{p}: no such file; check the path")
    if p.is_dir():
        raise SourceNotFound(f"{p}: is a directory, not a file; name one input file")
    if not p.is_file():  # a pipe is read twice (header, then data) and hangs
        raise InvalidFormat(f"{p}: not a regular file (a pipe or a device); save it to a file")
    source_format = detect_format(p, fmt)
    if columns and source_format not in (SourceFormat.CSV, SourceFormat.TSV):
        raise ConfigError("--columns is only for headerless CSV or TSV files")
    if source_format is SourceFormat.PARQUET:
        return _open_parquet(p, rows)
    if source_format is SourceFormat.JSONL:
        return _open_jsonl(p, rows)
    return _open_delimited(p, source_format, columns, rows)


def _open_parquet(path: Path, rows: int) -> Source:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidFormat(f"{path}: not a readable Parquet file ({exc})") from exc
    total = parquet.metadata.num_rows

    def batches() -> Iterator[SourceBatch]:
        first = 1
        try:
            for batch in parquet.iter_batches(batch_size=rows):
                yield SourceBatch(batch, first, CellEncoding.NATIVE, first - 1 + batch.num_rows)
                first += batch.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidFormat(
                f"{path}: row group near row {first} is unreadable ({exc})"
            ) from exc

    return Source(
        path, SourceFormat.PARQUET, list(parquet.schema_arrow.names), total, "rows", batches()
    )


class _Follower:
    """Reads the bytes of a file that pyarrow's native stream has read, in the consuming
    thread, and shows them to ``tracker``.

    pyarrow reads ahead on its own IO threads. Those threads must never call into Python: a
    Python file object there can be asked for bytes while the interpreter shuts down, and the
    thread is then torn down inside C++ (SIGABRT, "terminate called without an active
    exception") or waits for the GIL forever. So pyarrow reads a native stream, and this
    follower reads the same bytes again, from its own handle, up to where pyarrow has got.
    """

    def __init__(
        self, path: Path, stream: pa.NativeFile, tracker: QuoteTracker | None, block: int
    ) -> None:
        self.stream = stream
        self._block = block  # fed in pyarrow's blocks: the tracker judges value lengths so
        self._tracker = tracker
        self._fh: IO[bytes] | None = path.open("rb") if tracker is not None else None
        self.count = 0  # bytes shown to the tracker
        self._seen = 0

    @property
    def position(self) -> int:
        """Bytes pyarrow has read so far (read-ahead included; once pyarrow has closed the
        stream, as it does when it fails, the last position seen)."""
        if not self.stream.closed:
            self._seen = int(self.stream.tell())
        return self._seen

    def catch_up(self, until: int | None = None) -> None:
        """Show the tracker the bytes up to ``until`` (default: pyarrow's position)."""
        target = self.position if until is None else until
        if self._fh is None or self._tracker is None:
            self.count = max(self.count, target)
            return
        while self.count < target:
            data = self._fh.read(min(self._block, target - self.count))
            if not data:
                break
            self._tracker.feed(data)
            self.count += len(data)

    def finish(self) -> None:
        """Show the tracker the rest of the file."""
        if self._fh is None or self._tracker is None:
            return
        while data := self._fh.read(self._block):
            self._tracker.feed(data)
            self.count += len(data)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.stream.close()


def _read_header(path: Path, delimiter: str, quote: bool) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise InvalidFormat(f"{path}: the file is empty; expected a header line")
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    reader = csv.reader(
        io.StringIO(text),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
    )
    try:
        names = [n.strip() for n in next(reader)]
    except (csv.Error, StopIteration) as exc:
        raise InvalidFormat(f"{path} line 1: cannot parse the header ({exc})") from exc
    if any(not n for n in names):
        raise InvalidFormat(
            f"{path} line 1: the header has an empty column name; name every column, "
            "or pass --columns for a file without a header"
        )
    dupes = _duplicates(names)
    if dupes:
        raise InvalidFormat(f"{path} line 1: duplicate column names in the header: {dupes}")
    return names


def _duplicates(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def _open_delimited(path: Path, fmt: SourceFormat, columns: list[str] | None, rows: int) -> Source:
    delimiter = "," if fmt is SourceFormat.CSV else "\t"
    # TSV files are read without quoting (the IANA form); CSV files with RFC 4180 quotes.
    quote = fmt is SourceFormat.CSV
    if columns:
        names = list(columns)
        dupes = _duplicates(names)
        if dupes:
            raise ConfigError(f"--columns names a field more than once: {dupes}; name each once")
        skip = 0
    else:
        names = _read_header(path, delimiter, quote)
        skip = 1
    bad_rows: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row)
        return "error"

    # Rows are about 200 bytes; size blocks so one block is roughly one batch.
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=skip,
        use_threads=False,
        block_size=max(1 << 16, min(rows * 512, 1 << 24)),
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if quote else False,
        newlines_in_values=quote,
        invalid_row_handler=on_invalid,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={n: pa.binary() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
    )
    size = path.stat().st_size
    tracker = QuoteTracker(delimiter, read_options.block_size) if quote else None
    raw = _Follower(path, pa.OSFile(str(path)), tracker, read_options.block_size)

    def unclosed(why: str, at: int | None = None) -> InvalidFormat:
        assert tracker is not None
        line = _line_of(path, tracker.opened_at if at is None else at)
        return InvalidFormat(
            f"{path} line {line}: a quoted value opens here and {why}; close the quote, or "
            'double a quote that is part of the text (""), then run again'
        )

    def explain(exc: Exception) -> InvalidFormat:
        # pyarrow fails on a block it has read: the tracker reads past its end first.
        raw.catch_up(raw.position + 2 * read_options.block_size)
        long_at = -1 if tracker is None else tracker.long_value_at
        if long_at >= 0 and "straddl" in str(exc):
            assert tracker is not None
            block_size = read_options.block_size
            block = f"{block_size >> 20} MB" if block_size >= 1 << 20 else f"{block_size >> 10} KB"
            if tracker.unclosed and tracker.opened_at == long_at:
                return unclosed(f"is not closed within {block} (a stray quote, or a long value)")
            return InvalidFormat(
                f"{path} line {_line_of(path, long_at)}: a quoted value opens here that is "
                f"longer than the read block ({block}); EMBEDOPS_READ_ROWS=32768 reads 16 MB "
                "blocks; for longer values write the data as JSONL or Parquet"
            )
        if bad_rows:
            row = bad_rows[-1]
            where = f" line {row.number}" if row.number is not None else ""
            return InvalidFormat(
                f"{path}{where}: expected {row.expected_columns} fields, found "
                f"{row.actual_columns} ({row.text[:80]!r}); quote values that contain "
                f"{'commas' if quote else 'tabs'}, or fix the row"
            )
        return InvalidFormat(f"{path}: not a readable {fmt.value.upper()} file ({exc})")

    try:
        reader = pacsv.open_csv(
            raw.stream,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as exc:
        error = explain(exc)
        raw.close()
        raise error from exc

    def batches() -> Iterator[SourceBatch]:
        first = 1
        try:
            while True:
                try:
                    block = reader.read_next_batch()
                except StopIteration:
                    raw.finish()
                    if tracker is not None and tracker.malformed_at >= 0:
                        raise unclosed(MERGED_ROWS, tracker.malformed_at) from None
                    if tracker is not None and tracker.unclosed:
                        raise unclosed(NEVER_CLOSED) from None
                    return
                except pa.ArrowInvalid as exc:
                    raise explain(exc) from exc
                raw.catch_up()
                if tracker is not None and tracker.malformed_at >= 0:
                    # pyarrow merges the rows up to the next quote into that value, silently.
                    raise unclosed(MERGED_ROWS, tracker.malformed_at)
                at_end = raw.position >= size
                if at_end and tracker is not None and tracker.unclosed:
                    # pyarrow read the rest of the file into that value, silently.
                    raise unclosed(NEVER_CLOSED)
                for start in range(0, block.num_rows, rows):
                    batch = block.slice(start, rows)
                    yield SourceBatch(batch, first, CellEncoding.UTF8_BYTES, raw.position)
                    first += batch.num_rows
        finally:
            reader.close()
            raw.close()

    return Source(path, fmt, names, size, "bytes", batches())


# Why a CSV file is refused where a quoted value opens (see ``QuoteTracker``).
MERGED_ROWS = (
    "closes before text that is not a delimiter (a stray quote? the rows up to that quote "
    "would become one value)"
)
NEVER_CLOSED = "is never closed (the rest of the file would be read into it)"


def _line_of(path: Path, offset: int) -> int:
    """The 1-based line of ``path`` that byte ``offset`` is on (lines end with LF, CRLF or
    CR)."""
    line, done, last = 1, 0, b""
    with path.open("rb") as fh:
        while done < offset:
            chunk = fh.read(min(1 << 20, offset - done))
            if not chunk:
                break
            line += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            if last == b"\r" and chunk[:1] == b"\n":
                line -= 1  # a CRLF split between chunks: counted once, at its CR
            last = chunk[-1:]
            done += len(chunk)
    return line


def _open_jsonl(path: Path, rows: int) -> Source:
    fh = path.open("rb")
    lines = _jsonl_batches(path, fh, rows)
    try:
        first = next(lines, None)
    except InvalidFormat:
        fh.close()
        raise
    fields = [] if first is None else list(first.records.schema.names)

    def batches() -> Iterator[SourceBatch]:
        try:
            if first is not None:
                yield first
                yield from lines
        finally:
            fh.close()

    return Source(path, SourceFormat.JSONL, fields, path.stat().st_size, "bytes", batches())


def _jsonl_batches(path: Path, fh: IO[bytes], rows: int) -> Iterator[SourceBatch]:
    records: list[dict[str, Any]] = []
    keys: dict[str, None] = {}
    first_row = 1
    position = 0
    for line_no, line in enumerate(fh, start=1):
        position += len(line)
        if not line.strip():
            continue
        text = line.decode("utf-8", "surrogateescape")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidFormat(
                f"{path} line {line_no}: not valid JSON ({exc.msg.removesuffix(' at')} at column "
                f"{exc.colno}); "
                "fix or remove the line"
            ) from exc
        if not isinstance(obj, dict):
            raise InvalidFormat(
                f"{path} line {line_no}: expected a JSON object per line, found "
                f"{type(obj).__name__}; write one object per line"
            )
        records.append(obj)
        keys.update(dict.fromkeys(obj))
        if len(records) == rows:
            yield _json_batch(records, keys, first_row, position)
            first_row += len(records)
            records, keys = [], {}
    if records:
        yield _json_batch(records, keys, first_row, position)


def _json_batch(
    records: list[dict[str, Any]], keys: dict[str, None], first_row: int, position: int
) -> SourceBatch:
    columns = {
        key: pa.array([json.dumps(r[key]) if key in r else None for r in records], type=pa.string())
        for key in keys
    }
    batch = (
        pa.RecordBatch.from_pydict(columns)
        if columns
        else pa.RecordBatch.from_pydict({"__empty__": pa.nulls(len(records))})
    )
    return SourceBatch(batch, first_row, CellEncoding.JSON, position)
