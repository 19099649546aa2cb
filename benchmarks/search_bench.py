"""Search latency and recall on a stored collection: exact scan against the vector index.

Queries are new synthetic texts (``benchmarks.gen_data`` with another seed), embedded once;
every query is searched exactly (``exact=True``) and through the index, top-k. Recall@k is
the share of the exact top-k ids the index returns; ``recall_ties`` also counts a returned id
whose exact cosine equals the k-th exact one (ties of identical texts), within 1e-6.

    python -m benchmarks.search_bench --store DIR --collection c --backend static
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.gen_data import generate
from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.store import Collection

logger = logging.getLogger("benchmarks.search_bench")


def query_vectors(processor: EmbeddingProcessor, n: int, seed: int = 2) -> NDArray[np.float32]:
    texts = [row.text for row in generate(n, 0.0, seed)]
    return processor.embed(texts)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(p99, 2)}


def timed(
    table: Collection, queries: NDArray[np.float32], k: int, **options: Any
) -> tuple[list[list[tuple[str, float]]], dict[str, float]]:
    """Each query's hits and the latency percentiles (after one warm-up query)."""
    table.nearest(queries[0], k, **options)
    hits, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        hits.append(table.nearest(query, k, **options))
        seconds.append(time.perf_counter() - started)
    return hits, _percentiles(seconds)


def recall(
    exact: list[list[tuple[str, float]]], approx: list[list[tuple[str, float]]], k: int
) -> dict[str, float]:
    strict = ties = 0
    for truth, got in zip(exact, approx, strict=True):
        ids = {i for i, _ in truth}
        kth = truth[-1][1] if truth else 1.0
        strict += sum(1 for i, _ in got if i in ids)
        ties += sum(1 for i, s in got if i in ids or s >= kth - 1e-6)
    total = k * len(exact)
    return {"recall_at_k": round(strict / total, 4), "recall_ties": round(ties / total, 4)}


def measure(
    store: Path,
    collection: str,
    backend: str,
    *,
    queries: int = 100,
    exact_queries: int = 50,
    k: int = 10,
    probes: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Exact p50/p99 on ``exact_queries`` queries; index p50/p99 and recall@k on the same ones
    and p50/p99 on ``queries`` queries, for each ``(nprobes, refine_factor)``."""
    settings = Settings(store=store, backend=backend)
    with EmbeddingProcessor(settings=settings) as processor:
        table = processor.store.collection(collection, processor.model_version)
        vectors = query_vectors(processor, max(queries, exact_queries))
        exact, exact_times = timed(table, vectors[:exact_queries], k, exact=True)
        result: dict[str, Any] = {
            "rows": table.count(),
            "k": k,
            "exact": exact_times | {"queries": exact_queries},
            "index": [],
        }
        logger.info("exact: %s", exact_times)
        for nprobes, refine in probes or [(settings.search_nprobes, settings.search_refine_factor)]:
            options = {"nprobes": nprobes, "refine_factor": refine}
            approx, _ = timed(table, vectors[:exact_queries], k, **options)
            _, times = timed(table, vectors[:queries], k, **options)
            entry = options | times | recall(exact, approx, k) | {"queries": queries}
            logger.info("index: %s", entry)
            result["index"].append(entry)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--backend", default="static")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=50)
    parser.add_argument("--probes", default="", help="nprobes:refine,... (default: settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    probes = [
        (int(a), int(b)) for a, b in (p.split(":") for p in args.probes.split(",") if p.strip())
    ]
    result = measure(
        args.store,
        args.collection,
        args.backend,
        queries=args.queries,
        exact_queries=args.exact_queries,
        probes=probes or None,
    )
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
