"""The Ray Data engine: the stages of ``pipeline.Run`` with embedding on a Ray actor pool.

What runs where:

- **driver** (the process that runs ``embedops embed --engine ray``): ``RayRun`` is a
  ``pipeline.Run``, and runs ``Run``'s own stages there: reading and cleaning with the same
  ``sources.open_source`` and ``cleaning.Cleaner`` (so the quarantine is the same: duplicate
  ids across the whole file, line numbers, the CSV quote checks, which need one sequential
  pass over the file that a split read would lose), the lookup of what the table holds
  (unchanged and metadata-only rows), the run's caches, and writing through ``store.Writer``
  (one writer per table, its lock, its commits), the run log, metrics and report.
- **Ray Data**: each window of rows to embed (``sort_window`` rows, its distinct texts only)
  is put into the object store and fed through a bounded queue into a dataset whose
  ``map_batches`` runs on an actor pool: one ``EmbedActor`` per model replica, built from the
  same model and backend settings, counting tokens, cutting token-budget batches and embedding
  them through ``embedops.embed_with_retry``. The dataset streams: the driver consumes
  results while later windows are read, and a full queue (Ray Data's backpressure stops
  pulling from it when the actors are busy) pauses the reader.

A window goes through Ray Data as one row (its texts as a list), and the dataset's
``target_max_block_size`` is set so that every row is a block of its own: Ray Data otherwise
gathers what a generator yields into blocks of up to 128 MB, and nothing would reach the
actors before the whole input was read.

Ray is started here (``ray.init(num_cpus=...)``: quiet logs, no dashboard) and shut down at
the end, unless Ray is already initialised in this process or ``RAY_ADDRESS`` names a cluster
to join (then the cluster's workers need embedops, the model files and the same versions).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from embedops.batching import plan_batches
from embedops.embedding import ZERO_VECTOR, embed_with_retry
from embedops.errors import ConfigError, EmbedopsError, ModelError
from embedops.pipeline import Pending, Run, Window
from embedops.signals import deferred_signals

try:
    import ray
    import ray.data
    from ray.util.queue import Full, Queue
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError(
        "the ray engine needs Ray Data: pip install 'embedops[ray]' (or run with --engine local)"
    ) from exc

logger = logging.getLogger(__name__)
# Ray Data counts the inputs of the actor pool when it starts: one (the feed), however many
# windows follow, so it warns that the pool is larger than the work. It is not.
warnings.filterwarnings(
    "ignore", message="The minimum number of concurrent actors", category=UserWarning
)

# One row per window: the distinct texts to embed, keyed by content hash.
WINDOW_SCHEMA = pa.schema(
    [
        ("window", pa.int64()),
        ("keys", pa.list_(pa.string())),
        ("texts", pa.list_(pa.string())),
        ("cut", pa.list_(pa.bool_())),
    ]
)
# One row per window back: float32 vectors as bytes, the error of each text ("" if none),
# token counts, inference batches, and the model version the actor loaded.
RESULT_SCHEMA = pa.schema(
    [
        ("window", pa.int64()),
        ("keys", pa.list_(pa.string())),
        ("vectors", pa.large_binary()),
        ("errors", pa.list_(pa.string())),
        ("lengths", pa.list_(pa.int64())),
        ("batches", pa.int64()),
        ("version", pa.string()),
    ]
)
# Loggers of Ray that report every dataset's start and plan at INFO.
_RAY_LOGGERS = ("ray", "ray.util", "ray.train")
# Signals whose Python handlers ray.init replaces.
_KEPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Variables the workers of a cluster need as the driver has them.
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")


class EmbedActor:
    """One model replica in a Ray actor: embeds windows of distinct texts.

    Args:
        model: model alias, directory or cached Hugging Face id (as the driver has it).
        backend: backend name (``models.loader.BACKENDS``).
        cache_dir: where built artefacts are cached on this worker's node.
        threads: inference threads of this replica (the CPUs the actor holds).
        batch_tokens: token budget of one inference batch (``None``: plain chunks).
        max_batch_rows: rows per inference batch at most.
    """

    def __init__(
        self,
        model: str,
        backend: str,
        cache_dir: str,
        threads: int,
        batch_tokens: int | None,
        max_batch_rows: int,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the CLI: never download weights
        from embedops.models.loader import load_embedder

        self.embedder = load_embedder(model, backend, cache_dir=Path(cache_dir), threads=threads)
        if hasattr(self.embedder, "tokenizer_process"):
            # The static backend would tokenise in a child process: a CPU the actor does not
            # hold. Ray runs more actors instead.
            self.embedder.tokenizer_process = False
        self.batch_tokens = batch_tokens
        self.max_batch_rows = max_batch_rows

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Embed every window (row) of ``batch``; one result row per window."""
        spec = self.embedder.spec
        columns: dict[str, list[Any]] = {name: [] for name in RESULT_SCHEMA.names}
        for window, keys, texts, cut in zip(
            batch.column("window").to_pylist(),
            batch.column("keys").to_pylist(),
            batch.column("texts").to_pylist(),
            batch.column("cut").to_pylist(),
            strict=True,
        ):
            vectors, errors, lengths, batches = self.embed_window(texts, cut)
            columns["window"].append(window)
            columns["keys"].append(keys)
            columns["vectors"].append(vectors.tobytes())
            columns["errors"].append(errors)
            columns["lengths"].append(lengths)
            columns["batches"].append(batches)
            columns["version"].append(spec.version)
        return pa.table(columns, schema=RESULT_SCHEMA)

    def embed_window(
        self, texts: list[str], cut: list[bool]
    ) -> tuple[NDArray[np.float32], list[str], list[int], int]:
        """Vectors (zeros where a text failed), errors, token counts and batch count of one
        window's texts, batched as the local engine batches them."""
        embedder = self.embedder
        dim, limit = embedder.spec.dim, embedder.spec.max_tokens
        vectors = np.zeros((len(texts), dim), dtype=np.float32)
        if not texts:
            return vectors, [], [], 0
        over = limit + 1
        lengths = [
            max(n, over) if was_cut else n
            for n, was_cut in zip(embedder.count_tokens(texts), cut, strict=True)
        ]
        batches = plan_batches(
            len(texts),
            [min(n, limit) for n in lengths],
            self.batch_tokens,
            self.max_batch_rows,
            1,
        )
        errors = [""] * len(texts)
        hint = f"lower --batch-tokens (now {self.batch_tokens or 'none'})"
        for indices in batches:
            matrix, failed = embed_with_retry(
                embedder, [texts[i] for i in indices], budget_hint=hint
            )
            vectors[np.asarray(indices)] = matrix
            for j, error in failed.items():
                errors[indices[j]] = error
        return vectors, errors, lengths, len(batches)


