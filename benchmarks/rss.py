"""Run one command and measure it: wall time, CPU time, peak RSS of the command alone and of
its whole process tree (the tokenizer child included), sampled from ``/proc``.

    python -m benchmarks.rss [--every 0.1] [--json] -- embedops embed rows.csv ...

``peak_rss_mb`` is the kernel's high-water mark of the command's own process (what
``/usr/bin/time`` reports as "Maximum resident set size"); ``peak_tree_mb`` is the largest sum
of the resident sets of the command and its descendants seen at one sample. CPU time is the
user + system time of the command and the children it waited for: on a machine shared with
other jobs it moves far less than wall time, so before/after comparisons use it first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("benchmarks.rss")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (through ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def measure(
    command: list[str], every: float = 0.1, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command`` to its end; its exit code, wall and CPU seconds and peak RSS (MB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
        peak_tree = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not done.is_set():
                total = _rss(process.pid) + sum(_rss(c) for c in _children(process.pid))
                peak_tree = max(peak_tree, total)
                done.wait(every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4: this child's own usage (its waited-for children included), not the sum of
        # every command this process ran.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result: dict[str, Any] = {
        "command": " ".join(command),
        "exit_code": process.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KB on Linux
        "peak_tree_mb": round(peak_tree / (1 << 20), 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    try:
        report = json.loads(stdout)
        result["report"] = {
            k: report.get(k) for k in ("read", "inserted", "unchanged", "quarantined", "seconds")
        }
    except ValueError:
        result["stdout_tail"] = stdout.decode(errors="replace")[-500:]
    if process.returncode:
        result["stderr_tail"] = stderr.decode(errors="replace")[-1000:]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logger.info("%s", json.dumps(measure(command, args.every)))


if __name__ == "__main__":
    main()
