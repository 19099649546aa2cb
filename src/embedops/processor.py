"""``EmbeddingProcessor``: the library's front door."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.batching import embed_in_batches
from embedops.cleaning import CleanOptions, CleanStats, FieldSpec, QuarantineWriter, clean_text
from embedops.config import Settings
from embedops.errors import ConfigError
from embedops.models.base import Embedder
from embedops.models.loader import BACKENDS, backend_of, load_embedder
from embedops.models.processes import ProcessPoolEmbedder
from embedops.pipeline import Progress, Run, RunOptions, RunReport, quarantine_path
from embedops.records import records_source
from embedops.sources import SourceFormat, open_source
from embedops.store import Collection, VectorStore, check_collection_name, check_kept_names

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
        self.store_path = Path(store) if store is not None else self.settings.store
        self.model = model or self.settings.model
        # An injected embedder brings its own backend (for its batching defaults).
        known = backend_of(embedder.spec) if embedder is not None else None
        self.backend = backend or known or self.settings.backend
        self._embedder = embedder
        self._injected = embedder is not None
        self._store: VectorStore | None = None

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
        close = getattr(self._embedder, "close", None)
        if not self._injected and close is not None:
            close()  # an injected embedder belongs to whoever passed it

    @property
    def embedder(self) -> Embedder:
        """The active backend (resolved on first use; weights load on first embed)."""
        if self._embedder is None:
            processes = self.settings.processes
            cores = os.cpu_count() or 1
            threads = self.settings.threads or max(1, cores // (self.workers * processes))
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
            return self.settings.workers
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
        progress: Progress | None = None,
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
            progress: receives progress updates.

        Returns:
            The run report (``read == embedded + unchanged + quarantined``).

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
        spec = FieldSpec(
            text_field=text_field, template=template, id_field=id_field, keep=tuple(keep)
        )
        opened = open_source(
            source,
            fmt=format,
            columns=list(columns) if columns else None,
            rows=self.settings.read_rows,
        )
        spec.check(opened.fields, opened.path, all_fields=opened.format is not SourceFormat.JSONL)
        embedder = self.embedder
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report = RunReport(
            source=str(opened.path),
            collection=collection,
            model_version=embedder.spec.version,
            store=str(self.store_path),
        )
        run = Run(
            source=opened,
            spec=spec,
            clean=CleanOptions(normalize=normalize, strip_markup=strip_markup),
            embedder=embedder,
            writer=self.store.writer(collection, embedder.spec.version, embedder.spec.dim),
            quarantine=QuarantineWriter(
                quarantine_path(self.store_path, collection, stamp), opened.path
            ),
            report=report,
            options=RunOptions(
                batch_tokens=self.batch_tokens,
                workers=self.workers,
                sort_window=self.settings.sort_window,
                cache_size=self.settings.cache_size,
            ),
            progress=progress,
        )
        result = run.execute()
        logger.info(
            "run done: read=%d embedded=%d unchanged=%d quarantined=%d in %.1fs",
            result.read,
            result.embedded,
            result.unchanged,
            result.quarantined,
            result.seconds,
        )
        return result

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
        max_rows = 1024 if self.batch_tokens is not None else 8192
        return embed_in_batches(self.embedder, texts, self.batch_tokens, max_rows, self.workers)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts."""
        vectors = self.embed([a, b])
        return float(np.dot(vectors[0], vectors[1]))

    def _collection(self, collection: str) -> Collection:
        return self.store.collection(collection, self.model_version)

    def vectors(self, collection: str, ids: Sequence[str]) -> NDArray[np.float32]:
        """Stored vectors of ``ids``, in the order asked.

        Raises:
            CollectionNotFound: the collection has no table for this model version.
            ItemNotFound: an id is not stored.
        """
        return self._collection(collection).vectors([str(i) for i in ids])

    def most_similar(
        self, collection: str, *, item_id: str, k: int = 10
    ) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to a stored item, without the item itself.

        Returns:
            ``[(id, cosine), ...]``, best first.
        """
        _check_k(k)
        table = self._collection(collection)
        vector = table.vectors([str(item_id)])[0]
        return table.nearest(vector, k, exclude=str(item_id))

    def search(self, collection: str, query: str, *, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to a free-text query, as ``[(id, cosine), ...]``.

        The query is cleaned like stored texts (markup, control characters, NFKC).
        """
        _check_k(k)
        table = self._collection(collection)
        text = clean_text(query, CleanOptions(), CleanStats()) or query
        return table.nearest(self.embed([text])[0], k)

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
        """Embed in-memory records into ``collection`` with the same semantics as ``process``
        (content hash, unchanged rows skipped, bad records quarantined with a reason).

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
        check_kept_names(keep)
        spec = FieldSpec(
            text_field=None if template is not None else text_field,
            template=template,
            id_field=id_field,
            keep=tuple(keep),
        )
        source = records_source(records, rows=self.settings.read_rows)
        embedder = self.embedder
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report = RunReport(
            source=str(source.path),
            collection=collection,
            model_version=embedder.spec.version,
            store=str(self.store_path),
        )
        return Run(
            source=source,
            spec=spec,
            clean=CleanOptions(normalize=normalize, strip_markup=strip_markup),
            embedder=embedder,
            writer=self.store.writer(collection, embedder.spec.version, embedder.spec.dim),
            quarantine=QuarantineWriter(
                quarantine_path(self.store_path, collection, stamp), source.path
            ),
            report=report,
            options=RunOptions(
                batch_tokens=self.batch_tokens,
                workers=self.workers,
                sort_window=self.settings.sort_window,
                cache_size=self.settings.cache_size,
            ),
        ).execute()

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete the items ``ids`` from ``collection``; ids not stored are ignored.

        Returns:
            How many items were deleted.

        Raises:
            CollectionNotFound: the collection has no table for this model version.
            StoreError: another writer holds the collection, or the store cannot be written.
        """
        self._collection(collection)  # CollectionNotFound before anything else
        spec = self.embedder.spec
        writer = self.store.writer(collection, spec.version, spec.dim)
        with writer.lock():
            return len(writer.delete([str(i) for i in ids]))

    def search_vector(
        self,
        collection: str,
        vector: Sequence[float] | NDArray[np.float32],
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        exclude: str | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` stored items closest to ``vector`` whose metadata equal ``filters``
        (``{field: value}``), as ``[(id, cosine), ...]``, best first.

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
        return table.nearest_where(query, k, dict(filters or {}), exclude=exclude)

    def search_filtered(
        self, collection: str, query: str, *, k: int = 10, filters: Mapping[str, Any]
    ) -> list[tuple[str, float]]:
        """Like ``search``, among the items whose metadata equal ``filters``."""
        return self.search_vector(
            collection, self.embed([query_text(query)])[0], k=k, filters=filters
        )


MAX_K = 2**31 - 1  # LanceDB takes the limit as a 32-bit integer


def query_text(query: str) -> str:
    """A free-text query cleaned as stored texts are (markup, control characters, NFKC)."""
    return clean_text(query, CleanOptions(), CleanStats()) or query


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be between 1 and {MAX_K:,}, got {k}")
