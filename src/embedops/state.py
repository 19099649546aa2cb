"""What a run knows about ids without holding one Python object per row.

A run must tell, for each input row, whether its id was seen earlier in the run (a duplicate)
and what the table holds for it (unchanged, changed text, changed metadata). Dicts of every id
grew with the input (about 100 bytes a row: 962 MB for a million rows against 612 MB for
100,000). Both answers here come from 64-bit hashes kept in sorted numpy arrays on disk
(memory-mapped files in a temporary folder), looked up a window at a time with
``np.searchsorted``: 8 to 24 bytes a row, in the page cache rather than the heap.

A 64-bit id hash can collide (about 3e-8 for a million ids, 3e-4 for a hundred million).
Where it matters the collision is harmless: a row whose id hash matches another id's is
looked up as stored, embedded or updated by its real id (``merge_insert`` on ``id``), so the
table stays right; only the report may count it as updated instead of inserted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

U64 = NDArray[np.uint64]


def hash64(values: Iterable[str]) -> U64:
    """A 64-bit hash of each string (blake2b, stable across processes)."""
    return hash64_bytes([v.encode("utf-8", "surrogatepass") for v in values])


def hash64_bytes(values: Sequence[bytes]) -> U64:
    """``hash64`` of strings given as their UTF-8 bytes (one digest a value, joined: about
    twice as fast as converting each digest to an int)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(v, digest_size=8).digest() for v in values])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def hash64_arrow(values: pa.Array | pa.ChunkedArray) -> U64:
    """``hash64`` of an Arrow string column without nulls (a table's ids)."""
    return hash64_bytes(values.cast(pa.binary()).to_pylist())


def hex64(values: Sequence[str | None]) -> U64:
    """The first 64 bits of hex digests (``None`` or empty: 0)."""
    return np.fromiter((int(v[:16], 16) if v else 0 for v in values), dtype=np.uint64)


