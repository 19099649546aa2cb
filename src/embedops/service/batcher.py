"""Dynamic batching: texts of concurrent requests are merged into model batches.

Requests put their texts (with token counts) on one bounded queue and wait. A dispatcher takes
texts from the queue as soon as an inference slot is free and either the oldest text has
waited ``max_wait`` or a batch's token budget is full; while every slot is busy, new texts
gather into larger batches. The queue holds at most ``max_queued`` texts: past it ``submit``
raises ``Overloaded`` (503 with ``Retry-After``) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass
class _Job:
    """The texts of one request, and where their vectors go."""

    texts: list[str]
    lengths: list[int]
    future: asyncio.Future[NDArray[np.float32]]
    queued_at: float
    vectors: NDArray[np.float32] | None = None
    taken: int = 0  # texts already handed to batches
    pending: int = 0  # batches of this job still running


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
        on_batch: called with each batch's size (metrics).
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
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.workers = max(1, workers)
        self.batch_tokens = batch_tokens
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._free = self.workers  # inference slots not running a batch
        self._freed = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embedops-batch")
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return self._queued

    def start(self) -> None:
        """Start the dispatcher (in the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Finish the batches in flight, then stop (queued texts are embedded first)."""
        while self._jobs or self._running:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)

    async def embed(self, texts: Sequence[str], lengths: Sequence[int]) -> NDArray[np.float32]:
        """Vectors of ``texts`` (token counts ``lengths``), embedded in shared batches.

        Raises:
            Overloaded: the queue is full.
        """
        if not texts:
            return np.zeros((0, self.embedder.spec.dim), dtype=np.float32)
        if self._queued + len(texts) > self.max_queued:
            wait = 1
            raise Overloaded(
                f"the service is busy ({self._queued} texts queued, at most {self.max_queued}); "
                f"retry after {wait}s or send fewer texts at once",
                headers={"retry-after": str(wait)},
            )
        future: asyncio.Future[NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        job = _Job(list(texts), list(lengths), future, time.monotonic())
        self._jobs.append(job)
        self._queued += len(texts)
        self._wake.set()
        return await future

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._free == 0:
                self._freed.clear()
                await self._freed.wait()
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            # An idle batcher waits a moment for more texts, unless the budget is full.
            deadline = self._jobs[0].queued_at + self.max_wait
            while not self._full() and (delay := deadline - time.monotonic()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            parts = self._take(self._free)
            if not parts:
                continue
            self._free -= 1
            texts = [t for job, start, end in parts for t in job.texts[start:end]]
            tokens = sum(sum(job.lengths[start:end]) for job, start, end in parts)
            task = loop.create_task(self._run(parts, texts, tokens))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _full(self) -> bool:
        rows = 0
        longest = 1
        for job in self._jobs:
            for n in job.lengths[job.taken :]:
                rows += 1
                longest = max(longest, n)
                if rows >= self.max_rows:
                    return True
                if self.batch_tokens is not None and rows * longest >= self.batch_tokens:
                    return True
        return False

    def _take(self, free: int) -> list[tuple[_Job, int, int]]:
        """Texts for one batch: FIFO, within the token budget and ``max_rows``, and no more
        than a fair share of the queue when several slots are free."""
        share = max(1, math.ceil(self._queued / max(1, free)))
        limit = min(self.max_rows, share)
        parts: list[tuple[_Job, int, int]] = []
        rows = 0
        longest = 1
        while self._jobs and rows < limit:
            job = self._jobs[0]
            if job.future.done():  # the client went away: skip what is left of it
                self._jobs.popleft()
                self._queued -= len(job.texts) - job.taken
                continue
            start = end = job.taken
            while end < len(job.texts) and rows < limit:
                n = max(1, job.lengths[end])
                if (
                    rows
                    and self.batch_tokens is not None
                    and (rows + 1) * max(longest, n) > self.batch_tokens
                ):
                    break
                longest = max(longest, n)
                rows += 1
                end += 1
            if end == start:
                break
            parts.append((job, start, end))
            job.taken = end
            job.pending += 1
            self._queued -= end - start
            if end == len(job.texts):
                self._jobs.popleft()
            else:
                break  # the budget is full
        return parts

    async def _run(self, parts: list[tuple[_Job, int, int]], texts: list[str], tokens: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.on_batch is not None:
                self.on_batch(len(texts), tokens)
            vectors = await loop.run_in_executor(self._pool, self.embedder.embed, texts)
            error: BaseException | None = None
        except Exception as exc:  # handed to the requests of this batch
            logger.error("a batch of %d texts failed: %s", len(texts), exc)
            vectors, error = None, exc
        finally:
            self._free += 1
            self._freed.set()
        offset = 0
        for job, start, end in parts:
            job.pending -= 1
            rows = slice(offset, offset + end - start)
            offset += end - start
            if job.future.done():
                continue
            if error is not None or vectors is None:
                job.future.set_exception(error or RuntimeError("no vectors"))
                continue
            if job.vectors is None:
                job.vectors = np.empty((len(job.texts), vectors.shape[1]), dtype=np.float32)
            job.vectors[start:end] = vectors[rows]
            if job.pending == 0 and job.taken == len(job.texts):
                job.future.set_result(job.vectors)
