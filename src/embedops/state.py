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
from numpy.typing import NDArray

U64 = NDArray[np.uint64]


def hash64(values: Iterable[str]) -> U64:
    """A 64-bit hash of each string (blake2b, stable across processes)."""
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(v.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
            )
            for v in values
        ),
        dtype=np.uint64,
    )


def hex64(values: Sequence[str | None]) -> U64:
    """The first 64 bits of hex digests (``None`` or empty: 0)."""
    return np.fromiter((int(v[:16], 16) if v else 0 for v in values), dtype=np.uint64)


class _Runs:
    """Sorted runs of (key, value) uint64 pairs in files, merged when a run grows as large as
    the one before it (so lookups touch O(log n) runs and each pair is rewritten O(log n)
    times)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._runs: list[tuple[np.memmap, np.memmap]] = []
        self._count = 0

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    def find(self, keys: U64) -> tuple[NDArray[np.bool_], U64]:
        """For each key: whether it is present, and its value (0 where absent)."""
        found = np.zeros(len(keys), dtype=bool)
        values = np.zeros(len(keys), dtype=np.uint64)
        for run_keys, run_values in self._runs:
            at = np.searchsorted(run_keys, keys)
            inside = at < len(run_keys)
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run_keys[at[inside]] == keys[inside]
            new = hit & ~found
            values[new] = run_values[at[new]]
            found |= hit
        return found, values

    def add(self, keys: U64, values: U64) -> None:
        """Add pairs whose keys are not present yet."""
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        while self._runs and len(self._runs[-1][0]) <= len(keys):
            old_keys, old_values = self._runs.pop()
            keys = np.concatenate([np.asarray(old_keys), keys])
            values = np.concatenate([np.asarray(old_values), values])
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
        self._runs.append((self._save(keys), self._save(values)))

    def _save(self, array: U64) -> np.memmap:
        self._count += 1
        path = self._folder / f"run-{self._count}.u64"
        mapped = np.memmap(path, dtype=np.uint64, mode="w+", shape=(len(array),))
        mapped[:] = array
        mapped.flush()
        return mapped


class IdSet:
    """Ids seen so far in a run, with the row where each was first seen."""

    def __init__(self, folder: Path) -> None:
        self._runs = _Runs(folder)

    def __len__(self) -> int:
        return len(self._runs)

    def first_rows(self, hashes: U64) -> tuple[NDArray[np.bool_], U64]:
        """For each id hash: whether it was seen, and the row where it was first seen."""
        return self._runs.find(hashes)

    def add(self, hashes: U64, rows: U64) -> None:
        """Add ids not seen before (callers check first)."""
        self._runs.add(hashes, rows)


class StoredState:
    """``id -> (content hash, metadata hash)`` of a table's rows at the start of a run, as
    64-bit hashes on disk. ``lookup`` answers a window's ids."""

    def __init__(self, folder: Path) -> None:
        self._content = _Runs(folder / "content")
        self._meta = _Runs(folder / "meta")
        (folder / "content").mkdir()
        (folder / "meta").mkdir()

    def __len__(self) -> int:
        return len(self._content)

    def add(self, ids: Sequence[str], content: Sequence[str], meta: Sequence[str | None]) -> None:
        keys = hash64(ids)
        self._content.add(keys, hex64(content))
        self._meta.add(keys, hex64(meta))

    def lookup(self, id_hashes: U64) -> tuple[NDArray[np.bool_], U64, U64]:
        """Whether each id is stored, and its content and metadata hashes (64 bits)."""
        found, content = self._content.find(id_hashes)
        _, meta = self._meta.find(id_hashes)
        return found, content, meta


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