# Value of each byte as a hex digit (0 for bytes that are not one).
_HEX = np.zeros(256, dtype=np.uint64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def hex64_arrow(values: pa.Array | pa.ChunkedArray) -> U64:
    """``hex64`` of an Arrow string column, vectorised (null or shorter than 16: 0)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    array = array.cast(pa.large_binary())
    n = len(array)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + n + 1]
    lengths = np.diff(offsets)
    valid = (
        array.is_valid().to_numpy(zero_copy_only=False)
        if array.null_count
        else np.ones(n, dtype=bool)
    )
    ok = valid & (lengths >= 16)
    short = np.flatnonzero(valid & (lengths > 0) & (lengths < 16))
    if len(short):  # not a digest of ours, but read as ``hex64`` reads it
        out[short] = hex64(array.take(pa.array(short)).cast(pa.large_string()).to_pylist())
    if data_buffer is None or not ok.any():
        return out
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    digits = _HEX[data[offsets[:-1][ok, None] + np.arange(16)]]
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    out[ok] = np.bitwise_or.reduce(digits << shifts, axis=1)
    return out


# Runs shorter than this stay in memory (runs merge as they grow: the ones in memory hold
# fewer than twice this many keys in all, at 8 bytes a key and a value).
SPILL_ROWS = 32_768


class _Runs:
    """Sorted runs of uint64 keys, each with ``width`` uint64 values, in files; a run is merged
    into the one before it when it grows as large (so lookups touch O(log n) runs and each
    pair is rewritten O(log n) times)."""

    def __init__(self, folder: Path, width: int = 1) -> None:
        self._folder = folder
        self._width = width
        self._runs: list[tuple[U64, U64]] = []
        self._count = 0

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    def find(self, keys: U64) -> tuple[NDArray[np.bool_], U64]:
        """For each key: whether it is present, and its values (``(len(keys), width)``; 0
        where absent)."""
        found = np.zeros(len(keys), dtype=bool)
        values = np.zeros((len(keys), self._width), dtype=np.uint64)
        if not self._runs or not len(keys):
            return found, values
        # Sorted keys are searched about 3x faster (each search starts where the last ended).
        order = np.argsort(keys)
        ordered = keys[order]
        for run_keys, run_values in self._runs:
            at = np.searchsorted(run_keys, ordered)
            inside = at < len(run_keys)
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run_keys[at[inside]] == ordered[inside]
            new = hit & ~found
            values[new] = run_values[at[new]]
            found |= hit
        unsorted = np.empty_like(order)
        unsorted[order] = np.arange(len(order))
        return found[unsorted], values[unsorted]

    def compact(self) -> None:
        """Merge all runs into one (after the last ``add``: lookups then search once)."""
        if len(self._runs) < 2:
            return
        keys = np.concatenate([np.asarray(k) for k, _ in self._runs])
        values = np.concatenate([np.asarray(v) for _, v in self._runs])
        order = np.argsort(keys, kind="stable")
        self._runs = [(self._save(keys[order]), self._save(values[order]))]

    def add(self, keys: U64, values: U64) -> None:
        """Add keys not present yet, with their values (``(len(keys), width)``)."""
        if not len(keys):
            return
        values = values.reshape(len(keys), self._width)
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        while self._runs and len(self._runs[-1][0]) <= len(keys):
            old_keys, old_values = self._runs.pop()
            keys = np.concatenate([np.asarray(old_keys), keys])
            values = np.concatenate([np.asarray(old_values), values])
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
        self._runs.append((self._save(keys), self._save(values)))

    def _save(self, array: U64) -> U64:
        """A run's array: in memory while small (a few runs of under ``SPILL_ROWS`` each, a
        bounded amount), else in a file mapped into memory (not flushed: the file only spares
        the heap, nothing reads it after the run)."""
        if len(array) < SPILL_ROWS:
            return array
        self._count += 1
        path = self._folder / f"run-{self._count}.u64"
        mapped = np.memmap(path, dtype=np.uint64, mode="w+", shape=array.shape)
        mapped[:] = array
        return mapped


class IdSet:
    """Ids seen so far in a run, with the row where each was first seen."""

    def __init__(self, folder: Path) -> None:
        self._runs = _Runs(folder)

    def __len__(self) -> int:
        return len(self._runs)

    def first_rows(self, hashes: U64) -> tuple[NDArray[np.bool_], U64]:
        """For each id hash: whether it was seen, and the row where it was first seen."""
        found, rows = self._runs.find(hashes)
        return found, rows[:, 0]

    def add(self, hashes: U64, rows: U64) -> None:
        """Add ids not seen before (callers check first)."""
        self._runs.add(hashes, rows)


# The low bits of a raw hash's second word that carry what cleaning changed in the row
# (``cleaning.CONTROL_CHARS | MARKUP | NORMALIZED``) instead of hash bits.
RAW_FLAGS = 7


class StoredState:
    """What a table holds at the start of a run, as 64-bit hashes on disk: ``id -> (content
    hash, metadata hash)``, answered by ``lookup``, and each row's raw hash (the input cells it
    was made from, ``cleaning.Cleaner.raw_hashes``) ``-> id``, answered by ``match``."""

    def __init__(self, folder: Path) -> None:
        self._ids = _Runs(folder / "ids", width=2)
        self._raw = _Runs(folder / "raw", width=2)
        (folder / "ids").mkdir()
        (folder / "raw").mkdir()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def has_raw(self) -> bool:
        """Whether any stored row has a raw hash (tables written before them have none)."""
        return len(self._raw) > 0

    def add(self, ids: Sequence[str], content: Sequence[str], meta: Sequence[str | None]) -> None:
        keys = hash64(ids)
        self._ids.add(keys, np.stack([hex64(content), hex64(meta)], axis=1))

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Add a scanned batch of ``id``, ``content_hash``, ``meta_hash`` and ``raw_hash``
        (16 bytes or null; a column of any other type counts as none)."""
        keys = hash64_arrow(batch.column(0))
        hashes = np.stack([hex64_arrow(batch.column(1)), hex64_arrow(batch.column(2))], axis=1)
        self._ids.add(keys, hashes)
        raw = batch.column(3)
        if raw.type != pa.binary(16) or raw.null_count == len(raw):
            return
        words = raw_words(raw)
        valid = words[:, 0] != 0
        self._raw.add(words[valid, 0], np.stack([words[valid, 1], keys[valid]], axis=1))

    def compact(self) -> None:
        """Merge what was added into one sorted run each (see ``_Runs.compact``)."""
        self._ids.compact()
        self._raw.compact()

    def lookup(self, id_hashes: U64) -> tuple[NDArray[np.bool_], U64, U64]:
        """Whether each id is stored, and its content and metadata hashes (64 bits)."""
        found, values = self._ids.find(id_hashes)
        return found, values[:, 0], values[:, 1]

    def match(self, raw: U64) -> tuple[NDArray[np.bool_], U64, NDArray[np.uint8]]:
        """For raw hashes (``(n, 2)``, flag bits clear): whether a stored row was made from
        the same cells, its id hash, and what cleaning changed in it (``RAW_FLAGS`` bits)."""
        found, values = self._raw.find(np.ascontiguousarray(raw[:, 0]))
        found &= (values[:, 0] & ~np.uint64(RAW_FLAGS)) == raw[:, 1]
        flags = (values[:, 0] & np.uint64(RAW_FLAGS)).astype(np.uint8)
        return found, values[:, 1], flags


def raw_words(array: pa.Array | pa.ChunkedArray) -> U64:
    """A ``fixed_size_binary(16)`` column as ``(n, 2)`` little-endian words (null: zeros)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    words = np.zeros((n, 2), dtype=np.uint64)
    data = array.buffers()[1]
    if data is None or n == 0:
        return words
    words[:] = np.frombuffer(data, dtype="<u8")[2 * array.offset : 2 * (array.offset + n)].reshape(
        n, 2
    )
    if array.null_count:
        words[~array.is_valid().to_numpy(zero_copy_only=False)] = 0
    return words


class Scratch:
    """A temporary folder for a run's on-disk state, removed on ``close``. Folders that runs
    killed before their end left in ``parent`` (their process is gone) are removed first."""

    def __init__(self, parent: Path | None = None) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
            for old in parent.glob("embedops-run-*-*"):
                pid = old.name.split("-")[2]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(old, ignore_errors=True)
        prefix = f"embedops-run-{os.getpid()}-"
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))

    def folder(self, name: str) -> Path:
        path = self.path / name
        path.mkdir()
        return path

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
