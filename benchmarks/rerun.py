"""Benchmark: the same `embedops embed` run twice; the second must take < 10% of the first.

Both runs are whole CLI processes (start-up, reading, hashing, store) on the same input and
store. Writes JSON with both times, their ratio and both run reports.

    python -m benchmarks.rerun [--source FILE] [--out benchmarks/results/rerun.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("benchmarks.rerun")
ROOT = Path(__file__).resolve().parent.parent
AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news_test.csv"


def _embed(source: Path, store: Path) -> tuple[float, dict[str, object]]:
    cmd = [
        sys.executable,
        "-m",
        "embedops",
        "embed",
        str(source),
        "--collection",
        "bench",
        "--columns",
        "label,title,description",
        "--template",
        "{title}. {description}",
        "--store",
        str(store),
        "--json",
        "--quiet",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - started, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=AG_NEWS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rerun.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        first_s, first = _embed(args.source, store)
        logger.info("first run: %.1fs (%s embedded)", first_s, first["embedded"])
        second_s, second = _embed(args.source, store)
        logger.info("second run: %.2fs (%s unchanged)", second_s, second["unchanged"])
    result = {
        "benchmark": "rerun",
        "source": str(args.source),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "first_run_s": round(first_s, 3),
        "second_run_s": round(second_s, 3),
        "ratio": round(second_s / first_s, 4),
        "first_report": first,
        "second_report": second,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("second/first = %.3f -> %s", result["ratio"], args.out)


if __name__ == "__main__":
    main()