def _pull(batch: pa.Table, queue: Any) -> Iterator[pa.Table]:
    """The dataset's source (a Ray task): the driver's windows, one at a time, until ``None``."""
    while True:
        item = queue.get()
        if item is None:
            return
        yield ray.get(item[0])


class _Feed:
    """Puts the driver's windows into the object store and their references into a bounded
    Ray queue, from a thread of its own; ``None`` ends the stream. A reader error ends the
    stream too and is kept in ``error`` for the driver to raise once the rows before it are
    stored (as the local engine does)."""

    def __init__(self, windows: Iterator[pa.Table], depth: int) -> None:
        self.queue = Queue(maxsize=max(1, depth), actor_options={"num_cpus": 0})
        self.error: BaseException | None = None
        self._windows = windows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedops-ray-feed", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for table in self._windows:
                # In a tuple: a reference passed bare to the queue actor would be resolved.
                if not self._put((ray.put(table),)):
                    return
        except BaseException as exc:  # raised by the driver after the stream ends
            self.error = exc
        finally:
            self._put(None)
            close = getattr(self._windows, "close", None)
            if close is not None:
                close()

    def stop(self) -> None:
        """Stop the thread (at its next window) and end the queue's actor."""
        self._stop.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            logger.warning("the Ray feed thread did not stop within 60 s")
        try:
            self.queue.shutdown(force=True)
        except Exception:  # Ray already shut down: nothing left to end
            logger.debug("the feed queue was already gone", exc_info=True)


