"""``EmbeddingProcessor``: the library's front door."""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops import upkeep
from embedops.batching import embed_in_batches
from embedops.catalog import Published
from embedops.cleaning import (
    CHARS_PER_TOKEN,
    CleanOptions,
    CleanStats,
    FieldSpec,
    QuarantineWriter,
    clean_text,
)
from embedops.config import Settings, bounded_to_cores
from embedops.embed_cache import EmbedCache
from embedops.engines import check_engine
from embedops.errors import CollectionNotFound, ConfigError, EmbedopsError
from embedops.models.base import Embedder
from embedops.models.loader import BACKENDS, backend_of, load_embedder
from embedops.models.processes import ProcessPoolEmbedder
from embedops.monitoring.drift import thresholds as drift_thresholds
from embedops.monitoring.job import JobMetrics
from embedops.pipeline import (
    BadRowBudget,
    Progress,
    Run,
    RunOptions,
    RunReport,
    quarantine_path,
)
from embedops.records import records_source
from embedops.registry import ModelRegistry, resolve_model_arg, spec_metadata
from embedops.runlog import RunLog
from embedops.sources import Source, SourceFormat, open_source
from embedops.store import (
    Collection,
    VectorStore,
    Writer,
    check_collection_name,
    check_kept_names,
)

logger = logging.getLogger(__name__)


