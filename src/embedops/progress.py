"""A rich progress bar for runs: rows, rows/s and ETA; silent when not on a terminal."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Implements ``embedops.pipeline.Progress`` with a rich bar on stderr."""

    def __init__(
        self, description: str, *, console: Console | None = None, enabled: bool = True
    ) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.enabled,
            transient=False,
        )
        self._task: TaskID | None = None
        self._description = description
        self._started = 0.0

    def start(self, total: int, unit: str) -> None:
        self._started = time.perf_counter()
        self._bar.start()
        self._task = self._bar.add_task(self._description, total=total or None, rows=0, rate=0.0)

    def update(self, position: int, rows: int) -> None:
        if self._task is None:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._bar.update(self._task, completed=position, rows=rows, rate=rows / elapsed)

    def stop(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[0]
            if task.total:
                self._bar.update(self._task, completed=task.total)
        self._bar.stop()
