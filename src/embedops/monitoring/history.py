"""The monitoring history: one JSON line per service process per interval in
``<store>/.monitoring/history.jsonl`` (the HTML report plots it).

A line::

    {"time": "2026-12-04T19:00:00+00:00", "instance": "host:pid", "window_s": 60.0,
     "requests": 120, "errors": 2, "texts": 480, "tokens": 6100,
     "latency_ms": {"p50": 4.1, "p95": 12.0, "p99": 30.2}, "texts_per_s": 8.0,
     "by_variant": {"default": {"model_version": "...", "requests": 120, "errors": 2,
                                "latency_ms": {...}}},
     "drift": {"<version>": {"length_shift": 0.01, "unknown_token_rate": 0.0,
                             "centroid_shift": 0.002, "norm_mean": 1.0, "norm_std": 0.0,
                             "alerts": []}},
     "canary": {"<version>": {"spearman": 0.87, "threshold": 0.84, "passed": true}}}

Lines are appended with ``O_APPEND``, one ``write`` each, so the processes of one store do not
tear each other's lines. ``drift`` and ``canary`` are absent until there is something to say.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HISTORY_FILE = Path(".monitoring") / "history.jsonl"
# Latencies kept per window for the percentiles (a uniform sample beyond this).
_MAX_LATENCIES = 20_000


def history_path(store: Path) -> Path:
    """The history file of ``store``."""
    return store / HISTORY_FILE


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of ``latencies_ms`` (zeros when empty)."""
    if not latencies_ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(latencies_ms), [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


@dataclass
class _Counts:
    model_version: str = ""
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seen: int = 0  # latencies offered (for the sample)

    def add(self, seconds: float, error: bool, rng: np.random.Generator) -> None:
        self.requests += 1
        self.errors += int(error)
        self.seen += 1
        value = seconds * 1000
        if len(self.latencies) < _MAX_LATENCIES:
            self.latencies.append(value)
        else:  # reservoir sampling keeps the sample uniform over the window
            slot = int(rng.integers(self.seen))
            if slot < _MAX_LATENCIES:
                self.latencies[slot] = value


class HistoryWindow:
    """Counts of the requests and texts of one interval (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()
        self._reset()

    def _reset(self) -> None:
        self._all = _Counts()
        self._variants: dict[str, _Counts] = {}
        self._texts = 0
        self._tokens = 0

    def request(self, variant: str, model_version: str, seconds: float, error: bool) -> None:
        """Count one request of an embedding, search or similarity route."""
        with self._lock:
            self._all.add(seconds, error, self._rng)
            counts = self._variants.setdefault(variant, _Counts(model_version))
            counts.model_version = model_version
            counts.add(seconds, error, self._rng)

    def embedded(self, texts: int, tokens: int) -> None:
        """Count texts embedded for requests."""
        with self._lock:
            self._texts += texts
            self._tokens += tokens

    def line(self, window_s: float, **extra: Any) -> dict[str, Any]:
        """The history line of the interval so far, and start the next one."""
        with self._lock:
            counts, variants = self._all, self._variants
            texts, tokens = self._texts, self._tokens
            self._reset()
        line: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "instance": f"{socket.gethostname()}:{os.getpid()}",
            "window_s": round(window_s, 3),
            "requests": counts.requests,
            "errors": counts.errors,
            "texts": texts,
            "tokens": tokens,
            "latency_ms": percentiles(counts.latencies),
            "texts_per_s": round(texts / window_s, 3) if window_s > 0 else 0.0,
            "by_variant": {
                label: {
                    "model_version": c.model_version,
                    "requests": c.requests,
                    "errors": c.errors,
                    "latency_ms": percentiles(c.latencies),
                }
                for label, c in sorted(variants.items())
            },
        }
        line.update({k: v for k, v in extra.items() if v})
        return line


def append_line(store: Path, line: dict[str, Any]) -> None:
    """Append ``line`` to the store's history: one ``write`` with ``O_APPEND``."""
    path = history_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def parse_time(value: object) -> float | None:
    """Unix seconds of an ISO 8601 time (naive: UTC); ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_history_lines(
    path: Path, since: float | None = None
) -> tuple[list[tuple[float, dict[str, Any]]], int]:
    """The history lines of the file ``path`` at or after ``since`` (Unix seconds), as
    ``(time, line)`` in time order, and how many lines could not be read (torn, not JSON, no
    time). A missing file gives ``([], 0)``."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    lines: list[tuple[float, dict[str, Any]]] = []
    skipped = 0
    with handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            moment = parse_time(record.get("time")) if isinstance(record, dict) else None
            if moment is None:
                skipped += 1
                continue
            if since is None or moment >= since:
                lines.append((moment, record))
    lines.sort(key=lambda item: item[0])
    return lines, skipped


def read_history(store: Path, since: float | datetime | None = None) -> list[dict[str, Any]]:
    """The history lines of ``store`` at or after ``since`` (Unix seconds or a datetime), in
    time order. Lines that cannot be read (torn, not JSON, no time) are skipped with a
    warning; a store without history gives ``[]``."""
    cutoff = since.timestamp() if isinstance(since, datetime) else since
    path = history_path(store)
    lines, skipped = read_history_lines(path, cutoff)
    if skipped:
        logger.warning("%s: skipped %d unreadable line(s)", path, skipped)
    return [record for _, record in lines]
