"""The run loop: read, clean, skip unchanged, batch by tokens, embed, store, report.

Rows flow in windows of ``sort_window`` rows. Each window is sorted by token length, cut into
token-budget batches, embedded, and handed to the store's writer, which commits new rows
``store.COMMIT_ROWS`` at a time. Memory is bounded by a few windows (the one being stored and up
to ``prefetch`` read ahead in each of the two stages before it) and the rows gathered for the
next commit, not by the input.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from embedops.batching import plan_batches
from embedops.cleaning import (
    Cleaner,
    CleanOptions,
    CleanRow,
    FieldSpec,
    Known,
    QuarantineRecord,
    QuarantineWriter,
    Reason,
)
from embedops.cleaning import meta_hash as meta_hash  # re-exported: pipeline.meta_hash
from embedops.embed_cache import EmbedCache
from embedops.embedding import ZERO_VECTOR, embed_with_retry
from embedops.errors import ConfigError, ModelError, TooManyBadRows
from embedops.models.base import Embedder

if TYPE_CHECKING:
    from embedops.monitoring.job import JobMetrics
    from embedops.runlog import RunLog
from embedops.signals import deferred_signals
from embedops.sources import Source, SourceBatch
from embedops.state import IdSet, Scratch, StoredState, hash64, hex64
from embedops.store import Writer

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Progress(Protocol):
    """Receives progress while a run goes on (the CLI draws a rich progress bar)."""

    def start(self, total: int, unit: str) -> None: ...

    def update(self, position: int, rows: int) -> None: ...

    def stop(self) -> None: ...


@dataclass
class RunReport:
    """What a run did. Always ``read == inserted + updated + metadata_updated + unchanged +
    deleted + quarantined``, and ``embedded == inserted + updated``.

    Attributes:
        read: records read from the source.
        inserted: rows of ids not stored before, embedded.
        updated: rows whose text changed, embedded again.
        metadata_updated: rows whose kept metadata alone changed, rewritten without embedding.
        deleted: ids deleted. With ``delete_missing``, each stored id that the input (a full
            snapshot) lacks is read from the table and counted in ``read`` too, so that the
            sum above holds; ids of quarantined rows are not deleted.
        embedded: rows written with a fresh vector (``cache_hits`` of them reused the vector of
            an identical text embedded earlier in the run).
        unchanged: rows already stored with the same text and metadata, not embedded again.
        quarantined: rows written to the quarantine file; ``reasons`` counts them by reason.
        embed_cache_hits: distinct texts whose vector came from the shared embedding cache on
            disk (``embed_cache.EmbedCache``; other runs and collections) instead of the
            model; ``embed_cache_hit_rate``: hits per lookup (``None``: cache off).
        truncated: embedded rows whose text exceeded the model's token limit.
        tokens: tokens sent to the model (each distinct text's count, capped at the model's
            limit; texts from a cache cost none). The service charges writes by it.
        cleaned: rows changed by each cleaning step.
        stored: rows this run committed to the table (after a failure or Ctrl-C: what was
            kept; a re-run skips them).
        status: ``running``, ``finished``, ``interrupted`` (Ctrl-C, SIGTERM) or ``failed``.
        published: the collection's published version after the run (``embedops history``);
            ``None`` when the run did not publish (another model version serves readers).
    """

    source: str
    collection: str
    model_version: str
    store: str
    quarantine_path: str | None = None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    embedded: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    embed_cache_hits: int = 0
    embed_cache_hit_rate: float | None = None
    truncated: int = 0
    tokens: int = 0
    cleaned: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    stored: int = 0
    status: str = "running"
    published: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """Tuning of one run."""

    batch_tokens: int | None = 2048  # None: no length batching (static models)
    sort_window: int = 4096
    cache_size: int = 65536
    max_batch_rows: int = 1024
    prefetch: int = 2
    workers: int = 1
    delete_missing: bool = False
    feed: bool = False  # the source is a change feed (see ``Run._apply_feed``)
    embed_cache: EmbedCache | None = None
    max_quarantined: BadRowBudget | None = None


@dataclass(frozen=True)
class BadRowBudget:
    """How many quarantined rows a run accepts: ``rows`` at most, or ``percent`` of the rows
    read (judged once 1,000 rows are read, so that one bad first row does not stop a run)."""

    rows: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, value: str | int) -> BadRowBudget:
        """``"100"`` or ``"0.5%"``; a ``ConfigError`` for anything else."""
        text = str(value).strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError(text)
                return cls(percent=percent)
            rows = int(text)
            if rows < 0:
                raise ValueError(text)
            return cls(rows=rows)
        except ValueError:
            raise ConfigError(
                f"max_quarantined takes a number of rows or a percentage, e.g. 100 or 0.5%; "
                f"got {value!r}"
            ) from None

    def check(self, quarantined: int, read: int, path: str) -> None:
        over = (self.rows is not None and quarantined > self.rows) or (
            self.percent is not None and read >= 1000 and 100 * quarantined > self.percent * read
        )
        if over:
            limit = f"{self.rows:,} rows" if self.rows is not None else f"{self.percent:g}%"
            raise TooManyBadRows(
                f"{quarantined:,} of {read:,} rows read so far were quarantined, more than "
                f"--max-quarantined allows ({limit}); see {path} for the rows and reasons, fix "
                "the input or raise the limit, then run again (rows stored so far are kept)"
            )


class VectorCache:
    """Vectors of texts embedded in this run, keyed by content hash (bounded, LRU).

    The cache lives for one run and one model version, so the hash alone is the key. Vectors
    are kept in rows of one matrix of ``size`` rows (allocated on the first ``put``, reused
    as entries go): a window's new vectors are copied in with one assignment, not one array
    each, and nothing kept pins a window's matrix.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._matrix: NDArray[np.float32] | None = None
        self._used = 0  # rows of the matrix handed out so far

    def get(self, key: str) -> NDArray[np.float32] | None:
        """A copy of the vector of ``key`` (its row is reused once dropped), or ``None``."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        self._slots.move_to_end(key)
        assert self._matrix is not None
        vector: NDArray[np.float32] = self._matrix[slot].copy()
        return vector

    def put(self, keys: Sequence[str], vectors: NDArray[np.float32]) -> None:
        """Add one vector per key (the rows of ``vectors``), dropping the least recently used.
        The keys are new (each was a miss of ``get``)."""
        if not len(keys) or self.size <= 0:
            return
        if len(keys) > self.size:  # only the last ``size`` would stay
            keys, vectors = keys[-self.size :], vectors[-self.size :]
        if self._matrix is None:
            self._matrix = np.empty((self.size, vectors.shape[1]), dtype=np.float32)
        slots = self._slots
        rows = np.empty(len(keys), dtype=np.intp)
        for j, key in enumerate(keys):
            slot = slots.pop(key, None)
            if slot is None:
                if self._used < self.size:
                    slot = self._used
                    self._used += 1
                else:
                    _, slot = slots.popitem(last=False)
            slots[key] = slot
            rows[j] = slot
        self._matrix[rows] = vectors


@dataclass(frozen=True)
class Window:
    """Rows to embed together: the rows, their distinct texts by hash, and token counts."""

    rows: list[CleanRow]
    texts: dict[str, str]
    lengths: dict[str, int]
    stored: frozenset[str] = frozenset()  # ids of ``rows`` already in the table
    metadata: tuple[CleanRow, ...] = ()  # rows whose kept metadata alone changed


@dataclass
class Pending:
    """Rows read and cleaned that the store must hear of: to embed (``rows``; ``stored``
    names those already in the table) and whose metadata alone changed (``metadata``)."""

    rows: list[CleanRow] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)
    metadata: list[CleanRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.metadata)


_DONE = object()


class Prefetch(Generic[T]):
    """Run ``items`` in a thread of its own, at most ``depth`` items ahead of the consumer.

    Errors raised by the producer are raised in the consumer. ``stop()`` (or leaving the
    ``with`` block) tells the producer to stop and wakes a consumer waiting for an item, from
    any thread; ``join()`` waits for the thread. Stages chain: a ``Prefetch`` may iterate
    another, and stopping both before joining either ends both threads at once.
    """

    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._items = items
        self._slots: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                item = self._slots.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    raise StopIteration from None
                continue
            if item is _DONE:
                self._stop.set()
                raise StopIteration
            if isinstance(item, _Failure):
                self._stop.set()
                raise item.error
            return item  # type: ignore[return-value]

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        """Wait for the thread (it stops at its next item once stopped). A reader still
        inside pyarrow when the process exits could be torn down mid-call, so this waits
        long, and says so if even that was not enough."""
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            logger.warning("the %s thread did not stop within 60 s", self._thread.name)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failure(exc))
        finally:
            self._put(_DONE)
            close = getattr(self._items, "close", None)
            if close is not None:
                close()  # this thread ran the generator; it ends it


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Run:
    """One pass of a source into a collection. Use ``execute()`` once."""

    def __init__(
        self,
        *,
        source: Source,
        spec: FieldSpec,
        clean: CleanOptions,
        embedder: Embedder,
        writer: Writer,
        quarantine: QuarantineWriter,
        report: RunReport,
        options: RunOptions,
        progress: Progress | None = None,
        run_log: RunLog | None = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.source = source
        self.run_log = run_log
        self.metrics = metrics
        self.scratch = Scratch(writer.store.path / ".scratch")
        self.seen = IdSet(self.scratch.folder("seen"))
        self.mentioned = IdSet(self.scratch.folder("mentioned"))  # ids of quarantined rows
        self.cleaner = Cleaner(spec, clean, self.seen, feed=options.feed)
        self.embedder = embedder
        self.writer = writer
        self.quarantine = quarantine
        self.report = report
        self.options = options
        self.progress = progress
        self.cache = VectorCache(options.cache_size)
        self._tokenizer_json = embedder.spec.path / "tokenizer.json"  # drift's [UNK] rate
        self._state: StoredState | None = None
        self._state_future: Future[StoredState] | None = None
        self._cache_lookups = 0  # texts looked up in the shared embedding cache
        self._position = 0
        self._lock = threading.Lock()
        self._pool: Executor

    def execute(self) -> RunReport:
        started = time.perf_counter()
        report = self.report
        error: str | None = None
        if self.run_log is not None:
            self.run_log.update(report, 0, self.source.total, self.source.unit, force=True)
        try:
            self._execute()
        except KeyboardInterrupt:
            report.status = "interrupted"
            raise
        except BaseException as exc:
            report.status = "failed"
            error = f"{type(exc).__name__}: {exc}"
            raise
        else:
            report.status = "finished"
        finally:
            self.scratch.close()
            self._summarise()
            if self.run_log is not None:
                self.run_log.finish(
                    report, self._position, self.source.total, self.source.unit, error
                )
            if self.metrics is not None:
                self.metrics.update(
                    report, self._position, self.source.total, force=True, done=True
                )
            report.seconds = round(time.perf_counter() - started, 3)
            report.rows_per_second = (
                round(report.read / report.seconds, 1) if report.seconds else 0.0
            )
        return report

    def _execute(self) -> None:
        with (
            self.writer.lock(),
            ThreadPoolExecutor(
                max_workers=self.options.workers, thread_name_prefix="embedops-infer"
            ) as self._pool,
        ):
            if self.progress:
                self.progress.start(self.source.total, self.source.unit)
            if self.options.feed:
                try:
                    self._apply_feed()
                finally:
                    with deferred_signals("saving the rows embedded so far", redeliver=False):
                        self.writer.flush()
                    self.quarantine.close()
                    if self.progress:
                        self.progress.stop()
                return
            # The table's state is read in a thread of its own while the reader starts on the
            # input: rows need it only once their raw hashes are made.
            stater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedops-state")
            self._state_future = stater.submit(self.writer.state, self.scratch.folder("stored"))
            stater.shutdown(wait=False)
            try:
                # Reading and cleaning run in one thread, token counting in another, each a
                # window ahead of the next stage: the backends release the GIL while they
                # compute, and the static backend counts in a process of its own, so the
                # stages overlap instead of waiting for each other.
                depth = self.options.prefetch
                rows = Prefetch(self._row_windows(), depth, "embedops-reader")
                windows = Prefetch((self._window(w) for w in rows), depth, "embedops-counter")
                try:
                    for window in windows:
                        self._flush(window)
                        self._tick()
                    self._stored()  # an input without rows never waited: raise its errors
                    self.writer.flush()
                    if self.options.delete_missing:
                        self._delete_missing()  # under the writer's lock, after every write
                except BaseException:
                    # Keep the rows embedded before the failure (a re-run skips them); an error
                    # of this commit must not hide the first one. A second Ctrl-C or SIGTERM
                    # waits for this commit, then is dropped: the run is stopping already.
                    with deferred_signals("saving the rows embedded so far", redeliver=False):
                        try:
                            self.writer.flush()
                        except Exception:
                            logger.exception("could not store the rows embedded before the failure")
                    raise
                finally:
                    for stage in (windows, rows):
                        stage.stop()  # both first: the counter may be waiting on the reader
                    for stage in (windows, rows):
                        stage.join()
                    wait([self._state_future])  # before the scratch folder goes
            finally:
                self.quarantine.close()
                if self.progress:
                    self.progress.stop()

    def _summarise(self) -> None:
        """Fill the report's totals (also after a failure: the CLI prints what was kept)."""
        report = self.report
        stats = self.cleaner.stats
        report.cleaned = {
            "markup": stats.markup,
            "control_chars": stats.control_chars,
            "normalized": stats.normalized,
        }
        report.reasons = dict(sorted(self.quarantine.reasons.items()))
        report.quarantine_path = str(self.quarantine.path) if self.quarantine.count else None
        report.stored = self.writer.committed
        if self.options.embed_cache is not None and self._cache_lookups:
            report.embed_cache_hit_rate = round(report.embed_cache_hits / self._cache_lookups, 4)

    def _tick(self, in_flight: int = 0) -> None:
        """Report progress: rows finished, and the source position scaled to match."""
        if threading.current_thread() is threading.main_thread():
            if self.run_log is not None:
                self.run_log.update(
                    self.report, self._position, self.source.total, self.source.unit
                )
            if self.metrics is not None:
                self.metrics.update(self.report, self._position, self.source.total)
        if not self.progress:
            return
        r = self.report
        done = r.embedded + r.metadata_updated + r.unchanged + r.quarantined + in_flight
        position = int(self._position * done / r.read) if r.read else 0
        self.progress.update(position, done)

    def _quarantine(self, records: list[QuarantineRecord]) -> None:
        # Called from the reader thread (bad input) and the main thread (embed failures).
        with self._lock:
            self.quarantine.write(records)
            self.report.quarantined += len(records)
            budget = self.options.max_quarantined
            if budget is not None and records:
                budget.check(self.report.quarantined, self.report.read, str(self.quarantine.path))
            if self.options.delete_missing:
                ids = [r.id for r in records if r.id is not None]
                self.mentioned.add(hash64(ids), np.zeros(len(ids), dtype=np.uint64))

    def _row_windows(self) -> Iterator[Pending]:
        """Read, clean, sort rows by what the table holds for their ids: unchanged rows are
        counted; rows to embed and metadata-only changes are yielded, ``sort_window`` at a
        time."""
        report = self.report
        pending = Pending()
        for batch in self.source.batches():
            report.read += batch.num_rows
            good, kept = self._clean(batch)
            report.unchanged += kept
            if good:
                state = self._stored()
                assert state is not None
                stored, content, meta = state.lookup(hash64([r.id for r in good]))
                mine = hex64([r.content_hash for r in good])
                metas = [r.meta for r in good]
                for i, row in enumerate(good):
                    if not stored[i]:
                        pending.rows.append(row)
                    elif content[i] != mine[i]:
                        pending.rows.append(row)
                        pending.stored.add(row.id)
                    elif int(meta[i]) != (int(metas[i], 16) if metas[i] else 0):
                        pending.metadata.append(row)
                    else:
                        report.unchanged += 1
            self._position = batch.position
            if len(pending) >= self.options.sort_window:
                yield pending
                pending = Pending()
            self._tick()
        if pending:
            yield pending

    def _stored(self) -> StoredState | None:
        """The table's state at the start of the run (waiting while it is read); ``None`` for
        a change feed, which looks rows up as it goes."""
        if self._state is None and self._state_future is not None:
            self._state = self._state_future.result()
        return self._state

    def _apply_feed(self) -> None:
        """Apply a change feed in order. Each batch is cut into segments in which no id
        comes twice; a segment is looked up in the table as it is after the segments before
        it (they are committed first), so an id upserted, deleted and upserted again in one
        feed ends as the last line says, and each line is counted by what it did."""
        report = self.report
        for batch in self.source.batches():
            report.read += batch.num_rows
            good, _ = self._clean(batch)
            self._position = batch.position
            for segment in _segments(good):
                self.writer.flush()
                stored = self.writer.lookup([r.id for r in segment])
                deletes = [r.id for r in segment if r.delete and r.id in stored]
                report.unchanged += sum(1 for r in segment if r.delete and r.id not in stored)
                pending = Pending()
                for row in segment:
                    if row.delete:
                        continue
                    old = stored.get(row.id)
                    if old is None:
                        pending.rows.append(row)
                    elif old[0] != row.content_hash:
                        pending.rows.append(row)
                        pending.stored.add(row.id)
                    elif (old[1] or "") != row.meta:
                        pending.metadata.append(row)
                    else:
                        report.unchanged += 1
                if pending:
                    self._flush(self._window(pending))
                self.writer.delete(deletes)
                report.deleted += len(deletes)
                self._tick()

    def _clean(self, batch: SourceBatch) -> tuple[list[CleanRow], int]:
        """Clean a batch and quarantine its bad rows, and the lines before it that were no
        record at all (``malformed_row``, with their line and raw text). Rows the table
        holds as they were read (the same raw hash, see ``Cleaner.raw_hashes``) are not
        cleaned again; returns the rows to look up and how many such rows were kept."""
        raw = self.cleaner.raw_hashes(batch)
        known = None
        state = self._stored()
        if raw is not None and state is not None and state.has_raw:
            known = Known(*state.match(raw))
        good, bad, kept = self.cleaner.clean_known(batch, raw, known)
        if batch.malformed:
            self.report.read += len(batch.malformed)
            bad = [
                QuarantineRecord(
                    m.line or 0,
                    None,
                    Reason.MALFORMED_ROW,
                    f"line {m.line if m.line is not None else '?'}: {m.detail}",
                    {"line": m.line, "raw": m.text},
                )
                for m in batch.malformed
            ] + bad
        self._quarantine(bad)
        return good, kept

    def _delete_missing(self) -> None:
        """Delete the stored ids that the input did not hold (the input is a full snapshot).
        The table's ids are streamed and checked against the run's seen ids on disk."""
        missing: list[str] = []
        report = self.report
        for batch in self.writer.scan(["id"]):
            ids = batch.column(0).to_pylist()
            hashes = hash64(ids)
            seen, _ = self.seen.first_rows(hashes)
            mentioned, _ = self.mentioned.first_rows(hashes)
            missing.extend(i for i, s in zip(ids, seen | mentioned, strict=True) if not s)
            if len(missing) >= 100_000:
                self.writer.delete(missing)
                report.deleted += len(missing)
                report.read += len(missing)
                missing = []
        self.writer.delete(missing)
        report.deleted += len(missing)
        report.read += len(missing)

    def _window(self, pending: Pending) -> Window:
        """The window's distinct texts by hash, and their token counts."""
        rows = pending.rows
        # Rows with one hash have one text; the dict keeps the order of first occurrence.
        texts = {row.content_hash: row.text for row in rows}
        lengths = dict(zip(texts, self.embedder.count_tokens(list(texts.values())), strict=True))
        over = self.embedder.spec.max_tokens + 1
        for row in rows:
            if row.cut:  # cut by characters before cleaning: longer than the model reads
                lengths[row.content_hash] = max(lengths[row.content_hash], over)
        return Window(rows, texts, lengths, frozenset(pending.stored), tuple(pending.metadata))

    def _flush(self, window: Window) -> None:
        if window.metadata:
            names = self.cleaner.spec.keep
            changed = window.metadata
            self.writer.update_metadata(
                [r.id for r in changed],
                {name: [r.metadata[name] for r in changed] for name in names},
                [r.meta for r in changed],
                [r.raw for r in changed],
            )
            self.report.metadata_updated += len(changed)
        rows = window.rows
        cached: dict[str, NDArray[np.float32]] = {}
        todo: dict[str, str] = {}
        for key, text in window.texts.items():
            vector = self.cache.get(key)
            if vector is None:
                todo[key] = text
            else:
                cached[key] = vector
        shared = self.options.embed_cache
        if shared is not None and todo:
            self._cache_lookups += len(todo)
            found = shared.get(list(todo))
            for key, vector in found.items():
                cached[key] = vector
                del todo[key]
            self.report.embed_cache_hits += len(found)
        fresh, failed = self._embed_unique(todo, window.lengths)
        if shared is not None and todo:
            good = [i for i, key in enumerate(todo) if key not in failed]
            shared.put([list(todo)[i] for i in good], fresh[good])
        # Every distinct text's vector in one matrix, and each text's row in it.
        keys = [*todo, *cached]
        matrix = np.concatenate([fresh, np.stack(list(cached.values()))]) if cached else fresh
        position = dict(zip(keys, range(len(keys)), strict=True))
        keep = rows
        if failed:
            keep = [row for row in rows if row.content_hash not in failed]
            self._quarantine(
                [
                    QuarantineRecord(
                        row.row,
                        row.id,
                        Reason.EMBED_FAILED,
                        failed[row.content_hash],
                        {"id": row.id, "text": row.text},
                    )
                    for row in rows
                    if row.content_hash in failed
                ]
            )
        self.report.cache_hits += len(keep) - (len(todo) - len(failed))
        if not keep:
            return
        ids = [r.id for r in keep]
        hashes = [r.content_hash for r in keep]
        names = self.cleaner.spec.keep
        replace = {i for i in ids if i in window.stored}
        self.writer.write(
            ids=ids,
            vectors=matrix[[position[h] for h in hashes]],
            texts=[r.text for r in keep],
            hashes=hashes,
            metadata={name: [r.metadata[name] for r in keep] for name in names},
            replace=replace,
            meta_hashes=[r.meta for r in keep],
            raw_hashes=[r.raw for r in keep],
        )
        self.report.updated += len(replace)
        self.report.inserted += len(keep) - len(replace)
        self.report.embedded += len(keep)

    def _embed_unique(
        self, todo: dict[str, str], token_counts: dict[str, int]
    ) -> tuple[NDArray[np.float32], dict[str, str]]:
        """Embed each distinct text once: one vector per text of ``todo``, in its order (zeros
        where it failed), and ``hash -> error`` for the texts that failed."""
        dim = self.embedder.spec.dim
        if not todo:
            return np.zeros((0, dim), dtype=np.float32), {}
        keys = list(todo)
        texts = list(todo.values())
        limit = self.embedder.spec.max_tokens
        lengths = [token_counts[k] for k in keys]
        self.report.truncated += sum(n > limit for n in lengths)
        self.report.tokens += sum(min(n, limit) for n in lengths)
        batches = plan_batches(
            len(keys),
            [min(n, limit) for n in lengths],
            self.options.batch_tokens,
            self.options.max_batch_rows,
            self.options.workers,
        )
        self.report.batches += len(batches)
        vectors = np.empty((len(keys), dim), dtype=np.float32)
        failed: dict[str, str] = {}
        done = 0
        chunks = [[texts[i] for i in b] for b in batches]
        # One worker: embed here (a hand-off to a pool thread only adds GIL switches).
        run = map if self.options.workers == 1 else self._pool.map
        results = run(self._embed, chunks)
        for batch, chunk, (matrix, errors) in zip(batches, chunks, results, strict=True):
            vectors[np.asarray(batch)] = matrix
            if self.metrics is not None:
                counts = [min(lengths[i], limit) for i in batch]
                self.metrics.observe_texts(chunk, counts, matrix, self._tokenizer_json)
            for j, error in errors.items():
                failed[keys[batch[j]]] = error
            done += len(batch)
            self._tick(in_flight=done)
        real = [e for e in failed.values() if e != ZERO_VECTOR]  # zero vectors: the texts
        if len(real) == len(keys) > 1:
            raise ModelError(f"the model failed on every text of a batch ({real[0]})")
        good = (
            [i for i, key in enumerate(keys) if key not in failed] if failed else range(len(keys))
        )
        self.cache.put([keys[i] for i in good], vectors[good])
        return vectors, failed

    def _embed(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], dict[int, str]]:
        """Embed ``texts`` (see ``embedding.embed_with_retry``)."""
        started = time.perf_counter()
        result = embed_with_retry(
            self.embedder,
            texts,
            budget_hint=f"lower --batch-tokens (now {self.options.batch_tokens or 'none'})",
        )
        if self.metrics is not None:
            self.metrics.observe_batch(time.perf_counter() - started)
        return result


def _segments(rows: list[CleanRow]) -> Iterator[list[CleanRow]]:
    """``rows`` cut, in order, into runs in which no id comes twice."""
    segment: list[CleanRow] = []
    ids: set[str] = set()
    for row in rows:
        if row.id in ids:
            yield segment
            segment, ids = [], set()
        segment.append(row)
        ids.add(row.id)
    if segment:
        yield segment


def quarantine_path(store: Path, collection: str, stamp: str) -> Path:
    """Where a run's quarantined rows go: ``<store>/quarantine/<collection>-<stamp>.jsonl``."""
    return store / "quarantine" / f"{collection}-{stamp}.jsonl"