class RayRun(Run):
    """A ``pipeline.Run`` whose embedding runs on Ray Data. Use ``execute()`` once.

    It takes over the run the processor built (source, cleaner, writer, scratch, run log,
    metrics, quarantine, report, options) and keeps every stage of ``Run`` but one: reading
    and cleaning (``_row_windows``: the stored-state lookup, unchanged and metadata-only rows,
    the bad-row budget), writing (``_flush``: the run's vector cache, the shared embedding
    cache, metadata updates, quarantine of failed texts, inserts and replaces) and the report
    are ``Run``'s own; ``_embed_unique`` answers from the window's Ray result instead of the
    driver's model. A change feed (``feed``) is applied by ``Run`` itself, in the driver: its
    segments are looked up one after another, with no windows to stream.

    Args:
        run: the run as the processor built it (not to be used afterwards).
        model: model alias, directory or cached id, loaded again in each actor.
        backend: backend name.
        cache_dir: artefact cache of each worker.
        threads: inference threads (and CPUs) per actor; default 1.
        actors: actors in the pool; default: the cluster's CPUs / ``threads``.
        cpus: CPUs of a local Ray started here; default: this machine's cores.
    """

    def __init__(
        self,
        run: Run,
        *,
        model: str,
        backend: str,
        cache_dir: Path,
        threads: int | None = None,
        actors: int | None = None,
        cpus: int | None = None,
    ) -> None:
        vars(self).update(vars(run))  # Run's state as the processor built it
        self.model = model
        self.backend = backend
        self.cache_dir = cache_dir
        self.threads = threads or 1
        self.actors = actors
        self.cpus = cpus
        self._sent: dict[int, Pending] = {}
        self._sent_lock = threading.Lock()
        self._result: _WindowResult | None = None

    def _execute(self) -> None:
        if self.options.feed:
            logger.info("a change feed is applied in order by the local engine")
            super()._execute()
            return
        with self.writer.lock():
            if self.progress:
                self.progress.start(self.source.total, self.source.unit)
            self._state = self.writer.state(self.scratch.folder("stored"))
            try:
                # Ray starts only once a row needs embedding: a re-run that finds every row
                # unchanged reads the file and stops, as the local engine does.
                windows = self._windows()
                first = next(windows, None)
                if first is not None:
                    with ray_session(self.cpus):
                        self._stream(_prepend(first, windows))
                self.writer.flush()
                if self.options.delete_missing:
                    self._delete_missing()  # under the writer's lock, after every write
            finally:
                self.quarantine.close()
                if self.progress:
                    self.progress.stop()

    def _stream(self, windows: Iterator[pa.Table]) -> None:
        writer = self.writer
        feed = _Feed(windows, self.options.prefetch)
        results: Iterator[pa.Table] | None = None
        try:
            results = iter(
                self._dataset(feed.queue).iter_batches(
                    batch_size=None, batch_format="pyarrow", prefetch_batches=1
                )
            )
            for batch in results:
                for row in batch.to_pylist():
                    self._store(row)
                self._tick()
            if feed.error is not None:
                raise feed.error
            writer.flush()
        except BaseException as exc:
            # Keep the rows embedded before the failure (a re-run skips them), as Run does.
            with deferred_signals("saving the rows embedded so far", redeliver=False):
                try:
                    writer.flush()
                except Exception:
                    logger.exception("could not store the rows embedded before the failure")
            cause = _embedops_cause(exc)
            if cause is not None and cause is not exc:
                raise cause from None
            raise
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            feed.stop()

    def _dataset(self, queue: Any) -> Any:
        """The streaming dataset: the feed, then embedding on the actor pool."""
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        actors = self.actors or max(1, int(resources.get("CPU", 1)) // self.threads)
        dataset = ray.data.from_items([{"feed": 0}]).map_batches(
            cast(Any, _pull),  # a generator of tables: Ray Data takes it, its hints do not
            fn_kwargs={"queue": queue},
            batch_size=None,
            batch_format="pyarrow",
            num_cpus=0,  # it only passes windows on; the CPUs go to the actors
        )
        dataset = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "model": self.model,
                "backend": self.backend,
                "cache_dir": str(self.cache_dir),
                "threads": self.threads,
                "batch_tokens": self.options.batch_tokens,
                "max_batch_rows": self.options.max_batch_rows,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=self.threads,
        )
        context = dataset.context
        context.target_max_block_size = 1  # every window a block of its own (module doc)
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True  # commits in input order
        logger.info("Ray Data: %d embedding actors, %d thread(s) each", actors, self.threads)
        return dataset

    def _windows(self) -> Iterator[pa.Table]:
        """Each window of ``Run._row_windows`` as one row: its distinct texts. All of them
        go to the actors; ``_flush`` then takes what the run's caches hold from there, as in
        the local engine (a text found there was embedded for nothing, never stored twice)."""
        for number, pending in enumerate(self._row_windows()):
            texts: dict[str, str] = {}
            cut: dict[str, bool] = {}
            for row in pending.rows:
                texts[row.content_hash] = row.text
                cut[row.content_hash] = cut.get(row.content_hash, False) or row.cut
            with self._sent_lock:
                self._sent[number] = pending
            yield pa.table(
                {
                    "window": [number],
                    "keys": [list(texts)],
                    "texts": [list(texts.values())],
                    "cut": [list(cut.values())],
                },
                schema=WINDOW_SCHEMA,
            )

    def _store(self, result: dict[str, Any]) -> None:
        """Store one window with ``Run._flush``, its vectors taken from the Ray result."""
        spec = self.embedder.spec
        if result["version"] != spec.version:
            raise ModelError(
                f"a Ray worker loaded model version {result['version']}, this process "
                f"{spec.version}; give every node the same model files and versions"
            )
        with self._sent_lock:
            pending = self._sent.pop(result["window"])
        keys: list[str] = result["keys"]
        fresh = np.frombuffer(result["vectors"], dtype=np.float32).reshape(len(keys), spec.dim)
        self._result = _WindowResult(
            vectors=dict(zip(keys, fresh, strict=True)),
            errors={k: e for k, e in zip(keys, result["errors"], strict=True) if e},
            batches=result["batches"],
        )
        texts = {row.content_hash: row.text for row in pending.rows}
        lengths = dict(zip(keys, result["lengths"], strict=True))
        window = Window(
            pending.rows, texts, lengths, frozenset(pending.stored), tuple(pending.metadata)
        )
        try:
            self._flush(window)
        finally:
            self._result = None
        logger.debug("window %d: %d rows", result["window"], len(pending))

    def _embed_unique(
        self, todo: dict[str, str], token_counts: dict[str, int]
    ) -> tuple[NDArray[np.float32], dict[str, str]]:
        """The vectors of ``todo`` from the window's Ray result (as ``Run._embed_unique``
        returns them: zeros where a text failed, ``hash -> error``); the driver's model when
        there is no Ray result (a change feed)."""
        result = self._result
        if result is None:
            return super()._embed_unique(todo, token_counts)
        spec = self.embedder.spec
        if not todo:
            return np.zeros((0, spec.dim), dtype=np.float32), {}
        keys = list(todo)
        vectors = np.stack([result.vectors[k] for k in keys]).astype(np.float32)
        failed = {k: result.errors[k] for k in keys if k in result.errors}
        self.report.truncated += sum(token_counts[k] > spec.max_tokens for k in keys)
        self.report.batches += result.batches
        result.batches = 0  # counted once per window
        real = [e for e in failed.values() if e != ZERO_VECTOR]  # zero vectors: the texts
        if len(real) == len(keys) > 1:
            raise ModelError(f"the model failed on every text of a batch ({real[0]})")
        good = [i for i, key in enumerate(keys) if key not in failed]
        self.cache.put([keys[i] for i in good], vectors[good])
        return vectors, failed


