"""The per-experiment log: ``<store>/.experiments/<name>.sqlite``.

Three tables: ``requests`` (one row a request an experiment variant served: its id, time,
variant, model version, route, a hash of the API key id, latency, status, and for searches the
ids returned, best first), ``feedback`` (clicked and relevant ids sent for a request) and
``shadow`` (one row a comparison of the shadow candidate with production).

Rows reach the file off the request path: ``ExperimentLog.add`` puts a row on a queue (no I/O,
no lock held for long) and one writer thread commits what has gathered in one transaction
every ``interval`` seconds. The file is in WAL mode, so the report (another process) reads it
while a service writes; several service processes may write one file (SQLite's lock, a busy
timeout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedops.errors import StoreError

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, variant TEXT NOT NULL,
    model_version TEXT NOT NULL, route TEXT NOT NULL, key_hash TEXT, latency_ms REAL NOT NULL,
    status INTEGER NOT NULL, returned TEXT);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL, time REAL NOT NULL, clicked TEXT NOT NULL, relevant TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
CREATE TABLE IF NOT EXISTS shadow (
    request_id TEXT, time REAL NOT NULL, kind TEXT NOT NULL, candidate TEXT NOT NULL,
    production TEXT NOT NULL, texts INTEGER NOT NULL, cosine REAL, overlap REAL,
    rank_correlation REAL, candidate_ms REAL NOT NULL);
"""
# Rows waiting for the writer at most; past it rows are dropped (and counted), so a stuck disk
# cannot grow the service's memory.
MAX_PENDING = 100_000


def key_hash(key_id: str) -> str:
    """A short hash of an API key id (the log does not name keys)."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:16]


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the log at ``path`` (created with its tables if missing).

    Raises:
        StoreError: the file cannot be opened or created.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot open the experiment log {path} ({exc}); check the path and its permissions"
        ) from exc
    return db


@dataclass(frozen=True)
class RequestRow:
    """One request served by a variant."""

    request_id: str
    time: float
    variant: str
    model_version: str
    route: str
    key_hash: str | None
    latency_ms: float
    status: int
    returned: Sequence[str] | None = None


@dataclass(frozen=True)
class ShadowRow:
    """One comparison of the shadow candidate with production."""

    request_id: str | None
    time: float
    kind: str  # "embed" or "search"
    candidate: str
    production: str
    texts: int
    cosine: float | None
    overlap: float | None
    rank_correlation: float | None
    candidate_ms: float


class ExperimentLog:
    """Batched, off-the-loop writes to one experiment's SQLite log.

    Args:
        path: the log file.
        interval: seconds between commits of what has gathered.

    Example:
        >>> log = ExperimentLog(path)  # doctest: +SKIP
        >>> log.add(RequestRow(...))   # returns at once
        >>> log.close()                # commits the rest
    """

    def __init__(self, path: Path, *, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.dropped = 0
        self._queue: queue.SimpleQueue[RequestRow | ShadowRow | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._db = connect(path)
        self._lock = threading.Lock()  # one user of the connection at a time
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="embedops-explog", daemon=True)
        self._thread.start()

    def add(self, row: RequestRow | ShadowRow) -> None:
        """Queue ``row`` for the next commit (never blocks)."""
        if self._queue.qsize() >= MAX_PENDING:
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                logger.warning(
                    "experiment log %s is behind; %d rows dropped", self.path, self.dropped
                )
            return
        self._queue.put(row)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until what was queued before the call is committed (call from a thread, never
        from the event loop)."""
        if not self._thread.is_alive():
            return  # closed: everything was committed
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        with self._lock:
            self._closed = True
            self._db.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            rows: list[RequestRow | ShadowRow] = []
            waiting: list[threading.Event] = []
            deadline = time.monotonic() + self.interval
            while True:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    waiting.append(item)
                    break
                rows.append(item)
            if rows:
                self._commit(rows)
            for event in waiting:
                event.set()

    def _commit(self, rows: list[RequestRow | ShadowRow]) -> None:
        requests = [
            (
                r.request_id,
                r.time,
                r.variant,
                r.model_version,
                r.route,
                r.key_hash,
                r.latency_ms,
                r.status,
                json.dumps(list(r.returned)) if r.returned is not None else None,
            )
            for r in rows
            if isinstance(r, RequestRow)
        ]
        shadows = [
            (
                r.request_id,
                r.time,
                r.kind,
                r.candidate,
                r.production,
                r.texts,
                r.cosine,
                r.overlap,
                r.rank_correlation,
                r.candidate_ms,
            )
            for r in rows
            if isinstance(r, ShadowRow)
        ]
        try:
            with self._lock, self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?)", requests
                )
                self._db.executemany("INSERT INTO shadow VALUES (?,?,?,?,?,?,?,?,?,?)", shadows)
        except sqlite3.Error as exc:
            self.dropped += len(rows)
            logger.error("experiment log %s: %d rows lost (%s)", self.path, len(rows), exc)

    def add_feedback(
        self, request_id: str, clicked: Sequence[str], relevant: Sequence[str]
    ) -> bool:
        """Record feedback for ``request_id`` if this log holds that request (call from a
        thread: it commits what is queued first, then writes).

        Returns:
            Whether the request was found (and the feedback recorded).
        """
        self.flush()
        with self._lock:
            if not self._closed:
                return _insert_feedback(self._db, request_id, clicked, relevant)
        # Closed meanwhile (the service moved to another experiment): the file stays.
        return add_feedback_to_file(self.path, request_id, clicked, relevant)


def add_feedback_to_file(
    path: Path, request_id: str, clicked: Sequence[str], relevant: Sequence[str]
) -> bool:
    """``ExperimentLog.add_feedback`` for a log no service holds open (a stopped experiment's).

    Returns:
        Whether the request was found (and the feedback recorded).
    """
    db = connect(path)
    try:
        return _insert_feedback(db, request_id, clicked, relevant)
    finally:
        db.close()


def _insert_feedback(
    db: sqlite3.Connection, request_id: str, clicked: Sequence[str], relevant: Sequence[str]
) -> bool:
    with db:
        found = db.execute("SELECT 1 FROM requests WHERE request_id = ?", (request_id,))
        if found.fetchone() is None:
            return False
        db.execute(
            "INSERT INTO feedback VALUES (?,?,?,?)",
            (request_id, time.time(), json.dumps(list(clicked)), json.dumps(list(relevant))),
        )
    return True
