"""What the routes share: the processor, the batcher, keys, limits, metrics and the writers,
and the embedding step every route that embeds goes through (count, check, charge, batch)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from embedops.config import Settings
from embedops.errors import StoreError
from embedops.models.base import Embedder
from embedops.monitoring.service import ServiceMonitor
from embedops.processor import EmbeddingProcessor
from embedops.service.auth import ApiKey, KeyStore
from embedops.service.batcher import Batcher
from embedops.service.errors import InvalidRequest
from embedops.service.limits import RateLimits
from embedops.service.metrics import ServiceMetrics
from embedops.service.variants import ServedModel, Variants

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Token counts of up to this many texts run in the event loop (microseconds each); larger
# requests are counted in a thread.
_INLINE_COUNT = 64


class CollectionWriters:
    """One writer per collection: writes to a collection wait for each other (in order of
    arrival) instead of failing on the store's writer lock; writes to different collections
    run at once, each in a thread. A lock held by another process (``embedops embed``, another
    service worker) is waited for too, up to ``wait`` seconds, then the ``StoreError`` stands.
    """

    def __init__(self, wait: float = 30.0) -> None:
        self.wait = wait
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, collection: str, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread once no other write to ``collection`` is running."""
        lock = self._locks.setdefault(collection, asyncio.Lock())
        async with lock:
            return await run_in_threadpool(self._retry, work)

    def _retry(self, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.wait
        pause = 0.02
        while True:
            try:
                return work()
            except StoreError as exc:
                # The writer lock is taken before anything is written: safe to try again.
                busy = isinstance(exc.__cause__, BlockingIOError)
                if not busy or time.monotonic() + pause > deadline:
                    raise
                logger.info("collection busy in another process; retrying in %.2fs", pause)
                time.sleep(pause)
                pause = min(0.5, pause * 2)


@dataclass
class Services:
    """Everything a request needs, built in the app's lifespan."""

    settings: Settings
    processor: EmbeddingProcessor
    embedder: Embedder
    batcher: Batcher
    keys: KeyStore
    limits: RateLimits
    metrics: ServiceMetrics
    variants: Variants  # the running experiment's models (service/variants.py)
    monitor: ServiceMonitor  # metrics, cache, drift, canary, history (monitoring/service.py)
    writers: CollectionWriters = field(default_factory=CollectionWriters)
    started: float = field(default_factory=time.time)

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer, to turn token-id inputs back into text."""
        from embedops.models.tokens import read_tokenizer

        return read_tokenizer(self.embedder.spec.path / "tokenizer.json")

    async def count(self, texts: Sequence[str], embedder: Embedder | None = None) -> list[int]:
        """Each text's token count (special tokens included, before truncation) by
        ``embedder``'s tokenizer (default: the service's model)."""
        embedder = embedder or self.embedder
        if len(texts) <= _INLINE_COUNT:
            return embedder.count_tokens(texts)
        return await run_in_threadpool(embedder.count_tokens, texts)

    async def embed(
        self,
        request: Request,
        key: ApiKey,
        texts: Sequence[str],
        *,
        counts: Sequence[int] | None = None,
        param: str = "input",
        model: ServedModel | None = None,
    ) -> tuple[NDArray[np.float32], int]:
        """Embed ``texts`` for ``key``: count tokens (or take ``counts``), refuse or truncate
        texts over the model's limit, charge the tokens to the key, embed in shared batches
        of ``model`` (a variant's, from ``variants.choose``; default: the service's model).

        Returns:
            The vectors and the tokens used (each text's count, capped at the model's limit).

        Raises:
            InvalidRequest: a text is over the limit and ``settings.truncate`` is off.
            RateLimited: over the key's tokens per minute.
            Overloaded: the batcher's queue is full.
        """
        embedder = model.processor.embedder if model is not None else self.embedder
        batcher = model.batcher if model is not None else self.batcher
        lengths = list(counts) if counts is not None else await self.count(texts, embedder)
        limit = embedder.spec.max_tokens
        if not self.settings.truncate:
            over = [(i, n) for i, n in enumerate(lengths) if n > limit]
            if over:
                i, n = over[0]
                where = f"{param}[{i}]" if len(texts) > 1 or param != "input" else param
                raise InvalidRequest(
                    f"{where} has {n} tokens, over the model's limit of {limit} "
                    f"({len(over)} text(s) over it); shorten the text or split it",
                    param=param,
                )
        capped = [min(n, limit) for n in lengths]
        tokens = sum(capped)
        await self.limits.hit(key, tokens=tokens)
        vectors = await self.monitor.embed(key.id, batcher, texts, capped)
        return vectors, tokens

    async def in_thread(self, work: Callable[[], T]) -> T:
        """Run blocking store work in a thread."""
        return await run_in_threadpool(work)


def services_of(request: Request) -> Services:
    """The app's ``Services`` (set in the lifespan)."""
    services: Services = request.app.state.services
    return services
