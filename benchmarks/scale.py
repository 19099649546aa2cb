"""Scale benchmark: the real CLI on a million synthetic records (issue 10, points 2 and 7).

Every run is a subprocess of ``.venv/bin/embedops`` under ``/usr/bin/time -v`` (wall time and
peak RSS of the command). Steps, in order, into stores under ``--work``:

1. ``--rows`` rows (default 1,000,000) with ``--backend static``, upkeep off: the run itself;
2. ``embedops index`` on that collection: the upkeep the run would do after it (compaction,
   cleanup, the vector index);
3. the same ``embed`` again, all rows unchanged;
4. ``--small-rows`` (default 100,000) with ``static``, upkeep off: the peak RSS ratio
   (flat memory: the big run's peak RSS / the small run's);
5. ``--model-rows`` rows with the default backend (``onnx``) and with ``onnx-int8``: rows/s and
   the time a million would take;
6. search on the big collection: exact against the index (``benchmarks.search_bench``).

    python -m benchmarks.scale [--rows 1000000] [--model-rows 100000] [--format parquet]
        [--steps static,model,search]

Writes ``benchmarks/results/scale.json`` after each step, keeping the results of steps not run
(each step records its commit and time). Data files are made by ``benchmarks.gen_data`` (kept
in ``--work`` and reused when present).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import gen_data, search_bench

logger = logging.getLogger("benchmarks.scale")
ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".venv" / "bin" / "embedops"
COLLECTION = "scale"
KEEP = "category,price,date"


def _data(work: Path, rows: int, fmt: str, seed: int = 1) -> Path:
    path = work / f"rows-{rows}-seed{seed}.{fmt}"
    if not path.exists():
        started = time.perf_counter()
        gen_data.main(["--rows", str(rows), "--bad-share", "0.01", "--seed", str(seed),
                       "--out", str(path)])  # fmt: skip
        logger.info("generated %s in %.1fs", path.name, time.perf_counter() - started)
    return path


def _timed(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run the CLI under /usr/bin/time -v: wall seconds, peak RSS (MB), exit code, output."""
    cmd = ["/usr/bin/time", "-v", str(CLI), *args]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - started
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result: dict[str, Any] = {
        "command": "embedops " + " ".join(args),
        "env": env,
        "exit_code": done.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else None,
    }
    try:
        result["report"] = json.loads(done.stdout)
    except ValueError:
        result["stdout"] = done.stdout[-2000:]
    if done.returncode:
        result["stderr"] = done.stderr[-2000:]
        logger.warning("exit %d: %s", done.returncode, done.stderr[-500:])
    logger.info("%s: %.1fs, %s MB", result["command"], wall, result["peak_rss_mb"])
    return result


def _embed(source: Path, store: Path, backend: str, upkeep: bool) -> dict[str, Any]:
    args = ["embed", str(source), "--collection", COLLECTION, "--id-field", "id",
            "--text-field", "text", "--keep", KEEP, "--backend", backend,
            "--store", str(store), "--quiet", "--json"]  # fmt: skip
    return _timed(args, {"EMBEDOPS_UPKEEP": "1" if upkeep else "0", "HF_HUB_OFFLINE": "1"})


def _rate(run: dict[str, Any]) -> dict[str, Any]:
    report = run.get("report") or {}
    rows = int(report.get("read", 0))
    per_s = rows / run["wall_s"] if run["wall_s"] else 0.0
    return {
        "rows": rows,
        "rows_per_s_end_to_end": round(per_s, 1),
        "million_rows_would_take_min": round(1e6 / per_s / 60, 1) if per_s else None,
    }


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)  # fmt: skip
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--model-rows", type=int, default=100_000)
    parser.add_argument("--format", default="parquet", choices=["csv", "jsonl", "parquet"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/embedops-scale"))
    parser.add_argument("--steps", default="static,model,search", help="which steps to run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    steps = set(filter(None, args.steps.split(",")))
    args.work.mkdir(parents=True, exist_ok=True)
    # Steps not run this time keep their earlier results.
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result |= {
        "benchmark": "scale",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "format": args.format,
    }

    def save(step: str, values: dict[str, Any]) -> None:
        values |= {
            "commit": _commit(),
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine
        }
        result[step] = values
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    store = args.work / "store-static"
    if "static" in steps:
        _static(args, store, save)
    if "model" in steps:
        model_data = _data(args.work, args.model_rows, args.format)
        for backend in ("onnx", "onnx-int8"):
            shutil.rmtree(args.work / f"store-{backend}", ignore_errors=True)
            run = _embed(model_data, args.work / f"store-{backend}", backend, upkeep=True)
            save(backend, run | _rate(run))
    if "search" in steps:
        save("search", search_bench.measure(store, COLLECTION, "static"))
    logger.info("-> %s", args.out)


def _static(args: argparse.Namespace, store: Path, save: Any) -> None:
    """The big static run (upkeep off), its upkeep by hand, the unchanged re-run, and the
    small run for the memory ratio."""
    for old in (store, args.work / "store-small"):
        shutil.rmtree(old, ignore_errors=True)
    big = _data(args.work, args.rows, args.format)
    small = _data(args.work, args.small_rows, args.format)
    first = _embed(big, store, "static", upkeep=False)
    save("static_first", first)
    index_args = ["index", COLLECTION, "--backend", "static", "--store", str(store), "--json"]
    save("static_index", _timed(index_args, {"HF_HUB_OFFLINE": "1"}))
    save("static_rerun", _embed(big, store, "static", upkeep=True))
    small_run = _embed(small, args.work / "store-small", "static", upkeep=False)
    if first["peak_rss_mb"] and small_run["peak_rss_mb"]:
        small_run["rss_ratio_big_over_small"] = round(
            first["peak_rss_mb"] / small_run["peak_rss_mb"], 3
        )
    save("static_small", small_run)


if __name__ == "__main__":
    main()