@dataclass
class _WindowResult:
    """What the actors returned for one window: vectors and errors by content hash."""

    vectors: dict[str, NDArray[np.float32]]
    errors: dict[str, str]
    batches: int


def _prepend(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``first``, then ``rest``; closing this closes ``rest`` (the reader's generator)."""
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


@contextmanager
def ray_session(cpus: int | None = None) -> Iterator[None]:
    """Ray for one run: the one already initialised in this process, else the cluster at
    ``RAY_ADDRESS``, else a local Ray with ``cpus`` CPUs (default: all cores), shut down at
    the end. Quiet: Ray's loggers at WARNING (Ray Data's at ERROR), workers' output not copied
    here, no dashboard.

    Raises:
        ConfigError: Ray cannot be started or the cluster cannot be reached.
    """
    if ray.is_initialized():
        _quiet()
        yield
        return
    address = os.environ.get("RAY_ADDRESS")
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in _KEPT_SIGNALS} if main else {}
    try:
        with warnings.catch_warnings():
            # Ray starts its processes with fork and exec; LanceDB (loaded by the writer) warns
            # about forks, which concern a child that runs Python, not one that execs at once.
            warnings.filterwarnings(
                "ignore", message="lancedb fork support", category=RuntimeWarning
            )
            if address:
                env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
                ray.init(
                    address=address,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            else:
                ray.init(
                    num_cpus=cpus or os.cpu_count() or 1,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        raise ConfigError(f"cannot start or reach {where} ({exc})") from exc
    finally:
        # Ray's core installs its own SIGTERM handler (a stack dump, then exit 15): put back
        # the caller's, so that SIGTERM stops a run as Ctrl-C does, saving what is embedded.
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    _quiet()
    try:
        yield
    finally:
        ray.shutdown()


def _quiet() -> None:
    for name in _RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray Data warns at every run that progress bars are off (we turn them off).
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _embedops_cause(exc: BaseException) -> EmbedopsError | None:
    """The embedops error behind a Ray error (an actor's ``MemoryPressure``, ``ModelError``,
    ``ModelLoadError``), so that the CLI shows its message and exit code."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        nested = getattr(current, "cause", None)  # a RayTaskError's original error
        if isinstance(nested, BaseException):
            current = nested
            continue
        if isinstance(current, EmbedopsError):
            return current
        current = current.__cause__
    return None
