"""``ServiceMonitor``: the service's monitoring, in one object the app holds.

- ``embed``: the embedding step behind ``Services.embed`` (tokens per key and model version,
  the vector cache, queue depth, then drift sums and the history's text counts);
- ``request``: each finished HTTP request (from the app's middleware): requests, latency and
  errors by route, model version and variant;
- ``start``/``stop``: two background tasks, the history writer (every
  ``monitor_interval_s``: refresh drift, append a line to ``<store>/.monitoring/history.jsonl``)
  and the quality canary (every ``canary_interval_s``, when ``canary_pairs`` is set).

The variant and model version of a request come from ``request.state`` (``variant``,
``model_version``) when a route set them, else ``default`` and the service's model version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from embedops.config import Settings
from embedops.errors import InputError
from embedops.monitoring.canary import Canary, CanaryGauges
from embedops.monitoring.drift import DriftGauges, DriftMonitor, thresholds
from embedops.monitoring.history import HistoryWindow, append_line
from embedops.pipeline import VectorCache
from embedops.service.batcher import Batcher
from embedops.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "default"
# Routes whose requests the history counts (embedding, search, similarity, feedback, ...).
HISTORY_PREFIX = "/v1/"


def served_batchers(services: Any) -> list[Batcher]:
    """The batchers of every model version the service serves: an experiment's variants
    (``services.variants.served()``) when the service has them, else its own."""
    variants = getattr(services, "variants", None)
    if variants is not None:
        return [model.batcher for model in variants.served()]
    return [services.batcher]


class ServiceMonitor:
    """Metrics, cache, drift, canary and history of one service process.

    Args:
        settings: the service's settings (store, intervals, thresholds, cache size).
        metrics: the app's metrics; the drift and canary gauges join its registry.
    """

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._caches: dict[str, VectorCache] = {}  # one per model version (dimensions differ)
        limits = thresholds(settings)
        self.drift = DriftMonitor(
            settings.store, settings.drift_window, limits, DriftGauges(metrics.registry, limits)
        )
        self.canary = Canary(settings, CanaryGauges(metrics.registry))
        self.history = HistoryWindow()
        self.default_version = "unknown"
        self._served: Callable[[], list[Batcher]] = list
        self._tasks: list[asyncio.Task[None]] = []
        self._since = time.monotonic()

    async def embed(
        self, key_id: str, batcher: Batcher, texts: Sequence[str], lengths: Sequence[int]
    ) -> NDArray[np.float32]:
        """Vectors of ``texts`` (token counts ``lengths``, as charged): cached ones from the
        cache, the others from ``batcher``."""
        spec = batcher.embedder.spec
        version = spec.version
        self.metrics.tokens.labels(key_id, version).inc(sum(lengths))
        cache = self.cache(version)
        keys = list(texts)
        cached = [cache.get(k) for k in keys] if cache.size > 0 else [None] * len(keys)
        missing = [i for i, vector in enumerate(cached) if vector is None]
        if cache.size > 0:
            self.metrics.cache.labels(version, "hit").inc(len(texts) - len(missing))
            self.metrics.cache.labels(version, "miss").inc(len(missing))
        if len(missing) == len(texts):
            vectors = await self._batch(batcher, texts, lengths)
        else:
            vectors = np.empty((len(texts), spec.dim), dtype=np.float32)
            for i, vector in enumerate(cached):
                if vector is not None:
                    vectors[i] = vector
            if missing:
                vectors[missing] = await self._batch(
                    batcher, [texts[i] for i in missing], [lengths[i] for i in missing]
                )
        if cache.size > 0 and missing:
            first: dict[str, int] = {}  # a text twice in one request is kept once
            for i in missing:
                first.setdefault(keys[i], i)
            cache.put(list(first), vectors[list(first.values())])
        self.drift.observe(version, texts, lengths, vectors, spec.path / "tokenizer.json")
        self.history.embedded(len(texts), sum(lengths))
        return vectors

    def cache(self, version: str) -> VectorCache:
        """The vector cache of ``version`` (``service_cache_size`` texts, LRU)."""
        cache = self._caches.get(version)
        if cache is None:
            cache = self._caches[version] = VectorCache(self.settings.service_cache_size)
        return cache

    async def _batch(
        self, batcher: Batcher, texts: Sequence[str], lengths: Sequence[int]
    ) -> NDArray[np.float32]:
        queue = self.metrics.queue_depth.labels(batcher.embedder.spec.version)
        queue.set(batcher.queued + len(texts))
        try:
            return await batcher.embed(texts, lengths)
        finally:
            queue.set(batcher.queued)

    def request(
        self, route: str, method: str, status: int, seconds: float, state: Mapping[str, Any]
    ) -> None:
        """Count one finished HTTP request (``state``: the request's ``scope["state"]``)."""
        variant = str(state.get("variant") or DEFAULT_VARIANT)
        version = str(state.get("model_version") or self.default_version)
        self.metrics.requests.labels(route, method, str(status), version, variant).inc()
        self.metrics.latency.labels(route, version, variant).observe(seconds)
        error = status >= 400
        if error:
            kind = state.get("error_type") or ("internal_error" if status >= 500 else "unknown")
            self.metrics.errors.labels(route, str(kind), version, variant).inc()
        if route.startswith(HISTORY_PREFIX):
            self.history.request(variant, version, seconds, error)

    def before_scrape(self) -> None:
        """Bring the gauges up to date for a ``/metrics`` scrape (cheap: no tokenising)."""
        for batcher in self._served():
            self.metrics.queue_depth.labels(batcher.embedder.spec.version).set(batcher.queued)
        self.drift.refresh(tokenize=False)

    def start(self, served: Callable[[], list[Batcher]]) -> None:
        """Start the history writer and the canary (in the running event loop)."""
        self._served = served
        batchers = served()
        if batchers:
            self.default_version = batchers[0].embedder.spec.version
        self._since = time.monotonic()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._history_loop()), loop.create_task(self._canary())]

    async def stop(self) -> None:
        """Stop the tasks and write the last, partial interval's line."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.write_line()

    async def write_line(self) -> dict[str, Any]:
        """Refresh drift and append the interval's line to the history; returns it."""
        now = time.monotonic()
        window, self._since = now - self._since, now
        drift = await run_in_threadpool(self.drift.refresh)
        line = self.history.line(
            window,
            drift={v: _rounded(d) for v, d in drift.items()},
            canary={v: r.to_json() for v, r in self.canary.results.items()},
        )
        try:
            await run_in_threadpool(append_line, self.settings.store, line)
        except OSError as exc:
            logger.warning("cannot append to the monitoring history: %s", exc)
        return line

    async def _history_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.monitor_interval_s)
            try:
                await self.write_line()
            except Exception:  # the monitor must not end the service
                logger.exception("monitoring: writing the history line failed")

    async def _canary(self) -> None:
        if not self.canary.enabled:
            logger.info("quality canary off: no EMBEDOPS_CANARY_PAIRS")
            return
        while True:
            embedders = [batcher.embedder for batcher in self._served()]
            try:
                await run_in_threadpool(self.canary.run, embedders)
            except InputError as exc:
                logger.error("quality canary off: %s", exc)
                return
            except Exception:
                logger.exception("quality canary run failed")
            await asyncio.sleep(self.settings.canary_interval_s)


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}
