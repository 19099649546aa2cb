"""Validation and cleaning of input records, and the quarantine of rows that cannot be embedded.

Each record either becomes a ``CleanRow`` (id, text, content hash, kept metadata) or a
``QuarantineRecord`` with one reason code from ``Reason``. Cleaning steps that change text
without rejecting it (markup, control characters, Unicode and whitespace normalisation) are
counted in ``CleanStats``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import logging
import math
import re
import string
import threading
import unicodedata
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from embedops.errors import ConfigError, MissingField, StoreError
from embedops.sources import SourceBatch
from embedops.state import RAW_FLAGS, U64, IdSet, Scratch, hash64

logger = logging.getLogger(__name__)


class Reason(StrEnum):
    """Why a row was quarantined."""

    MISSING_ID = "missing_id"
    INVALID_ID = "invalid_id"
    DUPLICATE_ID = "duplicate_id"
    MISSING_TEXT = "missing_text"
    EMPTY_TEXT = "empty_text"
    NON_STRING_TEXT = "non_string_text"
    INVALID_UTF8 = "invalid_utf8"
    EMBED_FAILED = "embed_failed"
    INVALID_OP = "invalid_op"
    MALFORMED_ROW = "malformed_row"


# The field of a change feed's lines that says what to do with the id (``--feed``).
OP_FIELD = "op"
FEED_OPS = ("upsert", "delete")


@dataclass(frozen=True)
class FieldSpec:
    """Which fields make the id, the text and the kept metadata.

    Exactly one of ``text_field`` and ``template`` is set. ``template`` is a Python format
    string over field names, e.g. ``"{title}. {description}"``.
    """

    text_field: str | None = None
    template: str | None = None
    id_field: str | None = None
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.text_field is None) == (self.template is None):
            raise ConfigError("give exactly one of --text-field and --template")
        if self.template is not None:
            _ = self.template_fields

    @property
    def template_fields(self) -> tuple[str, ...]:
        """Field names the template uses, in order."""
        if self.template is None:
            return ()
        names: list[str] = []
        try:
            for _, name, spec, conv in string.Formatter().parse(self.template):
                if name is None:
                    continue
                if not name or not name.isidentifier() or spec or conv:
                    raise ConfigError(
                        f"template field {{{name}}} is not a plain field name; "
                        "write fields as {name}, e.g. '{title}. {description}'"
                    )
                names.append(name)
        except ValueError as exc:
            raise ConfigError(f"template {self.template!r} is not valid: {exc}") from exc
        if not names:
            raise ConfigError(f"template {self.template!r} names no field, e.g. '{{title}}'")
        return tuple(dict.fromkeys(names))

    @property
    def text_fields(self) -> tuple[str, ...]:
        return (self.text_field,) if self.text_field is not None else self.template_fields

    def check(self, fields: list[str], path: Path, *, all_fields: bool = True) -> None:
        """Raise ``MissingField`` if a named field is not among the input's ``fields``.

        ``all_fields=False`` (JSONL: ``fields`` are those of the first records) lets a kept
        field that is not among them through with a warning: it is stored where it appears.
        """
        wanted = [("id", self.id_field)] if self.id_field else []
        wanted += [("text", f) for f in self.text_fields]
        wanted += [("keep", f) for f in self.keep]
        for role, name in wanted:
            if name in fields:
                continue
            if role == "keep" and not all_fields:
                logger.warning(
                    "%s: keep field %r is not in the first records; it is stored where it "
                    "appears (fields found so far: %s)",
                    path,
                    name,
                    ", ".join(fields) or "(none)",
                )
            else:
                raise MissingField(
                    f"{path}: {role} field {name!r} is not in the input; "
                    f"fields found: {', '.join(fields) or '(none)'}"
                )


@dataclass(frozen=True)
class CleanOptions:
    """Switches of the cleaning steps.

    Attributes:
        normalize: Unicode NFKC and whitespace normalisation.
        strip_markup: remove HTML tags, decode HTML entities (also AG News style ``#36;``),
            and replace stray backslashes with spaces.
        max_chars: cut longer texts to this many characters before cleaning (``None``: no
            cut). The model reads only its first ``max_tokens`` tokens; a text far longer
            costs time and memory for nothing (a 50 MB text: 61 s and 7 GB). The processor
            sets ``max_tokens * CHARS_PER_TOKEN``, far more than the tokens kept need.
    """

    normalize: bool = True
    strip_markup: bool = True
    max_chars: int | None = None


class CleanRow(NamedTuple):
    """A record ready to embed (a named tuple: one is made per input row). ``cut``: the text
    was longer than ``CleanOptions.max_chars`` and was cut (it counts as truncated)."""

    row: int
    id: str
    text: str
    content_hash: str
    metadata: dict[str, Any]
    cut: bool = False
    delete: bool = False  # a change feed's delete of ``id`` (no text)
    # The raw hash of the cells the row was made from, with what cleaning changed in its
    # flag bits (``Cleaner.raw_hashes``, ``state.RAW_FLAGS``); 0: none (a change feed).
    raw: int = 0
    meta: str = ""  # ``meta_hash`` of the kept metadata


@dataclass(frozen=True)
class QuarantineRecord:
    """A record that cannot be embedded, with why and its original values."""

    row: int
    id: str | None
    reason: Reason
    detail: str
    values: dict[str, Any]

    def to_json(self, source: Path) -> str:
        return json.dumps(
            {
                "source": str(source),
                "row": self.row,
                "id": self.id,
                "reason": self.reason.value,
                "detail": self.detail,
                "values": _jsonable(self.values),
            },
            ensure_ascii=False,
        )


@dataclass
class CleanStats:
    """How many rows each cleaning step changed (a row can count in several)."""

    markup: int = 0
    control_chars: int = 0
    normalized: int = 0

    def count(self, changed: int) -> None:
        """Count one text's changes (flags from ``clean``)."""
        if changed:
            self.control_chars += bool(changed & CONTROL_CHARS)
            self.markup += bool(changed & MARKUP)
            self.normalized += bool(changed & NORMALIZED)

    def count_all(self, flags: NDArray[np.uint8]) -> None:
        """Count the changes of many texts at once (flags as ``count`` takes them)."""
        if len(flags) and flags.any():
            self.control_chars += int(np.count_nonzero(flags & CONTROL_CHARS))
            self.markup += int(np.count_nonzero(flags & MARKUP))
            self.normalized += int(np.count_nonzero(flags & NORMALIZED))


class Known(NamedTuple):
    """Rows of a batch that the table holds exactly as they were read
    (``state.StoredState.match``): whether each row is one, its id hash and its cleaning
    flags."""

    found: NDArray[np.bool_]
    id_hashes: U64
    flags: NDArray[np.uint8]


_SURROGATES = re.compile("[\udc80-\udcff]")
# Entities whose '&' was lost, as in AG News ("doesn #39;t", "the  #36;10", " quot;"): a match
# not preceded by '&' or a word character. The single space before one stands for the lost '&'
# and goes with it (see ``_restore_entities``).
_BARE_NUMERIC_ENTITY = re.compile(r"#(\d{1,7}|x[0-9a-fA-F]{1,6});")
_BARE_NAMED_ENTITY = re.compile(r"(quot|amp|lt|gt|nbsp|apos);")
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,500}>")
_BACKSLASHES = re.compile(r"\\+")
# C0 and C1 control characters, except tab, newline and carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


