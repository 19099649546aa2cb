"""Streaming readers: CSV, TSV, JSONL and Parquet files as a stream of Arrow record batches.

No reader holds a whole file in memory: each yields ``SourceBatch`` objects of at most
``rows`` records. Cell values keep enough of their raw form for the cleaning step to judge them:

- CSV/TSV cells are read as raw bytes, so invalid UTF-8 reaches the cleaner instead of failing
  the whole file;
- JSONL values are kept JSON-encoded, so a number or an object in a text field is seen as what
  it is; invalid UTF-8 in a line survives as surrogate escapes;
- Parquet columns keep their native Arrow types.

CSV, TSV and JSONL files compressed with gzip, zstd or bzip2 (``.csv.gz``, ``.jsonl.zst``, ...)
are decompressed as they are read; the format comes from the suffix before the compression
suffix.
"""

from __future__ import annotations

import csv
import io
import json
import mmap
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from embedops.errors import ConfigError, InvalidFormat, SourceNotFound, one_line
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
# Compression suffixes, read as streams by pyarrow's codecs.
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}
# How compressed data starts, to refuse a compressed file whose name hides it.
_MAGIC = (
    (b"\x1f\x8b", "gzip", ".gz"),
    (b"\x28\xb5\x2f\xfd", "zstd", ".zst"),
    (b"\xfd7zXZ\x00", "xz", ""),
    (b"PK\x03\x04", "zip", ""),
)
_BOM = b"\xef\xbb\xbf"
# A quote that does not close within the read block: how far on its closing quote is looked
# for, to tell a long value (and its length) from a stray quote.
_QUOTE_SCAN = 1 << 30
# The largest CSV/TSV read block (EMBEDOPS_READ_ROWS x 512 bytes): the longest quoted value
# a CSV file can hold.
_MAX_BLOCK = 1 << 28


class Malformed(NamedTuple):
    """A line that is no record (wrong number of fields, not a JSON object), skipped when
    the source quarantines malformed rows (``skip_malformed``)."""

    line: int | None  # 1-based line in the file (None: not known)
    text: str  # the raw line
    detail: str


@dataclass(frozen=True)
class SourceBatch:
    """Up to ``rows`` records of one input file.

    Attributes:
        records: the cells, one column per field, encoded as ``encoding`` says.
        first_row: 1-based number of the first record in the input (header not counted).
        encoding: how to turn cells into Python values (see ``values``).
        position: progress so far, in the source's ``unit`` (bytes or rows).
        malformed: lines skipped since the batch before (see ``Malformed``).
    """

    records: pa.RecordBatch
    first_row: int
    encoding: CellEncoding
    position: int
    malformed: tuple[Malformed, ...] = ()

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
    suffix = path.suffix.lower()
    if suffix in _COMPRESSIONS:
        suffix = Path(path.stem).suffix.lower()  # x.csv.gz: csv
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        known = ", ".join(f.value for f in SourceFormat)
        raise ConfigError(
            f"{path}: cannot tell the format from the suffix {suffix or path.suffix!r}; "
            f"pass --format ({known})"
        )
    return fmt


def _compression(path: Path) -> str | None:
    """The codec the file's suffix names (``x.csv.gz``: gzip), or ``None``."""
    return _COMPRESSIONS.get(path.suffix.lower())


