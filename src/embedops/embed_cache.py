"""A shared embedding cache on disk: vectors keyed by (model version, text hash), across
collections and runs.

Embedding the same texts into a second collection, or back into a new table after a
rollback, then costs lookups instead of inference. One SQLite file per model version under
``<store>/.embed-cache/`` (the model version in the file name, so two models never share a
key); each row holds a text's content hash, its float32 vector and when it was last used.
The files together stay under a size bound: past it, the least recently used vectors go.

For the ``static`` backend a lookup costs more than the embedding, so the processor leaves
the cache off there unless asked (see ``Settings.embed_cache``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

_CHUNK = 900  # SQLite variables per statement (the old default limit is 999)


class EmbedCache:
    """Vectors of one model version, on disk.

    Args:
        folder: the cache folder (``<store>/.embed-cache``).
        model_version: whose vectors these are.
        dim: the vectors' size.
        max_bytes: the bound on this file's size; the least recently used go past it.
    """

    def __init__(self, folder: Path, model_version: str, dim: int, max_bytes: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{model_version}.sqlite"
        self.dim = dim
        self.max_rows = max(1, max_bytes // (dim * 4 + 64))
        self.hits = 0
        self.misses = 0
        self._puts = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vector BLOB, used REAL)"
        )

    def get(self, hashes: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """The cached vectors among ``hashes`` (marked as used now)."""
        found: dict[str, NDArray[np.float32]] = {}
        with self._lock:
            for start in range(0, len(hashes), _CHUNK):
                chunk = list(hashes[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", chunk
                ).fetchall()
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.size == self.dim:
                        found[key] = vector
            if found:
                now = time.time()
                self._db.executemany(
                    "UPDATE vectors SET used = ? WHERE hash = ?", [(now, k) for k in found]
                )
                self._db.commit()
        self.hits += len(found)
        self.misses += len(hashes) - len(found)
        return found

    def put(self, hashes: Sequence[str], vectors: NDArray[np.float32]) -> None:
        """Keep ``vectors`` (one row per hash); drop the least recently used past the bound."""
        if not len(hashes):
            return
        now = time.time()
        rows = [
            (key, np.ascontiguousarray(vector, dtype=np.float32).tobytes(), now)
            for key, vector in zip(hashes, vectors, strict=True)
        ]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
            self._puts += 1
            # Counting is a scan: done every 16th put (the bound is overshot by 16 windows).
            (count,) = (
                self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()
                if self._puts % 16 == 1
                else (0,)
            )
            if count > self.max_rows:
                self._db.execute(
                    "DELETE FROM vectors WHERE hash IN "
                    "(SELECT hash FROM vectors ORDER BY used LIMIT ?)",
                    (count - self.max_rows,),
                )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