class EmbeddingProcessor:
    """Turns records into stored embeddings and answers similarity questions about them.

    Construction is cheap; the store opens on ``open()`` (or ``with``), and the model's weights
    load on the first text that needs embedding.

    Args:
        store: store directory (default: ``settings.store``, i.e. ``EMBEDOPS_STORE`` or
            ``./.embedops``).
        model: model alias, local directory or cached Hugging Face id.
        backend: inference backend (default ``onnx``; see ``models.loader.BACKENDS``).
        embedder: an ``Embedder`` to use instead of loading ``model`` (e.g. a fake in tests).
        settings: the remaining settings; read from ``EMBEDOPS_*`` when omitted.

    Example:
        >>> with EmbeddingProcessor(store="./embeddings") as p:  # doctest: +SKIP
        ...     report = p.process("items.jsonl", collection="items", id_field="id",
        ...                        text_field="text")
        ...     p.most_similar("items", item_id="42", k=10)
    """

    def __init__(
        self,
        *,
        store: str | Path | None = None,
        model: str | None = None,
        backend: str | None = None,
        embedder: Embedder | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        # An empty value means unset, as for the EMBEDOPS_* variables.
        self.store_path = Path(store) if store not in (None, "") else self.settings.store
        self.model = model or self.settings.model
        # An injected embedder brings its own backend (for its batching defaults).
        known = backend_of(embedder.spec) if embedder is not None else None
        self.backend = backend or known or self.settings.backend
        # Asked for explicitly (argument, flag or EMBEDOPS_BACKEND): a registered version's
        # backend must agree with it.
        asked = "backend" in self.settings.model_fields_set
        self._backend_asked = backend or (self.settings.backend if asked else None)
        self._embedder = embedder
        self._injected = embedder is not None
        self._store: VectorStore | None = None
        self.last_report: RunReport | None = None  # of the last ``process``, also a failed one
        self._cache: EmbedCache | None = None

    def __enter__(self) -> EmbeddingProcessor:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open the store (idempotent)."""
        if self._store is None:
            self._store = VectorStore(self.store_path)

    def close(self) -> None:
        """Release the store handle and stop the backend's processes (embedding workers, the
        static backend's tokenizer), if any."""
        self._store = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        close = getattr(self._embedder, "close", None)
        if not self._injected and close is not None:
            close()  # an injected embedder belongs to whoever passed it

    @property
    def embedder(self) -> Embedder:
        """The active backend (resolved on first use; weights load on first embed)."""
        if self._embedder is None:
            # A registered version or alias (``production``) names the files and backend.
            registered = resolve_model_arg(
                self.store_path, self.model, self._backend_asked, cache_dir=self.settings.cache_dir
            )
            if registered is not None:
                self.model, self.backend = registered
            processes = bounded_to_cores("processes", self.settings.processes)
            cores = os.cpu_count() or 1
            threads = (
                bounded_to_cores("threads", self.settings.threads)
                if self.settings.threads
                else max(1, cores // (self.workers * processes))
            )
            embedder = load_embedder(
                self.model, self.backend, cache_dir=self.settings.cache_dir, threads=threads
            )
            if processes > 1:
                embedder = ProcessPoolEmbedder(
                    embedder,
                    model=self.model,
                    backend=self.backend,
                    cache_dir=self.settings.cache_dir,
                    processes=processes,
                    threads=threads,
                )
            self._embedder = embedder
        return self._embedder

    @property
    def workers(self) -> int:
        """Inference batches at once: the setting, else one per core where the backend gains."""
        if self.settings.workers is not None:
            return bounded_to_cores("workers", self.settings.workers)
        info = BACKENDS.get(self.backend)
        parallel = info is not None and info.parallel_batches and not self._injected
        return (os.cpu_count() or 1) if parallel else 1

    @property
    def batch_tokens(self) -> int | None:
        """Token budget of one inference batch: the setting, else the backend's best
        (``None``: no length batching, for static models)."""
        if self.settings.batch_tokens is not None:
            return self.settings.batch_tokens
        info = BACKENDS.get(self.backend)
        return info.batch_tokens if info is not None else 2048

    @property
    def model_version(self) -> str:
        """The version string that names this model's vectors in the store."""
        return self.embedder.spec.version

    @property
    def store(self) -> VectorStore:
        self.open()
        assert self._store is not None
        return self._store

    def process(
        self,
        source: str | Path,
        *,
        collection: str,
        text_field: str | None = None,
        template: str | None = None,
        id_field: str | None = None,
        keep: Sequence[str] = (),
        columns: Sequence[str] | None = None,
        format: str | None = None,
        normalize: bool = True,
        strip_markup: bool = True,
        delete_missing: bool = False,
        feed: bool = False,
        progress: Progress | None = None,
        metrics_port: int | None = None,
        metrics_file: str | Path | None = None,
        max_quarantined: str | int | None = None,
        engine: str | None = None,
    ) -> RunReport:
        """Embed the records of a file into ``collection``.

        Unchanged rows (same id and content hash) are skipped; changed rows are embedded again;
        rows that cannot be embedded go to a quarantine JSONL under the store.

        Args:
            source: CSV, TSV, JSONL or Parquet file.
            collection: collection name.
            text_field: the field holding the text, or
            template: a format string over fields, e.g. ``"{title}. {description}"``.
            id_field: the field holding the id; default: the 1-based row number.
            keep: fields to store as metadata columns.
            columns: field names of a headerless CSV/TSV file.
            format: ``csv``, ``tsv``, ``jsonl`` or ``parquet`` (default: from the suffix).
            normalize: Unicode NFKC and whitespace normalisation.
            strip_markup: remove HTML tags and entities and stray backslashes.
            delete_missing: the input is a full snapshot: delete the stored ids it lacks.
            feed: the input is a change feed, applied in order: each record has ``op``
                (``upsert`` with the fields of a row, or ``delete`` with the id); a line
                with another op is quarantined (``invalid_op``), a delete of an id not
                stored counts as unchanged.
            progress: receives progress updates.
            metrics_port: serve the run's Prometheus metrics on this port (127.0.0.1).
            metrics_file: write them to this file (node-exporter's textfile collector).
            max_quarantined: stop with ``TooManyBadRows`` once more rows than this are
                quarantined: a number, or a percentage of the rows read (``"0.5%"``).
            engine: ``local`` (this process) or ``ray`` (Ray Data, see ``engines.ray``);
                default: ``settings.engine``.

        Returns:
            The run report (``read == inserted + updated + metadata_updated + unchanged +
            deleted + quarantined``).

        Raises:
            InputError: the file is missing, unreadable, or lacks a named field.
            ModelLoadError: the model cannot be loaded.
            MemoryPressure: out of memory even at the smallest batch.
            StoreError: the store cannot be written.
        """
        check_collection_name(collection)
        if text_field is None and template is None:
            raise ConfigError("give --text-field or --template to say where the text is")
        if isinstance(keep, str):
            raise ConfigError(f"keep takes a list of field names, e.g. keep=[{keep!r}]")
        check_kept_names(keep)
        if feed and delete_missing:
            raise ConfigError(
                "feed and delete_missing cannot go together: a feed says what to delete; "
                "a snapshot implies it"
            )
        if feed and id_field is None:
            raise ConfigError("a feed needs id_field: its lines name the ids they change")
        engine = check_engine(engine or self.settings.engine)
        if engine == "ray" and self._injected:
            raise ConfigError("the ray engine loads the model in each Ray actor; give model=")
        spec = FieldSpec(
            text_field=text_field, template=template, id_field=id_field, keep=tuple(keep)
        )
        opened = open_source(
            source,
            fmt=format,
            columns=list(columns) if columns else None,
            rows=self.settings.read_rows,
            # A line that is no record is quarantined and the run goes on, unless ids are
            # row numbers: skipping a line would renumber every row after it.
            skip_malformed=id_field is not None,
        )
        if feed:  # delete lines carry the id alone: the text fields may come later
            FieldSpec(text_field=id_field, id_field=id_field).check(opened.fields, opened.path)
        else:
            spec.check(
                opened.fields, opened.path, all_fields=opened.format is not SourceFormat.JSONL
            )
        run = self._new_run(
            opened,
            collection,
            spec,
            CleanOptions(normalize=normalize, strip_markup=strip_markup),
            delete_missing=delete_missing,
            feed=feed,
            max_quarantined=(
                BadRowBudget.parse(max_quarantined) if max_quarantined is not None else None
            ),
            progress=progress,
            metrics=(
                JobMetrics(
                    collection,
                    self.embedder.spec.version,
                    port=metrics_port,
                    textfile=Path(metrics_file) if metrics_file else None,
                    drift_thresholds=drift_thresholds(self.settings),
                    store=self.store_path,
                )
                if metrics_port is not None or metrics_file
                else None
            ),
        )
        writer, report = run.writer, run.report
        self.last_report = report
        if engine == "ray":  # the same stages on Ray Data (embedops.engines.ray)
            from embedops.engines.ray import RayRun

            run = RayRun(
                run,
                model=self.model,
                backend=self.backend,
                cache_dir=self.settings.cache_dir,
                threads=self.settings.threads,
                actors=self.settings.workers,
            )
        try:
            result = run.execute()
            self._publish(collection, writer, result)
        except EmbedopsError as exc:
            if report.stored:
                # Say what was kept (a late bad row must not look like a lost run).
                exc.args = (
                    f"{exc} ({report.stored:,} rows embedded before this were stored in "
                    f"{collection!r}; after fixing it, run the same command again: it "
                    "resumes where this run stopped)",
                )
            raise
        logger.info(
            "run done: read=%d embedded=%d unchanged=%d quarantined=%d in %.1fs",
            result.read,
            result.embedded,
            result.unchanged,
            result.quarantined,
            result.seconds,
        )
        upkeep.after_run(self.store, collection, result.model_version, result.stored, self.settings)
        return result

    def _new_run(
        self,
        source: Source,
        collection: str,
        spec: FieldSpec,
        clean: CleanOptions,
        *,
        delete_missing: bool = False,
        feed: bool = False,
        max_quarantined: BadRowBudget | None = None,
        progress: Progress | None = None,
        metrics: JobMetrics | None = None,
    ) -> Run:
        """A run of ``source`` into ``collection`` with this processor's model and settings
        (texts cut at ``max_tokens x CHARS_PER_TOKEN`` characters before cleaning)."""
        embedder = self.embedder
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        writer = self.store.writer(
            collection,
            embedder.spec.version,
            embedder.spec.dim,
            commit_rows=self.settings.commit_rows,
        )
        writer.model_spec = spec_metadata(embedder.spec, self.backend)
        return Run(
            source=source,
            spec=spec,
            clean=dataclasses.replace(clean, max_chars=embedder.spec.max_tokens * CHARS_PER_TOKEN),
            embedder=embedder,
            writer=writer,
            quarantine=QuarantineWriter(
                quarantine_path(self.store_path, collection, stamp), source.path
            ),
            report=RunReport(
                source=str(source.path),
                collection=collection,
                model_version=embedder.spec.version,
                store=str(self.store_path),
            ),
            options=RunOptions(
                batch_tokens=self.batch_tokens,
                workers=self.workers,
                sort_window=self.settings.sort_window,
                cache_size=self.settings.cache_size,
                delete_missing=delete_missing,
                feed=feed,
                embed_cache=self._embed_cache(embedder),
                max_quarantined=max_quarantined,
            ),
            progress=progress,
            run_log=RunLog(self.store_path, collection),
            metrics=metrics,
        )

    def _embed_cache(self, embedder: Embedder) -> EmbedCache | None:
        """The shared embedding cache of this model version (``None``: off)."""
        mode = self.settings.embed_cache
        if mode == "off" or (mode == "auto" and self.backend == "static"):
            return None
        if self._cache is None or self._cache.path.stem != embedder.spec.version:
            self._cache = EmbedCache(
                self.store_path / ".embed-cache",
                embedder.spec.version,
                embedder.spec.dim,
                self.settings.embed_cache_mb << 20,
            )
        return self._cache

    def _publish(self, collection: str, writer: Writer, report: RunReport) -> None:
        """Publish what a complete run built, if readers of ``collection`` read this model
        version's table (or nothing yet); a table of another model version is only recorded
        as built, for ``promote``."""
        version = writer.version
        if version is None:
            return  # nothing was ever stored
        catalog = self.store.catalog
        catalog.record_built(collection, writer.name, version, report.to_dict())
        current = catalog.published(collection)
        if current is not None and current.table != writer.name:
            logger.warning(
                "collection %r serves model version %s; this run built %s, which readers see "
                "once promoted: embedops promote %s --model %s",
                collection,
                current.model_version,
                writer.model_version,
                collection,
                writer.model_version,
            )
            return
        if current is not None and current.version == version:
            report.published = current.number  # nothing changed
            return
        entry = catalog.publish(
            collection,
            table=writer.name,
            model_version=writer.model_version,
            version=version,
            action="run",
            report=report.to_dict(),
        )
        self.store.tag(
            writer.name,
            f"published-{entry.number}-v{version}",
            version,
            keep=self.settings.keep_published,
        )
        report.published = entry.number

    def history(self, collection: str) -> list[Published]:
        """The versions of ``collection`` ever published, oldest first."""
        check_collection_name(collection)
        return self.store.catalog.history(collection)

    def rollback(self, collection: str, number: int) -> Published:
        """Publish history entry ``number`` of ``collection`` again: its table is restored to
        that version (a new version, so later runs build on it) and readers see it at once.

        Raises:
            ConfigError: no such entry (the message lists those there are).
            StoreError: another run is writing the table, or the version was cleaned up.
        """
        check_collection_name(collection)
        catalog = self.store.catalog
        entry = catalog.entry(collection, number)
        version = self.store.restore(entry.table, entry.version)
        published = catalog.publish(
            collection,
            table=entry.table,
            model_version=entry.model_version,
            version=version,
            action="rollback",
            note=f"rollback to {number}",
        )
        self.store.tag(
            entry.table,
            f"published-{published.number}-v{version}",
            version,
            keep=self.settings.keep_published,
        )
        return published

    def promote(self, collection: str) -> Published:
        """Switch ``collection`` to this processor's model version (blue/green): publish the
        last complete run into its table, if the model version passes its quality gate in the
        registry (``embedops models evaluate``).

        Raises:
            QualityGateFailed: not evaluated, or the gate fails (with the figures).
            CollectionNotFound: no complete run built this model version's table yet.
        """
        check_collection_name(collection)
        version = self.model_version
        ModelRegistry(store=self.store_path).check_gate(
            version, purpose=f"promote {collection} to {version}"
        )
        name = self.store.table_name(collection, version)
        built = self.store.catalog.built(collection, name)
        if built is None:
            raise CollectionNotFound(
                f"no complete run has built collection {collection!r} for {version} yet; "
                f"embed into it with that model first"
            )
        before = self.store.catalog.published(collection)
        published = self.store.catalog.publish(
            collection,
            table=name,
            model_version=version,
            version=int(built["version"]),
            action="promote",
            note=f"promote to {version}",
            report=built["report"],
        )
        self.store.tag(
            name,
            f"published-{published.number}-v{built['version']}",
            built["version"],
            keep=self.settings.keep_published,
        )
        if before is not None and before.table != name and not self.settings.keep_old_tables:
            self.store.drop(before.table)  # readers moved on; rollback cannot go back to it
            logger.warning("dropped %s (EMBEDOPS_KEEP_OLD_TABLES=false)", before.table)
        return published

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts with the active model (no cleaning).

        Returns:
            float32 array of shape ``(len(texts), dim)``, each row L2-normalised (with the
            static backend, a text none of whose tokens the model knows, such as emoji
            only, gets a zero row; ``process`` quarantines such rows).
        """
        if isinstance(texts, str):
            raise ConfigError("embed() takes a list of texts; wrap a single text in a list")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(f"embed() takes texts; item {i} is {type(text).__name__}")
        # The model reads max_tokens tokens: a text far longer is cut by characters first
        # (tokenising 10 MB took 8.7 s and 1.4 GB for 256 tokens kept).
        cut = self.embedder.spec.max_tokens * CHARS_PER_TOKEN
        texts = [text[:cut] for text in texts]
        max_rows = 1024 if self.batch_tokens is not None else 8192
        return embed_in_batches(self.embedder, texts, self.batch_tokens, max_rows, self.workers)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, each cleaned as stored texts are.

        Raises:
            ConfigError: a text is not a string, or is empty after cleaning.
        """
        vectors = self.embed([_query_text(a, "a"), _query_text(b, "b")])
        return float(np.dot(vectors[0], vectors[1]))

    def _collection(self, collection: str) -> Collection:
        return self.store.collection(collection, self.model_version)

    def vectors(self, collection: str, ids: Sequence[str]) -> NDArray[np.float32]:
        """Stored vectors of ``ids``, in the order asked.

        Raises:
            ConfigError: ``ids`` is not a list of ids.
            CollectionNotFound: the collection has no table for this model version.
            ItemNotFound: an id is not stored.
        """
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
            raise ConfigError(
                f"ids takes a list of ids, e.g. ids=[{ids!r}]; got {type(ids).__name__}"
            )
        return self._collection(collection).vectors([_item_id(i, "ids") for i in ids])

    def most_similar(
        self, collection: str, *, item_id: str, k: int = 10, exact: bool = False
    ) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to a stored item, without the item itself.

        A collection with a vector index (see ``embedops.upkeep``) is searched through it;
        ``exact=True`` compares with every stored vector instead.

        Returns:
            ``[(id, cosine), ...]``, best first.
        """
        _check_k(k)
        wanted = _item_id(item_id, "item_id")
        table = self._collection(collection)
        vector = table.vectors([wanted])[0]
        return table.nearest(vector, k, exclude=wanted, **self._search_options(exact))

    def search(
        self, collection: str, query: str, *, k: int = 10, exact: bool = False
    ) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to a free-text query, as ``[(id, cosine), ...]``.

        The query is cleaned like stored texts (markup, control characters, NFKC). A
        collection with a vector index is searched through it; ``exact=True`` compares with
        every stored vector instead.

        Raises:
            ConfigError: the query is not a string or is empty after cleaning, or ``k`` is
                not a whole number from 1 up.
        """
        _check_k(k)
        text = _query_text(query, "query")
        table = self._collection(collection)
        return table.nearest(self.embed([text])[0], k, **self._search_options(exact))

    def _search_options(self, exact: bool) -> dict[str, Any]:
        return {
            "exact": bool(exact),
            "nprobes": self.settings.search_nprobes,
            "refine_factor": self.settings.search_refine_factor,
        }

    def upsert(
        self,
        collection: str,
        records: Sequence[Mapping[str, Any]],
        *,
        id_field: str = "id",
        text_field: str | None = "text",
        template: str | None = None,
        keep: Sequence[str] = (),
        normalize: bool = True,
        strip_markup: bool = True,
    ) -> RunReport:
        """Embed in-memory records into ``collection`` as ``process`` embeds a file's (a sync
        by id and content hash; bad records quarantined with a reason; published at the end).

        Args:
            collection: collection name.
            records: JSON objects, e.g. ``[{"id": "1", "text": "..."}]``.
            id_field: the field holding the id.
            text_field: the field holding the text (ignored when ``template`` is given).
            template: a format string over fields, e.g. ``"{title}. {description}"``.
            keep: fields to store as metadata columns.
            normalize: Unicode NFKC and whitespace normalisation.
            strip_markup: remove HTML tags and entities and stray backslashes.

        Returns:
            The run report; its ``quarantine_path`` names the JSONL file of the quarantined
            records, one line each with the reason.

        Raises:
            ConfigError: bad collection name or kept field names.
            InvalidFormat: a record is not a JSON object.
            StoreError: another writer holds the collection, or the store cannot be written.
        """
        check_collection_name(collection)
        if isinstance(keep, str):
            raise ConfigError(f"keep takes a list of field names, e.g. keep=[{keep!r}]")
        check_kept_names(keep)
        spec = FieldSpec(
            text_field=None if template is not None else text_field,
            template=template,
            id_field=id_field,
            keep=tuple(keep),
        )
        return self._run_records(collection, records, spec, normalize, strip_markup)

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete the items ``ids`` from ``collection`` (a change feed of deletes, published
        at the end); ids not stored are ignored.

        Returns:
            How many items were deleted.

        Raises:
            CollectionNotFound: the collection has no table for this model version.
            StoreError: another writer holds the collection, or the store cannot be written.
        """
        self._collection(collection)  # CollectionNotFound before anything else
        records = [{"op": "delete", "id": _item_id(i, "ids")} for i in ids]
        spec = FieldSpec(text_field="text", id_field="id")
        return self._run_records(collection, records, spec, True, True, feed=True).deleted

    def _run_records(
        self,
        collection: str,
        records: Sequence[Mapping[str, Any]],
        spec: FieldSpec,
        normalize: bool,
        strip_markup: bool,
        *,
        feed: bool = False,
    ) -> RunReport:
        """A run over in-memory records, built as ``process`` builds one, then published."""
        source = records_source(records, rows=self.settings.read_rows)
        run = self._new_run(
            source,
            collection,
            spec,
            CleanOptions(normalize=normalize, strip_markup=strip_markup),
            feed=feed,
        )
        writer = run.writer
        result = run.execute()
        self._publish(collection, writer, result)
        return result

    def search_vector(
        self,
        collection: str,
        vector: Sequence[float] | NDArray[np.float32],
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        exclude: str | None = None,
        exact: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to ``vector`` whose metadata equal ``filters``
        (``{field: value}``), as ``[(id, cosine), ...]``, best first. Searched through the
        collection's vector index when it has one, as ``search`` is (``exact=True``: every
        row is compared).

        Raises:
            ConfigError: bad ``k``, a vector of the wrong size, or a filter on a field that is
                not stored.
            CollectionNotFound: the collection has no table for this model version.
        """
        _check_k(k)
        query = np.asarray(vector, dtype=np.float32)
        dim = self.embedder.spec.dim
        if query.shape != (dim,) or not np.isfinite(query).all():
            raise ConfigError(
                f"the query vector must be {dim} finite numbers (the model's dimension), "
                f"got shape {query.shape}"
            )
        table = self._collection(collection)
        return table.nearest(
            query, k, exclude, filters=dict(filters or {}), **self._search_options(exact)
        )

    def search_filtered(
        self, collection: str, query: str, *, k: int = 10, filters: Mapping[str, Any]
    ) -> list[tuple[str, float]]:
        """Like ``search``, among the items whose metadata equal ``filters``."""
        return self.search_vector(
            collection, self.embed([query_text(query)])[0], k=k, filters=filters
        )


MAX_K = 2**31 - 1  # LanceDB takes the limit as a 32-bit integer


def query_text(query: str) -> str:
    """A free-text query cleaned as stored texts are (markup, control characters, NFKC).

    Raises:
        ConfigError: not a string, or nothing is left of it after cleaning.
    """
    return _query_text(query, "query")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be a whole number between 1 and {MAX_K:,}, got {k!r}")


def _item_id(value: object, name: str) -> str:
    """An id as stored: a string or a whole number, trimmed as ids are on read."""
    if isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
        raise ConfigError(f"{name} takes item ids (strings), got {type(value).__name__}")
    item_id = str(value).strip()
    if not item_id:
        raise ConfigError(f"{name} holds an empty id; give the id of a stored item")
    return item_id


def _query_text(text: object, name: str) -> str:
    """``text`` cleaned as stored texts are; a ``ConfigError`` naming ``name`` if it is not a
    string or nothing is left of it."""
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be a text (str), got {type(text).__name__}")
    cleaned = clean_text(text, CleanOptions(), CleanStats())
    if not cleaned.strip():
        why = "empty" if not text.strip() else "empty after cleaning (markup or whitespace only)"
        raise ConfigError(f"{name} {text!r} is {why}; give a text with words in it")
    return cleaned