def open_source(
    path: str | Path,
    *,
    fmt: str | None = None,
    columns: list[str] | None = None,
    rows: int = 4096,
    skip_malformed: bool = False,
) -> Source:
    """Open an input file for streaming.

    Args:
        path: the file.
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``parquet``; guessed from the suffix when ``None``.
        columns: field names of a headerless CSV or TSV file.
        rows: records per batch.
        skip_malformed: a line that is no record (wrong number of fields, invalid JSON) is
            handed on in ``SourceBatch.malformed`` instead of failing the file. Records are
            numbered as they come, so callers use this only when ids do not come from row
            numbers.

    A CSV, TSV or JSONL file whose name ends in ``.gz``, ``.zst`` or ``.bz2`` is decompressed
    as it is read.

    Raises:
        SourceNotFound: the file does not exist.
        InvalidFormat: the file cannot be read as that format (or is compressed without a
            suffix that says so).
        ConfigError: the format is unknown, ``columns`` was given for JSONL or Parquet, or
            names an empty field.
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
    if columns and any(not c.strip() for c in columns):
        at = next(i for i, c in enumerate(columns, start=1) if not c.strip())
        raise ConfigError(
            f"--columns {','.join(columns)!r}: field {at} has no name; name every column of "
            "the file, in order"
        )
    _check_compression(p, source_format)
    if source_format is SourceFormat.PARQUET:
        return _open_parquet(p, rows)
    if source_format is SourceFormat.JSONL:
        return _open_jsonl(p, rows, skip_malformed)
    return _open_delimited(p, source_format, columns, rows, skip_malformed)


def _check_compression(path: Path, fmt: SourceFormat) -> None:
    """Refuse a compressed Parquet file, and compressed bytes under a name without a
    compression suffix (read as text they fail with a misleading error)."""
    if _compression(path) is not None:
        if fmt is SourceFormat.PARQUET:
            raise InvalidFormat(
                f"{path}: a compressed Parquet file cannot be read as a stream; decompress it "
                "(Parquet compresses its columns itself)"
            )
        return
    with path.open("rb") as fh:
        head = fh.read(8)
    for magic, codec, suffix in _MAGIC:
        if head.startswith(magic):
            fix = (
                f"rename it to {path.name}{suffix} to read it compressed, or decompress it"
                if suffix
                else f"decompress it ({codec} is not read directly)"
            )
            raise InvalidFormat(
                f"{path}: looks {codec}-compressed, but the name does not end in a "
                f"compression suffix (.gz, .zst, .bz2); {fix}"
            )


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


class _FileBytes(io.RawIOBase):
    """A file's bytes, decompressed if its suffix names a compression, for readers in Python
    (JSONL, the header, line numbers, ``_Follower``; never for pyarrow's own threads).

    ``count`` is the bytes of the file on disk read so far (compressed: what the decompressor
    has taken), for progress bars; a decompression error is an ``InvalidFormat`` naming
    ``path``.
    """

    def __init__(
        self, raw: Any, *, source: IO[bytes] | None = None, path: Path | None = None
    ) -> None:
        self._raw = raw
        self._source = source
        self._path = path
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._raw.read(len(buffer))
        except OSError as exc:
            if self._source is None or self._path is None:
                raise
            raise _corrupt(self._path, exc) from exc
        n = len(data)
        buffer[:n] = data
        self.count = self._source.tell() if self._source is not None else self.count + n
        return n

    def close(self) -> None:
        self._raw.close()
        if self._source is not None:
            self._source.close()
        super().close()


def _corrupt(path: Path, exc: Exception) -> InvalidFormat:
    """A file that cannot be read (a compressed one: whose data does not decompress)."""
    if _compression(path) is None:
        return InvalidFormat(f"{path}: cannot be read ({exc}); check the file and the disk")
    return InvalidFormat(
        f"{path}: the compressed data is corrupt or truncated ({exc}); compress the file "
        "again, or check that its suffix names its compression"
    )


def _open_bytes(path: Path) -> _FileBytes:
    """The file's bytes, decompressed if its suffix names a compression."""
    fh = path.open("rb")
    codec = _compression(path)
    if codec is None:
        return _FileBytes(fh)
    try:
        stream = pa.CompressedInputStream(fh, codec)
    except (pa.ArrowException, OSError, ValueError) as exc:
        fh.close()
        raise InvalidFormat(f"{path}: cannot read {codec} data ({exc})") from exc
    return _FileBytes(stream, source=fh, path=path)


def _read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file (decompressed), or all of them if fewer."""
    with _open_bytes(path) as fh:
        parts: list[bytes] = []
        got = 0
        while got < size and (chunk := fh.read(size - got)):
            parts.append(chunk)
            got += len(chunk)
    return b"".join(parts)


class _Follower:
    """Reads the bytes of a file that pyarrow's native stream has read, in the consuming
    thread, and shows them to ``tracker``.

    pyarrow reads ahead on its own IO threads. Those threads must never call into Python: a
    Python file object there can be asked for bytes while the interpreter shuts down, and the
    thread is then torn down inside C++ (SIGABRT, "terminate called without an active
    exception") or waits for the GIL forever. So pyarrow reads a native stream, and this
    follower reads the same bytes again, from its own handle, up to where pyarrow has got.

    A compressed file is decompressed natively for pyarrow and in Python for the follower;
    positions then count the compressed bytes read from the file (the decompressed stream
    cannot tell its position), and the tracker sees the bytes they decompress to.
    """

    def __init__(self, path: Path, tracker: QuoteTracker | None, block: int) -> None:
        self._file = pa.OSFile(str(path))
        codec = _compression(path)
        self.stream = self._file if codec is None else pa.CompressedInputStream(self._file, codec)
        self._compressed = codec is not None
        self._block = block  # fed in pyarrow's blocks: the tracker judges value lengths so
        self._tracker = tracker
        self._fh = _open_bytes(path) if tracker is not None else None
        self.count = 0  # bytes shown to the tracker (compressed: the bytes they came from)
        self._seen = 0
        self._size = path.stat().st_size
        self._exhausted = False  # the follower's own read reached the end of the file

    @property
    def fed_all(self) -> bool:
        """Whether the tracker has seen the whole file. Judged by what the follower read,
        never by pyarrow's position: pyarrow reads on in its own threads, and a position
        taken after the tracker caught up made a run see 'the end' with a value open in
        the tracker (a false 'never closed' error about one run in a few on a 334 MB file).
        """
        return self._exhausted or (not self._compressed and self.count >= self._size)

    @property
    def position(self) -> int:
        """Bytes pyarrow has read from the file so far (read-ahead included; once pyarrow
        has closed the stream, as it does when it fails, the last position seen)."""
        if not self._file.closed:
            self._seen = int(self._file.tell())
        return self._seen

    def catch_up(self, until: int | None = None) -> None:
        """Show the tracker the bytes up to ``until`` (default: pyarrow's position)."""
        target = self.position if until is None else until
        if self._fh is None or self._tracker is None:
            self.count = max(self.count, target)
            return
        # Compressed: positions count compressed bytes, and the decompressor takes them ahead
        # of what it gives; all that ``target`` bytes decompress to is seen once it has taken
        # more than ``target`` (or at the end).
        while self.count < target or (self._compressed and self.count == target):
            size = self._block if self._compressed else min(self._block, target - self.count)
            data = self._fh.read(size)
            if not data:
                self._exhausted = True
                break
            self._tracker.feed(data)
            self.count = self._fh.count

    def finish(self) -> None:
        """Show the tracker the rest of the file."""
        if self._fh is None or self._tracker is None:
            return
        while data := self._fh.read(self._block):
            self._tracker.feed(data)
            self.count = self._fh.count
        self._exhausted = True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.stream.close()
        self._file.close()


def _read_header(path: Path, delimiter: str, quote: bool) -> list[str]:
    head = _read_head(path, 1 << 16)
    if not head.strip():
        raise InvalidFormat(f"{path}: the file is empty; expected a header line")
    reader = _csv_lines(head, delimiter, quote)
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


def _csv_lines(head: bytes, delimiter: str, quote: bool) -> Iterator[list[str]]:
    """Python's csv reader over the first bytes of a file (a BOM dropped), as the header
    checks read them."""
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    return csv.reader(
        io.StringIO(text),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
    )


def _only_header(path: Path, delimiter: str, quote: bool) -> bool:
    """The file holds its header line and nothing else (pyarrow refuses one without a final
    line break: "Could not skip initial 1 rows")."""
    head = _read_head(path, (1 << 16) + 1)
    if len(head) > 1 << 16:
        return False
    reader = _csv_lines(head, delimiter, quote)
    try:
        return sum(1 for _ in reader) == 1
    except csv.Error:
        return False


def _duplicates(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def _open_delimited(
    path: Path, fmt: SourceFormat, columns: list[str] | None, rows: int, skip_malformed: bool
) -> Source:
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
    skipped: list[Malformed] = []
    finder = _LineFinder(path)
    _quiet_undecodable_rows(path)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if not skip_malformed:
            bad_rows.append(row)
            return "error"
        # pyarrow's number counts records, not lines (a quoted value may span lines).
        found = finder.find(row.text)
        line = found if found is not None else row.number
        detail = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        skipped.append(Malformed(line, row.text, detail))
        return "skip"

    # Rows are about 200 bytes; size blocks so one block is roughly one batch. A quoted
    # value must fit in one block: EMBEDOPS_READ_ROWS raises it (see explain).
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=skip,
        use_threads=False,
        block_size=max(1 << 16, min(rows * 512, _MAX_BLOCK)),
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
    raw = _Follower(path, tracker, read_options.block_size)

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
            # The tracker has seen a block or two past the value's start: look for its end.
            end, scanned = _closing_quote(path, long_at)
            if end < 0:
                why = (
                    NEVER_CLOSED
                    if scanned is None
                    else f"is not closed within {_size_text(scanned)} (a stray quote?)"
                )
                return unclosed(why, long_at)
            return _long_value(path, long_at, end, _size_text(read_options.block_size))
        if bad_rows:
            row = bad_rows[-1]
            where = f" line {row.number}" if row.number is not None else ""
            return InvalidFormat(
                f"{path}{where}: expected {row.expected_columns} fields, found "
                f"{row.actual_columns} ({row.text[:80]!r}); quote values that contain "
                f"{'commas' if quote else 'tabs'}, or fix the row (with --id-field, such rows "
                "are quarantined and the run goes on)"
            )
        if _UNDECODABLE_ROW.pop(path, False):
            return InvalidFormat(
                f"{path}: not a readable {fmt.value.upper()} file ({one_line(exc)}): a row with "
                "the wrong number of fields holds bytes that are not UTF-8; fix or remove it"
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
        if skip and _only_header(path, delimiter, quote):
            raw.close()
            return Source(path, fmt, names, size, "bytes", iter(()))
        error = explain(exc)
        raw.close()
        raise error from exc
    except OSError as exc:  # a compressed file's data: pyarrow decompresses it natively
        raw.close()
        raise _corrupt(path, exc) from exc

    def batches() -> Iterator[SourceBatch]:
        first = 1
        block_type = pa.RecordBatch.from_pydict({n: pa.array([], pa.binary()) for n in names})
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
                    if skipped:
                        empty = block_type.slice(0, 0)
                        yield SourceBatch(
                            empty, first, CellEncoding.UTF8_BYTES, raw.position, tuple(skipped)
                        )
                    return
                except pa.ArrowInvalid as exc:
                    raise explain(exc) from exc
                except OSError as exc:  # a compressed file's data (see above)
                    raise _corrupt(path, exc) from exc
                raw.catch_up()
                if tracker is not None and tracker.malformed_at >= 0:
                    # pyarrow merges the rows up to the next quote into that value, silently.
                    raise unclosed(MERGED_ROWS, tracker.malformed_at)
                if raw.fed_all and tracker is not None and tracker.unclosed:
                    # pyarrow read the rest of the file into that value, silently.
                    raise unclosed(NEVER_CLOSED)
                block_type = block
                for start in range(0, max(block.num_rows, 1 if skipped else 0), rows):
                    batch = block.slice(start, rows)
                    bad, skipped[:] = tuple(skipped), []
                    yield SourceBatch(batch, first, CellEncoding.UTF8_BYTES, raw.position, bad)
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


def _size_text(size: int) -> str:
    return f"{round(size / (1 << 20))} MB" if size >= 1 << 20 else f"{-(-size >> 10)} KB"


def _closing_quote(path: Path, opened: int) -> tuple[int, int | None]:
    """Where the quoted value that opens at byte ``opened`` closes (RFC 4180: ``""`` inside
    is a quote). Returns the offset of its closing quote (-1: not found) and, when the search
    gave up before the end of the file, how far it looked (``None``: to the end)."""
    with _open_bytes(path) as fh:
        pos = 0
        while pos <= opened and (chunk := fh.read(min(opened + 1 - pos, 1 << 22))):
            pos += len(chunk)
        quote_ends_chunk = False  # the last chunk ended with a quote: closing, or half of ""
        while pos - opened <= _QUOTE_SCAN:
            chunk = fh.read(1 << 22)
            if not chunk:
                return (pos - 1 if quote_ends_chunk else -1), None
            at = 0
            if quote_ends_chunk:
                if chunk[:1] != b'"':
                    return pos - 1, None
                at, quote_ends_chunk = 1, False
            while (found := chunk.find(b'"', at)) >= 0:
                if found + 1 == len(chunk):
                    quote_ends_chunk = True
                    break
                if chunk[found + 1 : found + 2] != b'"':
                    return pos + found, None
                at = found + 2
            pos += len(chunk)
    return -1, pos - opened


def _long_value(path: Path, opened: int, end: int, block: str) -> InvalidFormat:
    """A quoted value from byte ``opened`` to its closing quote at ``end``, longer than the
    read block: say how long, and how to read it."""
    line, to_line = _line_of(path, opened), _line_of(path, end)
    length = end - opened + 1
    what = (
        f"a quoted value opens here that is {_size_text(length)} long"
        f"{f' (to line {to_line})' if to_line != line else ''}, longer than the read block "
        f"({block})"
    )
    # The block must hold the value and the rest of its row: 64 KB to spare.
    rows = 1 << (-(-(length + (1 << 16)) // 512) - 1).bit_length()
    if rows * 512 <= _MAX_BLOCK:
        fix = (
            f"EMBEDOPS_READ_ROWS={rows} reads {_size_text(rows * 512)} blocks, enough for it; "
            "or write the data as JSONL or Parquet"
        )
    else:
        fix = (
            f"the largest read block is {_size_text(_MAX_BLOCK)} "
            f"(EMBEDOPS_READ_ROWS={_MAX_BLOCK // 512}); for longer values write the data as "
            "JSONL or Parquet"
        )
    return InvalidFormat(f"{path} line {line}: {what}; {fix}")


def _line_of(path: Path, offset: int) -> int:
    """The 1-based line of ``path`` that byte ``offset`` is on (lines end with LF, CRLF or
    CR; offsets of a compressed file count its decompressed bytes)."""
    line, done, last = 1, 0, b""
    with _open_bytes(path) as fh:
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


def _open_jsonl(path: Path, rows: int, skip_malformed: bool = False) -> Source:
    raw = _open_bytes(path)
    fh = io.BufferedReader(raw)
    # Progress: bytes of the file on disk (compressed: what was read; plain: what was parsed).
    tell = (lambda: raw.count) if _compression(path) else None
    lines = _jsonl_batches(path, fh, rows, tell, skip_malformed)
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


def _jsonl_batches(
    path: Path,
    fh: IO[bytes],
    rows: int,
    tell: Callable[[], int] | None = None,
    skip_malformed: bool = False,
) -> Iterator[SourceBatch]:
    skipped: list[Malformed] = []
    records: list[dict[str, Any]] = []
    keys: dict[str, None] = {}
    first_row = 1
    position = 0
    for line_no, line in enumerate(fh, start=1):
        position = tell() if tell is not None else position + len(line)
        if line_no == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]  # a BOM is not part of the first record
        if not line.strip():
            continue
        text = line.decode("utf-8", "surrogateescape")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            if skip_malformed:
                why = f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
                skipped.append(Malformed(line_no, text.rstrip("\r\n"), why))
                continue
            raise InvalidFormat(
                f"{path} line {line_no}: not valid JSON ({exc.msg.removesuffix(' at')} at column "
                f"{exc.colno}); "
                "fix or remove the line"
            ) from exc
        if not isinstance(obj, dict):
            if skip_malformed:
                why = f"expected a JSON object, found {type(obj).__name__}"
                skipped.append(Malformed(line_no, text.rstrip("\r\n"), why))
                continue
            raise InvalidFormat(
                f"{path} line {line_no}: expected a JSON object per line, found "
                f"{type(obj).__name__}; write one object per line"
            )
        records.append(obj)
        keys.update(dict.fromkeys(obj))
        if len(records) == rows:
            yield _json_batch(records, keys, first_row, position, tuple(skipped))
            first_row += len(records)
            records, keys, skipped = [], {}, []
    if records or skipped:
        yield _json_batch(records, keys, first_row, position, tuple(skipped))


def _json_batch(
    records: list[dict[str, Any]],
    keys: dict[str, None],
    first_row: int,
    position: int,
    malformed: tuple[Malformed, ...] = (),
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
    return SourceBatch(batch, first_row, CellEncoding.JSON, position, malformed)


# Files whose reader met a malformed row that pyarrow could not decode to show it (see
# ``_quiet_undecodable_rows``).
_UNDECODABLE_ROW: dict[Path, bool] = {}


def _quiet_undecodable_rows(path: Path) -> None:
    """pyarrow decodes a malformed row's text as UTF-8 before calling the row handler; when
    that fails it prints "Exception ignored ... UnicodeDecodeError" with a traceback and stops
    with a parse error. The hook below keeps that traceback off stderr (the parse error that
    follows says what happened) and passes every other unraisable exception on."""
    default = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and "on_invalid" in where:
            _UNDECODABLE_ROW[path] = True
            return
        default(unraisable)

    sys.unraisablehook = hook


class _LineFinder:
    """Finds the line of a row's raw text in a plain file, searching on from the last one
    found (pyarrow does not number rows when values may span lines)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._from = 0

    def find(self, text: str) -> int | None:
        if _compression(self._path) is not None:
            return None
        needle = text.encode("utf-8", "surrogateescape")
        with self._path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            at = m.find(needle, self._from)
        if at < 0:
            return None
        self._from = at + len(needle)
        return _line_of(self._path, at)
