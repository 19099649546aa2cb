"""Shadow mode: a candidate model embeds a sample of live requests off the request path, and
its agreement with production is measured.

A request hands its texts and production's vectors (and, for a search, the ids production
returned) to ``ShadowRunner.offer_*``, which samples it (``rate``) and puts it on a bounded
queue without waiting: when the queue is full the sample is dropped and counted, never
awaited. One thread of the runner's own embeds each sample with the candidate and records:

- embeddings: the mean cosine of the candidate's vectors with production's, where the two are
  comparable (the same weights, or the same model name, at the same dimension: another
  backend or precision of one model); other pairs of models live in different spaces;
- searches: the candidate searches its own table of the collection (built with ``embedops
  embed --model CANDIDATE``); the overlap of the two top-k lists and Spearman's correlation of
  the ranks of their shared ids.

Each comparison is a row of the experiment's log (``shadow`` table) and feeds the
``embedops_shadow_*`` metrics.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.errors import CollectionNotFound, EmbedopsError
from embedops.experiments.log import ExperimentLog, ShadowRow
from embedops.experiments.metrics import ExperimentMetrics
from embedops.experiments.stats import rank_correlation, topk_overlap
from embedops.models.base import ModelSpec
from embedops.processor import EmbeddingProcessor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Sample:
    """One sampled request: what production did, for the candidate to redo."""

    request_id: str | None
    production: ModelSpec
    texts: list[str]
    vectors: NDArray[np.float32]
    collection: str | None = None
    k: int = 0
    filters: Mapping[str, Any] = field(default_factory=dict)
    returned: list[str] = field(default_factory=list)


def comparable(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether vectors of ``a`` and ``b`` share a space (cosine between them means something)."""
    return a.dim == b.dim and (a.digest == b.digest or a.name == b.name)


class ShadowRunner:
    """Runs a candidate on a sample of requests in a thread of its own.

    Args:
        experiment: the experiment's name (a metric label).
        candidate: the candidate's processor (opened; owned by the runner from now).
        rate: the share of requests sampled (0 to 1).
        queue_size: sampled requests waiting at most; more are dropped and counted.
        log: the experiment's log.
        metrics: the experiment metrics.
        seed: seeds the sampling (tests).
    """

    def __init__(
        self,
        *,
        experiment: str,
        candidate: EmbeddingProcessor,
        rate: float,
        queue_size: int,
        log: ExperimentLog,
        metrics: ExperimentMetrics,
        seed: int | None = None,
    ) -> None:
        self.experiment = experiment
        self.candidate = candidate
        self.version = candidate.model_version
        self.rate = rate
        self.log = log
        self.samples = 0
        self.dropped = 0
        self._labels = (experiment, self.version)
        self._metrics = metrics
        self._random = random.Random(seed)
        self._queue: queue.Queue[_Sample | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._run, name="embedops-shadow", daemon=True)
        self._errors = 0

    def start(self) -> None:
        """Start the runner's thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the sample in hand (waiting ones are dropped) and close the candidate."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)
        self.candidate.close()

    def offer_embed(
        self,
        request_id: str | None,
        production: ModelSpec,
        texts: Sequence[str],
        vectors: NDArray[np.float32],
    ) -> bool:
        """Sample an embedding request (never blocks). Returns whether it was queued."""
        return self._offer(_Sample(request_id, production, list(texts), vectors))

    def offer_search(
        self,
        request_id: str | None,
        production: ModelSpec,
        query: str,
        vector: NDArray[np.float32],
        *,
        collection: str,
        k: int,
        filters: Mapping[str, Any],
        returned: Sequence[str],
    ) -> bool:
        """Sample a search by text (never blocks). Returns whether it was queued."""
        sample = _Sample(
            request_id,
            production,
            [query],
            vector.reshape(1, -1),
            collection=collection,
            k=k,
            filters=dict(filters),
            returned=list(returned),
        )
        return self._offer(sample)

    def _offer(self, sample: _Sample) -> bool:
        if self.rate <= 0 or self._random.random() >= self.rate:
            return False
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            self.dropped += 1
            self._metrics.shadow_dropped.labels(*self._labels).inc()
            return False
        return True

    def _run(self) -> None:
        while (sample := self._queue.get()) is not None:
            try:
                self._compare(sample)
            except (EmbedopsError, ValueError, RuntimeError, MemoryError) as exc:
                self._errors += 1
                if self._errors in (1, 10) or self._errors % 1000 == 0:
                    logger.warning(
                        "shadow %s failed on a sample (%d so far): %s",
                        self.version,
                        self._errors,
                        exc,
                    )

    def _compare(self, sample: _Sample) -> None:
        started = time.perf_counter()
        vectors = self.candidate.embed(sample.texts)
        cosine = None
        if comparable(self.candidate.embedder.spec, sample.production):
            cosine = float(np.mean(np.sum(vectors * sample.vectors, axis=1)))
        overlap = correlation = None
        if sample.collection is not None:
            try:
                hits = self.candidate.search_vector(
                    sample.collection, vectors[0], k=sample.k, filters=sample.filters
                )
            except CollectionNotFound as exc:
                logger.debug("shadow search skipped: %s", exc)
            else:
                ids = [item for item, _ in hits]
                overlap = topk_overlap(sample.returned, ids)
                correlation = rank_correlation(sample.returned, ids)
        elapsed = (time.perf_counter() - started) * 1000
        self.samples += 1
        self.log.add(
            ShadowRow(
                request_id=sample.request_id,
                time=time.time(),
                kind="search" if sample.collection is not None else "embed",
                candidate=self.version,
                production=sample.production.version,
                texts=len(sample.texts),
                cosine=cosine,
                overlap=overlap,
                rank_correlation=correlation,
                candidate_ms=elapsed,
            )
        )
        self._metrics.shadow_samples.labels(*self._labels).inc()
        if cosine is not None:
            self._metrics.shadow_cosine.labels(*self._labels).observe(cosine)
        if overlap is not None:
            self._metrics.shadow_overlap.labels(*self._labels).set(overlap)