CONTROL_CHARS, MARKUP, NORMALIZED = 1, 2, 4  # what ``clean`` changed, as bit flags
# Part of every raw hash (``Cleaner.raw_hashes``). Raise it whenever a change here can clean
# the same cells into another row (text, id, metadata or a reason): stored raw hashes then
# match nothing, and the next run cleans every row again.
CLEAN_VERSION = 1
# Characters kept per model token when a long text is cut before cleaning: a token is 4-5
# characters of prose; markup and runs of spaces removed by cleaning leave room to spare.
CHARS_PER_TOKEN = 64


def clean_text(text: str, options: CleanOptions, stats: CleanStats) -> str:
    """Apply the cleaning steps to one text, counting in ``stats`` what changed."""
    out, changed = clean(text, options.normalize, options.strip_markup)
    stats.count(changed)
    return out


def clean(text: str, normalize: bool, strip_markup: bool) -> tuple[str, int]:
    """The cleaned text, and which steps changed it (``CONTROL_CHARS | MARKUP | NORMALIZED``).

    Each step first checks whether it has anything to do: most texts need no step.
    """
    changed = 0
    out = text
    # Control characters are not printable; isprintable() is cheaper than the search.
    if not out.isprintable() and _CONTROL.search(out):
        out = _CONTROL.sub(" ", out)
        changed |= CONTROL_CHARS
    if strip_markup:
        before = out
        if ";" in out:
            if "#" in out:
                out = _restore_entities(out, _BARE_NUMERIC_ENTITY)
            if (  # a substring test each is cheaper than one search for the alternation
                "quot;" in out
                or "amp;" in out
                or "lt;" in out
                or "gt;" in out
                or "nbsp;" in out
                or "apos;" in out
            ):
                out = _restore_entities(out, _BARE_NAMED_ENTITY)
        if "&" in out:
            out = html.unescape(out)
            # Entities such as &#0; decode to control characters.
            if _CONTROL.search(out):
                out = _CONTROL.sub(" ", out)
        if "<" in out:
            out = _TAG.sub(" ", out)
        if "\\" in out:
            out = _BACKSLASHES.sub(" ", out)
        if out != before:
            changed |= MARKUP
    if normalize:
        before = out
        if not out.isascii():
            out = unicodedata.normalize("NFKC", out)
            # The same as replacing runs of ``\s`` with one space and stripping the ends.
            out = " ".join(out.split())
        elif (
            # ASCII whitespace left after the control step: space, tab, newline, return.
            "  " in out
            or "\t" in out
            or "\n" in out
            or "\r" in out
            or out[:1] == " "
            or out[-1:] == " "
        ):
            out = " ".join(out.split())
        if out != before:
            changed |= NORMALIZED
    return out, changed


