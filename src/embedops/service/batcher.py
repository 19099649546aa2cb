"""Dynamic batching: texts of concurrent requests are merged into model batches.

Requests put their texts (with token counts) on one bounded queue and wait. A dispatcher makes
a batch as soon as an inference slot is free and either the oldest text has waited
``max_wait`` or enough tokens wait to fill a batch; while every slot is busy, new texts gather
into larger batches. A batch holds the oldest waiting text and the waiting texts closest to it
in length (padding costs compute: texts of one batch are padded to its longest), up to the
token budget and a fair share of the queue per free slot; the oldest text always goes, so no
text waits forever. The queue holds at most ``max_queued`` texts: past it ``embed`` raises
``Overloaded`` (503 with ``Retry-After``) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from embedops.models.base import Embedder
from embedops.service.errors import Overloaded

logger = logging.getLogger(__name__)
# Waiting texts a batch is chosen from (the oldest ones); bounds the work of one choice.
WINDOW_BATCHES = 4


@dataclass(eq=False)
class _Job:
    """The texts of one request, and where their vectors go."""

    texts: list[str]
    future: asyncio.Future[NDArray[np.float32]]
    vectors: NDArray[np.float32]
    left: int  # texts without a vector yet


@dataclass(eq=False)
class _Item:
    """One waiting text."""

    job: _Job
    index: int
    length: int
    queued_at: float


class Batcher:
    """Merges the texts of concurrent requests into token-budget batches.

    Args:
        embedder: the backend (its ``embed`` runs in a thread; the backends release the GIL).
        workers: batches embedded at once (each in its own thread).
        batch_tokens: tokens per batch, padding included (``None``: rows only, for static
            and hash backends).
        max_rows: rows per batch at most.
        max_wait: seconds an idle batcher waits for more texts before it embeds.
        max_queued: texts waiting at most.
        on_batch: called with each batch's texts, tokens and the model version (metrics).
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        workers: int = 1,
        batch_tokens: int | None = 1024,
        max_rows: int = 256,
        max_wait: float = 0.002,
        max_queued: int = 4096,
        on_batch: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.workers = max(1, workers)
        self.batch_tokens = batch_tokens
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.on_batch = on_batch
        self._items: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._free = self.workers  # inference slots not running a batch
        self._freed = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embedops-batch")
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return len(self._items)

    def start(self) -> None:
        """Start the dispatcher (in the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Embed what is queued and in flight, then stop (later texts are refused)."""
        self._stopping = True
        while self._items or self._running:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)

    async def embed(self, texts: Sequence[str], lengths: Sequence[int]) -> NDArray[np.float32]:
        """Vectors of ``texts`` (token counts ``lengths``), embedded in shared batches.

        Raises:
            Overloaded: the queue is full, or the batcher is stopping.
        """
        dim = self.embedder.spec.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        if self._stopping:  # nothing would embed them
            raise Overloaded(
                f"model {self.embedder.spec.version} is being unloaded; retry after 1s",
                headers={"retry-after": "1"},
            )
        if len(self._items) + len(texts) > self.max_queued:
            raise Overloaded(
                f"the service is busy ({len(self._items)} texts queued, at most "
                f"{self.max_queued}); retry after 1s or send fewer texts at once",
                headers={"retry-after": "1"},
            )
        loop = asyncio.get_running_loop()
        job = _Job(
            list(texts), loop.create_future(), np.empty((len(texts), dim), np.float32), len(texts)
        )
        now = time.monotonic()
        self._items.extend(_Item(job, i, max(1, n), now) for i, n in enumerate(lengths))
        self._wake.set()
        return await job.future

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._free == 0:
                self._freed.clear()
                await self._freed.wait()
            free_since = time.monotonic()
            while not self._items:
                self._wake.clear()
                await self._wake.wait()
            # Wait a moment for more texts, unless a batch is full already: from the oldest
            # text's arrival when idle, from the slot's release when busy (the clients that
            # batch answered are sending their next texts).
            deadline = max(self._items[0].queued_at, free_since) + self.max_wait
            while not self._full() and (delay := deadline - time.monotonic()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            batch = self._take(self._free)
            if not batch:
                continue
            self._free -= 1
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _full(self) -> bool:
        if len(self._items) >= self.max_rows:
            return True
        if self.batch_tokens is None:
            return False
        return sum(item.length for item in self._items) >= self.batch_tokens

    def _take(self, free: int) -> list[_Item]:
        """The oldest waiting text and those closest to it in length, within the token budget,
        ``max_rows``, and a fair share of the queue per free slot."""
        while self._items and self._items[0].job.future.done():
            self._items.popleft()  # the client went away
        if not self._items:
            return []
        limit = min(self.max_rows, math.ceil(len(self._items) / max(1, free)))
        window = itertools.islice(self._items, 0, self.max_rows * WINDOW_BATCHES)
        live = [item for item in window if not item.job.future.done()]
        oldest = live[0].length
        # A stable sort: among texts of one length, the older go first (the oldest is first).
        live.sort(key=lambda item: abs(item.length - oldest))
        batch: list[_Item] = []
        longest = 1
        for item in live:
            if len(batch) >= limit:
                break
            padded = (len(batch) + 1) * max(longest, item.length)
            if batch and self.batch_tokens is not None and padded > self.batch_tokens:
                continue  # too long beside the others; a shorter one may still fit
            batch.append(item)
            longest = max(longest, item.length)
        taken = {id(item) for item in batch}
        self._items = deque(
            item for item in self._items if id(item) not in taken and not item.job.future.done()
        )
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        texts = [item.job.texts[item.index] for item in batch]
        try:
            if self.on_batch is not None:
                tokens = sum(item.length for item in batch)
                self.on_batch(len(texts), tokens, self.embedder.spec.version)
            vectors = await loop.run_in_executor(self._pool, self.embedder.embed, texts)
            error: BaseException | None = None
        except Exception as exc:  # handed to the requests of this batch
            logger.error("a batch of %d texts failed: %s", len(texts), exc)
            vectors, error = None, exc
        finally:
            self._free += 1
            self._freed.set()
        for row, item in enumerate(batch):
            job = item.job
            if job.future.done():
                continue
            if error is not None or vectors is None:
                job.future.set_exception(error or RuntimeError("no vectors"))
                continue
            job.vectors[item.index] = vectors[row]
            job.left -= 1
            if job.left == 0:
                job.future.set_result(job.vectors)
