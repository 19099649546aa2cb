"""``embedops bench``: the backends side by side on your own texts.

Each backend embeds the same texts in alternated rounds (one warm-up first, the order reversed
every round so that a machine getting busier does not favour one side); the result gives
load time (first vector, model artefacts built or read from the cache), texts/s and tokens/s
(best round and median), and how closely each backend agrees with a reference backend on
these texts: the cosine of each text's two vectors (min, mean) and the share of each text's
10 nearest neighbours (among the texts) that both backends find.

The developers' benchmark against sentence-transformers, on the shared STS-B and AG News
files, stays in the source checkout: ``python -m benchmarks.bench`` (benchmarks/README.md).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.config import Settings
from embedops.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_BACKENDS = ("torch", "onnx", "onnx-int8", "static")
NEIGHBOURS = 10
# Used when no file is given: short, varied sentences, so that a first run needs no data.
SAMPLE_TEXTS = (
    "The central bank raised interest rates by a quarter point on Tuesday.",
    "A new species of frog was found in the rainforest of Borneo.",
    "How do I reset my password if I no longer have access to my email?",
    "The team won the championship after a penalty shoot-out.",
    "Add two cups of flour and stir until the batter is smooth.",
    "Shares of the chip maker fell after weaker sales in Asia.",
    "The museum reopens next month with an exhibition of early photographs.",
    "Our order arrived two weeks late and the box was damaged.",
    "Scientists measured the speed of the glacier with satellite images.",
    "The city council voted to extend the tram line to the airport.",
    "Can I return a jacket I bought online to one of your shops?",
    "The striker signed a three-year contract with the club.",
    "Heavy rain caused flooding in several villages along the river.",
    "This laptop's battery lasts about nine hours of normal use.",
    "The novel follows three generations of a family of fishermen.",
    "Researchers trained the model on a million labelled images.",
)


@dataclass
class Result:
    """One backend's figures (see the module docstring)."""

    backend: str
    model_version: str
    load_s: float
    seconds: list[float] = field(default_factory=list)
    texts: int = 0
    tokens: int = 0
    cosine_min: float | None = None
    cosine_mean: float | None = None
    neighbour_overlap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        best = min(self.seconds)
        median = statistics.median(self.seconds)
        return {
            "backend": self.backend,
            "model_version": self.model_version,
            "load_s": round(self.load_s, 3),
            "texts_per_s": round(self.texts / best, 1),
            "texts_per_s_median": round(self.texts / median, 1),
            "tokens_per_s": round(self.tokens / best, 1),
            "cosine_min": _round(self.cosine_min),
            "cosine_mean": _round(self.cosine_mean),
            "neighbour_overlap": _round(self.neighbour_overlap),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def read_texts(
    path: Path | None, *, text_field: str = "text", limit: int = 1000, fmt: str | None = None
) -> list[str]:
    """Up to ``limit`` non-empty texts: one per line of a ``.txt`` file, the ``text_field`` of
    a CSV, TSV, JSONL or Parquet file, or the built-in sample sentences when ``path`` is None.

    Raises:
        ConfigError: the file holds no text (or no field ``text_field``).
        SourceNotFound, InvalidFormat: the file cannot be read.
    """
    if path is None:
        return list(SAMPLE_TEXTS)[:limit]
    texts: list[str] = []
    if path.suffix.lower() == ".txt" and fmt is None:
        with path.open(encoding="utf-8", errors="replace") as lines:
            texts = [line.strip() for line in lines if line.strip()][:limit]
    else:
        from embedops.sources import open_source

        source = open_source(path, fmt=fmt)
        if text_field not in source.fields:
            raise ConfigError(
                f"{path}: no field {text_field!r} (fields: {', '.join(source.fields)}); "
                "name the text with --text-field"
            )
        for batch in source.batches():
            texts += [v for v in batch.values(text_field) if isinstance(v, str) and v.strip()]
            if len(texts) >= limit:
                break
    if not texts:
        raise ConfigError(f"{path}: no texts to embed")
    return texts[:limit]


def _neighbours(vectors: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    """Each row's ``k`` nearest other rows by cosine (rows are L2-normalised)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    k = min(k, len(vectors) - 1)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


def agreement(
    vectors: NDArray[np.float32], reference: NDArray[np.float32], k: int = NEIGHBOURS
) -> tuple[float | None, float | None, float | None]:
    """Cosine min and mean of matching rows (None when the dimensions differ), and the mean
    share of each row's ``k`` nearest rows that both sets agree on (None under 2 rows)."""
    cosine_min = cosine_mean = None
    if vectors.shape == reference.shape:
        cosines = np.sum(vectors * reference, axis=1)
        cosine_min, cosine_mean = float(cosines.min()), float(cosines.mean())
    overlap = None
    if len(vectors) > 1:
        mine, theirs = _neighbours(vectors, k), _neighbours(reference, k)
        shared = [len(set(a) & set(b)) / len(a) for a, b in zip(mine, theirs, strict=True)]
        overlap = float(np.mean(shared))
    return cosine_min, cosine_mean, overlap


def run_bench(
    texts: Sequence[str],
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    reference: str | None = None,
    rounds: int = 3,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Time each backend on ``texts`` and compare its vectors with ``reference``'s (default:
    ``torch`` when it runs, else the first backend).

    Returns:
        ``{"texts", "mean_tokens", "rounds", "reference", "results": [Result.to_dict()...]}``.

    Raises:
        ConfigError: no texts, no backends, an unknown backend, or a reference not among them.
    """
    from embedops.processor import EmbeddingProcessor

    texts = list(texts)
    if not texts or not backends or rounds < 1:
        raise ConfigError("bench needs texts, at least one backend and at least one round")
    if len(set(backends)) < len(backends):
        raise ConfigError(f"backends {', '.join(backends)}: name each backend once")
    if reference is None:
        reference = "torch" if "torch" in backends else backends[0]
    if reference not in backends:
        raise ConfigError(f"reference backend {reference!r} is not among {', '.join(backends)}")
    settings = settings or Settings()
    processors: dict[str, EmbeddingProcessor] = {}
    results: dict[str, Result] = {}
    vectors: dict[str, NDArray[np.float32]] = {}
    try:
        for backend in backends:
            logger.info("loading %s", backend)
            processor = EmbeddingProcessor(backend=backend, settings=settings)
            started = time.perf_counter()
            processor.embed(texts[:1])
            load_s = time.perf_counter() - started
            processor.embed(texts[:64])  # warm-up
            processors[backend] = processor
            spec = processor.embedder.spec
            results[backend] = Result(
                backend=backend,
                model_version=spec.version,
                load_s=load_s,
                texts=len(texts),
                tokens=sum(processor.embedder.count_tokens(texts)),
            )
        for r in range(rounds):
            order = list(backends) if r % 2 == 0 else list(reversed(backends))
            for backend in order:
                started = time.perf_counter()
                vectors[backend] = processors[backend].embed(texts)
                results[backend].seconds.append(time.perf_counter() - started)
            logger.info("round %d of %d done", r + 1, rounds)
    finally:
        for processor in processors.values():
            processor.close()
    for backend, result in results.items():
        if backend != reference:
            result.cosine_min, result.cosine_mean, result.neighbour_overlap = agreement(
                vectors[backend], vectors[reference]
            )
    tokens = results[reference].tokens
    return {
        "texts": len(texts),
        "mean_tokens": round(tokens / len(texts), 1),
        "rounds": rounds,
        "reference": reference,
        "results": [results[b].to_dict() for b in backends],
    }
