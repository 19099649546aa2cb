"""The run log: each run of a collection writes what it is doing to the store, so that
``embedops status COLLECTION`` (another process, later) can say how it is going or how it
ended: progress, rate, ETA, counts, errors, and whether it finished, failed or was killed.

One JSON file a run, ``<store>/.runs/<collection>/<started>-<pid>.json``, rewritten whole
(temporary file, then rename) at most every ``interval`` seconds and at the end. A run whose
file still says ``running`` but whose process is gone was killed (``kill -9``, the OOM
killer, a power cut).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops.pipeline import RunReport
from embedops.state import pid_alive

KEEP_RUNS = 50  # run files kept per collection


@dataclass(frozen=True)
class RunStatus:
    """A run as its log last described it."""

    path: Path
    state: str  # running, finished, interrupted, failed, killed
    pid: int
    host: str
    started: str
    updated: str
    position: int
    total: int
    unit: str
    error: str | None
    report: dict[str, Any]

    @property
    def progress(self) -> float | None:
        """The share of the source read, 0-1 (``None``: unknown size)."""
        return min(1.0, self.position / self.total) if self.total else None

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far (``None`` unless running with a known size)."""
        progress = self.progress
        seconds = float(self.report.get("seconds") or 0.0)
        if self.state != "running" or not progress or not seconds:
            return None
        return seconds * (1 - progress) / progress


class RunLog:
    """Writes one run's file (see the module)."""

    def __init__(self, store: Path, collection: str, *, interval: float = 2.0) -> None:
        folder = store / ".runs" / collection
        folder.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC)
        self.path = folder / f"{started.strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}.json"
        self._started = started.isoformat(timespec="seconds")
        self._interval = interval
        self._last = 0.0
        self._clock = time.monotonic()
        for old in sorted(folder.glob("*.json"))[:-KEEP_RUNS]:
            old.unlink(missing_ok=True)

    def update(
        self, report: RunReport, position: int, total: int, unit: str, *, force: bool = False
    ) -> None:
        """Write the run's state (at most every ``interval`` seconds unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._write(report, position, total, unit, error=None)

    def finish(
        self, report: RunReport, position: int, total: int, unit: str, error: str | None
    ) -> None:
        self._write(report, position, total, unit, error=error)

    def _write(
        self, report: RunReport, position: int, total: int, unit: str, *, error: str | None
    ) -> None:
        data = report.to_dict()
        data["seconds"] = round(time.monotonic() - self._clock, 3)
        record = {
            "state": report.status,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self._started,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "position": position,
            "total": total,
            "unit": unit,
            "error": error,
            "report": data,
        }
        temp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            temp.write_text(json.dumps(record) + "\n", encoding="utf-8")
            temp.replace(self.path)
        except OSError:
            pass  # a run log that cannot be written must not stop the run


def last_run(store: Path, collection: str) -> RunStatus | None:
    """The newest run of ``collection`` in ``store`` (``None``: never run)."""
    folder = store / ".runs" / collection
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in reversed(files):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        state = record["state"]
        same_host = record["host"] == socket.gethostname()
        if state == "running" and same_host and not pid_alive(int(record["pid"])):
            state = "killed"
        return RunStatus(
            path=path,
            state=state,
            pid=int(record["pid"]),
            host=record["host"],
            started=record["started"],
            updated=record["updated"],
            position=int(record["position"]),
            total=int(record["total"]),
            unit=record["unit"],
            error=record.get("error"),
            report=record["report"],
        )
    return None
