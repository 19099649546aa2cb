"""Fresh-embeddings benchmark (issue 11, point 6): a first run, then re-syncs of the same rows
with nothing changed, with 1% of texts changed, and with 1% deleted by snapshot, each as a
share of the first run's time; then rollback and promote times.

    python -m benchmarks.sync_bench --rows 100000 --backend onnx --out benchmarks/results/sync.json

Rows come from AG News (``../shared/data/ag_news_test.csv``), repeated with the row number in
the text so that every text is distinct. Runs go through ``EmbeddingProcessor`` in this
process, in one store in a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.registry import ModelRegistry

logger = logging.getLogger("benchmarks.sync_bench")
ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news_test.csv"


def _texts(n: int) -> list[str]:
    with AG_NEWS.open(encoding="utf-8", newline="") as fh:
        base = [f"{title}. {body}" for _, title, body in csv.reader(fh)]
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def _write(path: Path, ids: list[int], texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in ids:
            fh.write(json.dumps({"id": str(i), "text": texts[i]}) + "\n")
    return path


def _timed(label: str, results: dict[str, Any], work: Any) -> Any:
    started = time.perf_counter()
    value = work()
    results[label] = round(time.perf_counter() - started, 3)
    logger.warning("%s: %.2f s", label, results[label])
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/sync.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    folder = Path(tempfile.mkdtemp(prefix="embedops-sync-bench-"))
    results: dict[str, Any] = {
        "command": f"python -m benchmarks.sync_bench --rows {args.rows} --backend {args.backend}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"processor": platform.processor(), "python": platform.python_version()},
        "rows": args.rows,
        "backend": args.backend,
    }
    try:
        texts = _texts(args.rows)
        ids = list(range(args.rows))
        src = folder / "in.jsonl"
        settings = Settings(store=folder / "store", backend=args.backend, embed_cache="off")
        with EmbeddingProcessor(settings=settings) as p:

            def run(**options: Any) -> Any:
                return p.process(src, collection="c", id_field="id", text_field="text",
                                 **options)  # fmt: skip

            _write(src, ids, texts)
            first = _timed("first_run_s", results, run)
            _timed("resync_unchanged_s", results, run)
            changed = texts[:]
            for i in range(0, args.rows, 100):  # 1% of texts
                changed[i] = f"changed: {changed[i]}"
            _write(src, ids, changed)
            _timed("resync_1pct_changed_s", results, run)
            kept = [i for i in ids if i % 100 != 50]  # 1% gone
            _write(src, kept, changed)
            _timed("resync_1pct_deleted_s", results, lambda: run(delete_missing=True))
            _timed("rollback_s", results, lambda: p.rollback("c", first.published))
            registry = ModelRegistry(store=settings.store)
            registry.add(settings.model, backend=args.backend)
            results["promote_note"] = (
                "promote needs an evaluated model version; timed without the gate "
                "(catalog publish only)"
            )
            name = p.store.table_name("c", p.model_version)
            built = p.store.catalog.built("c", name)
            assert built is not None
            _timed(
                "publish_s",
                results,
                lambda: p.store.catalog.publish(
                    "c",
                    table=name,
                    model_version=p.model_version,
                    version=int(built["version"]),
                    action="promote",
                ),
            )
        first_s = results["first_run_s"]
        for key in ("resync_unchanged_s", "resync_1pct_changed_s", "resync_1pct_deleted_s"):
            results[key.replace("_s", "_share")] = round(results[key] / first_s, 4)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    logger.warning("%s", json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