def _restore_entities(text: str, pattern: re.Pattern[str]) -> str:
    """Put '&' back before each match of ``pattern`` that follows neither '&' nor a
    word character, dropping one space just before it.

    The same as ``re.sub(" ?(?<![&\\w])" + pattern, "&" + match, text)``, at a few times
    the speed: a pattern that starts with a literal is searched for fast, one that starts with
    a look-behind is tried at every position.
    """
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        start = match.start()
        if start:
            before = text[start - 1]
            if before == "&" or before == "_" or before.isalnum():
                continue
            if before == " ":
                start -= 1
        pieces += (text[last:start], "&", match.group())
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# One encoder for every ``meta_hash`` (``json.dumps`` with ``default`` builds one a call).
_META_JSON = json.JSONEncoder(default=str)


def meta_hash(keep: Sequence[str], metadata: dict[str, Any]) -> str:
    """A hash of a row's kept fields, names included (so keeping another field changes it);
    empty when nothing is kept."""
    if not keep:
        return ""
    blob = _META_JSON.encode([[name, metadata.get(name)] for name in keep])
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def content_hash(text: str) -> str:
    """Stable hash of a cleaned text: the key for change detection and the embedding cache."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class Cleaner:
    """Validates and cleans the batches of one input; finds duplicate ids.

    Ids seen are kept as 64-bit hashes in sorted files on disk (``state.IdSet``), not in a
    dict of every id: memory stays flat however long the input.

    Args:
        spec: which fields to use.
        options: cleaning switches.
        seen: where the run keeps its seen ids (default: a temporary folder of its own,
            removed when the cleaner is).
    """

    def __init__(
        self,
        spec: FieldSpec,
        options: CleanOptions,
        seen: IdSet | None = None,
        *,
        feed: bool = False,
    ) -> None:
        self.spec = spec
        self.options = options
        # A change feed: each record has an ``op`` (upsert or delete) and an id may come
        # back (applied in order), so ids are not checked for duplicates.
        self.feed = feed
        self.stats = CleanStats()
        if seen is None:
            scratch = Scratch()
            weakref.finalize(self, scratch.close)
            seen = IdSet(scratch.folder("seen"))
        self._seen = seen

    def raw_hashes(self, batch: SourceBatch) -> U64 | None:
        """A 128-bit hash of the cells of each record that cleaning reads (the id, the text
        fields and the kept fields; the row number without an id field), keyed by all else
        that decides what they clean into: the field spec, the cleaning options,
        ``CLEAN_VERSION``, the cells' encoding and the columns' types. Two records with one
        raw hash clean into the same row, so a stored row with the hash of a record read now
        is that record unchanged (``state.StoredState.match``). ``(rows, 2)`` little-endian
        words, the flag bits (``state.RAW_FLAGS``) clear; ``None`` in a change feed or when
        a cell has a type it does not hash (nested values)."""
        if self.feed:
            return None
        spec = self.spec
        records = batch.records
        rows = batch.num_rows
        recipe: list[Any] = [
            CLEAN_VERSION,
            batch.encoding.value,
            spec.id_field,
            spec.text_field,
            spec.template,
            spec.keep,
            self.options.normalize,
            self.options.strip_markup,
            self.options.max_chars,
        ]
        parts: list[pa.Array | pa.Scalar] = []
        cells: list[pa.Array] = []
        if spec.id_field is None:
            numbers = np.arange(batch.first_row, batch.first_row + rows, dtype=np.int64)
            cells.append(pa.array(numbers))
        names = (*([spec.id_field] if spec.id_field else []), *spec.text_fields, *spec.keep)
        present = set(records.schema.names)
        for name in names:
            column = records.column(name) if name in present else pa.nulls(rows, pa.binary())
            recipe.append(str(column.type) if name in present else None)
            cells.append(column)
        for column in cells:
            encoded = _cell_bytes(column)
            if encoded is None:
                return None
            size = pc.cast(pc.binary_length(encoded), pa.string()).cast(pa.binary())
            parts += (
                pc.if_else(pc.is_valid(encoded), size, _NULL_CELL),
                _COLON,
                pc.fill_null(encoded, _EMPTY),
            )
        joined = pc.binary_join_element_wise(*parts, _EMPTY).to_pylist()
        # The recipe goes in as blake2b's personalisation (free, unlike a key: one block more).
        person = hashlib.blake2b(json.dumps(recipe).encode(), digest_size=16).digest()
        blake2b = hashlib.blake2b
        digests = b"".join([blake2b(v, digest_size=16, person=person).digest() for v in joined])
        words = np.frombuffer(digests, dtype="<u8").astype(np.uint64).reshape(rows, 2)
        words[:, 1] &= ~np.uint64(RAW_FLAGS)
        words[words[:, 0] == 0, 0] = 1  # 0 stands for no hash
        return words

    def clean(self, batch: SourceBatch) -> tuple[list[CleanRow], list[QuarantineRecord]]:
        """Split one batch into rows to embed and rows to quarantine. A row rejected for its
        own content claims no id: the first valid occurrence of an id wins."""
        good, bad, _ = self.clean_known(batch)
        return good, bad

    def clean_known(
        self, batch: SourceBatch, raw: U64 | None = None, known: Known | None = None
    ) -> tuple[list[CleanRow], list[QuarantineRecord], int]:
        """``clean``, with each row's raw hash (``raw_hashes``) kept in its ``CleanRow``;
        rows that the table holds as they were read (``known``) are not cleaned again: they
        only claim their id (a repeated one is quarantined as a duplicate, as in ``clean``)
        and are counted. Returns the rows to look up, the rows to quarantine, and how many
        known rows were kept (unchanged)."""
        spec = self.spec
        fast = np.zeros(batch.num_rows, dtype=bool) if known is None else known.found
        slow = np.flatnonzero(~fast)
        part = batch
        if len(slow) < batch.num_rows:  # decode only the rows to clean
            part = dataclasses.replace(batch, records=batch.records.take(pa.array(slow)))
        columns = self._columns(part)
        words = None if raw is None else (raw[:, 0].tolist(), raw[:, 1].tolist())
        good: list[CleanRow] = []
        where: list[int] = []  # each good row's index in ``columns``
        bad: list[QuarantineRecord] = []
        for j, i in enumerate(slow.tolist()):
            hashed = 0 if words is None else words[0][i] | words[1][i] << 64
            outcome = self._clean_record(batch.first_row + i, j, columns, hashed)
            if type(outcome) is CleanRow:
                good.append(outcome)
                where.append(j)
            else:
                bad.append(outcome)  # type: ignore[arg-type]
        kept = int(np.count_nonzero(fast))
        if known is not None and kept:
            self.stats.count_all(known.flags[fast])
        if spec.id_field is not None and (good or kept) and not self.feed:
            good, duplicates, repeated = self._first_occurrences(good, where, columns, batch, known)
            kept -= repeated
            if duplicates:
                bad = sorted([*bad, *duplicates], key=lambda record: record.row)
        return good, bad, kept

    def _columns(self, batch: SourceBatch) -> dict[str, list[Any]]:
        """The batch's fields as Python values, with the fields the spec names and the
        batch lacks as ``None``."""
        spec = self.spec
        columns = {name: batch.values(name) for name in batch.records.schema.names}
        wanted = (*spec.text_fields, *spec.keep, *([spec.id_field] if spec.id_field else []))
        for name in (*wanted, *([OP_FIELD] if self.feed else [])):
            if name not in columns:
                columns[name] = [None] * batch.num_rows
        return columns

    def _first_occurrences(
        self,
        rows: list[CleanRow],
        where: list[int],
        columns: dict[str, list[Any]],
        batch: SourceBatch,
        known: Known | None,
    ) -> tuple[list[CleanRow], list[QuarantineRecord], int]:
        """``rows`` without the ids seen before (in this batch or an earlier one), the
        quarantine records of those, and how many of them were ``known`` rows (which take
        part in batch order, with their stored id hashes, but are not in ``rows``)."""
        first_row = batch.first_row
        fast = np.zeros(0, dtype=np.int64) if known is None else np.flatnonzero(known.found)
        at = np.fromiter((r.row - first_row for r in rows), np.int64, len(rows))
        hashes = hash64([row.id for row in rows])
        # Each candidate's index in ``rows``, or -1 - its index in ``fast`` (a known row).
        slot = np.arange(len(rows))
        if len(fast):
            assert known is not None
            at = np.concatenate([at, fast])
            hashes = np.concatenate([hashes, known.id_hashes[fast]])
            slot = np.concatenate([slot, -1 - np.arange(len(fast))])
            order = np.argsort(at, kind="stable")
            at, hashes, slot = at[order], hashes[order], slot[order]
        numbers = (at + first_row).astype(np.uint64)
        seen, first = self._seen.first_rows(hashes)
        _, firsts, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        new = np.zeros(len(hashes), dtype=bool)
        new[firsts] = True
        new &= ~seen
        self._seen.add(hashes[new], numbers[new])
        if new.all():
            return rows, [], 0
        keep = [rows[k] for k, n in zip(slot.tolist(), new.tolist(), strict=True) if n and k >= 0]
        duplicates: list[QuarantineRecord] = []
        repeated = 0
        for k in np.flatnonzero(~new).tolist():
            # In-batch repeats point at the row of their first occurrence.
            earlier = int(first[k]) if seen[k] else int(numbers[firsts[inverse[k]]])
            if slot[k] >= 0:
                row = rows[slot[k]]
                values = {name: column[where[slot[k]]] for name, column in columns.items()}
            else:  # a known row: cleaned now, for its id and values
                repeated += 1
                one = dataclasses.replace(batch, records=batch.records.slice(int(at[k]), 1))
                one_columns = self._columns(one)
                outcome = self._clean_record(int(numbers[k]), 0, one_columns, count=False)
                if not isinstance(outcome, CleanRow):  # cannot be: the table holds it
                    duplicates.append(outcome)
                    continue
                row = outcome
                values = {name: column[0] for name, column in one_columns.items()}
            duplicates.append(
                QuarantineRecord(
                    row.row,
                    row.id,
                    Reason.DUPLICATE_ID,
                    f"id {row.id!r} already used by row {earlier}",
                    values,
                )
            )
        return keep, duplicates, repeated

    def _clean_record(
        self, row: int, i: int, columns: dict[str, list[Any]], raw: int = 0, count: bool = True
    ) -> CleanRow | QuarantineRecord:
        """Record ``i`` of ``columns`` (row ``row`` of the input), cleaned or rejected.
        ``raw``: its raw hash (flag bits clear); ``count``: count its changes in ``stats``."""
        spec = self.spec

        def reject(reason: Reason, detail: str, item_id: str | None) -> QuarantineRecord:
            record = {name: values[i] for name, values in columns.items()}
            return QuarantineRecord(row, item_id, reason, detail, record)

        if spec.id_field is None:
            item_id = str(row)
        else:
            raw_id = columns[spec.id_field][i]
            if type(raw_id) is str:
                item_id = raw_id.strip()
                if not item_id:
                    return reject(Reason.MISSING_ID, f"field {spec.id_field!r} is empty", None)
            elif raw_id is None:
                return reject(Reason.MISSING_ID, f"field {spec.id_field!r} is empty", None)
            elif (
                isinstance(raw_id, bool)
                or not isinstance(raw_id, str | int | float)
                or (isinstance(raw_id, float) and not math.isfinite(raw_id))
            ):
                return reject(
                    Reason.INVALID_ID,
                    f"field {spec.id_field!r} holds {type(raw_id).__name__}, "
                    "expected a string or number",
                    None,
                )
            else:
                item_id = str(raw_id).strip()
            if not item_id.isascii() and _SURROGATES.search(item_id):
                return reject(
                    Reason.INVALID_ID, f"field {spec.id_field!r} is not valid UTF-8", None
                )
        if self.feed:
            op = columns[OP_FIELD][i]
            if op not in FEED_OPS:
                return reject(
                    Reason.INVALID_OP,
                    f"field {OP_FIELD!r} holds {op!r}; a feed line's op is 'upsert' or 'delete'",
                    item_id,
                )
            if op == "delete":
                return CleanRow(row, item_id, "", "", {}, delete=True)

        if spec.text_field is not None:
            raw_text = columns[spec.text_field][i]
            if type(raw_text) is not str:
                if raw_text is None:
                    return reject(
                        Reason.MISSING_TEXT, f"field {spec.text_field!r} is missing", item_id
                    )
                if not isinstance(raw_text, str):
                    return reject(
                        Reason.NON_STRING_TEXT,
                        f"field {spec.text_field!r} holds {type(raw_text).__name__}, expected text",
                        item_id,
                    )
            if not raw_text.isascii() and _SURROGATES.search(raw_text):
                return reject(
                    Reason.INVALID_UTF8, f"field {spec.text_field!r} is not valid UTF-8", item_id
                )
        else:
            outcome = self._template_text(row, i, columns, item_id, reject)
            if not isinstance(outcome, str):
                return outcome
            raw_text = outcome
        if not raw_text.strip():
            return reject(Reason.EMPTY_TEXT, "text is empty or whitespace only", item_id)
        max_chars = self.options.max_chars
        cut = max_chars is not None and len(raw_text) > max_chars
        if cut:
            raw_text = raw_text[:max_chars]
        text, changed = clean(raw_text, self.options.normalize, self.options.strip_markup)
        if not text.strip():
            return reject(Reason.EMPTY_TEXT, "text is empty after cleaning", item_id)
        if count:
            self.stats.count(changed)
        if spec.keep:
            metadata = {name: _metadata_value(columns[name][i]) for name in spec.keep}
            meta = meta_hash(spec.keep, metadata)
        else:
            metadata, meta = {}, ""
        if raw:
            raw |= changed << 64
        return CleanRow(row, item_id, text, content_hash(text), metadata, cut, raw=raw, meta=meta)

    def _template_text(
        self,
        row: int,
        i: int,
        columns: dict[str, list[Any]],
        item_id: str,
        reject: Callable[[Reason, str, str | None], QuarantineRecord],
    ) -> str | QuarantineRecord:
        """The template filled from record ``i``, or why it cannot be."""
        spec = self.spec
        assert spec.template is not None
        names = ", ".join(repr(n) for n in spec.template_fields)
        raw = {name: columns[name][i] for name in spec.template_fields}
        if all(v is None for v in raw.values()):
            return reject(Reason.MISSING_TEXT, f"fields {names} are all missing", item_id)
        parts: dict[str, str] = {}
        for name, value in raw.items():
            if value is None:
                value = ""
            elif isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                return reject(
                    Reason.NON_STRING_TEXT,
                    f"field {name!r} holds {type(value).__name__}, expected text",
                    item_id,
                )
            parts[name] = value
        if not any(v.strip() for v in parts.values()):
            return reject(Reason.EMPTY_TEXT, f"fields {names} are all empty", item_id)
        for name, value in parts.items():
            if not value.isascii() and _SURROGATES.search(value):
                return reject(Reason.INVALID_UTF8, f"field {name!r} is not valid UTF-8", item_id)
        return spec.template.format(**parts)


# Pieces of the length-prefixed cells that ``Cleaner.raw_hashes`` hashes: ``<bytes>:<cell>``,
# or ``-:`` for a missing value.
_EMPTY = pa.scalar(b"", pa.binary())
_COLON = pa.scalar(b":", pa.binary())
_NULL_CELL = pa.scalar(b"-", pa.binary())


def _cell_bytes(column: pa.Array) -> pa.Array | None:
    """The cells of a column as ``binary``, distinct values as distinct bytes (strings and
    bytes as they are; numbers, booleans, dates and times as text), or ``None`` for a type
    without such a form (lists, structs)."""
    kind = column.type
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    ):
        return column.cast(pa.binary())
    if not (
        pa.types.is_null(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_temporal(kind)
    ):
        return None
    try:
        return pc.cast(column, pa.string()).cast(pa.binary())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _metadata_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        # Show invalid bytes as \xNN instead of dropping them.
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


class QuarantineWriter:
    """Appends quarantined rows to a JSONL file, created on the first row."""

    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        self.source = source
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._fh: IO[str] | None = None
        self._lock = threading.Lock()

    def write(self, records: list[QuarantineRecord]) -> None:
        """Append ``records`` (thread-safe)."""
        if not records:
            return
        with self._lock:
            try:
                self._write(records)
            except OSError as exc:
                raise StoreError(
                    f"cannot write the quarantine file {self.path} ({exc}); free disk space "
                    "or fix the folder's permissions, then run again"
                ) from exc

    def _write(self, records: list[QuarantineRecord]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        for record in records:
            self._fh.write(record.to_json(self.source) + "\n")
            self.reasons[record.reason.value] += 1
        self.count += len(records)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
