"""The vector store: LanceDB tables under one directory, one per collection and model version.

Each row holds ``id``, ``vector``, ``text``, ``content_hash``, ``meta_hash``, ``raw_hash`` (the
input cells the row was made from; see ``cleaning.Cleaner.raw_hashes``), ``model_version``,
``updated_at`` and the kept metadata columns. Writers take an exclusive lock per table (LanceDB
allows one writer per table: concurrent ``merge_insert`` can duplicate keys).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from embedops.catalog import Catalog
from embedops.errors import (
    CollectionNotFound,
    ConfigError,
    ItemNotFound,
    StoreError,
    one_line,
)
from embedops.signals import deferred_signals
from embedops.state import StoredState

logger = logging.getLogger(__name__)

_COLLECTION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]|-(?!-|$))*$")
SYSTEM_COLUMNS = (
    "id",
    "vector",
    "text",
    "content_hash",
    "meta_hash",
    "raw_hash",
    "model_version",
    "updated_at",
)
# System columns that a write without them sets to null in a table that has them (their
# value says something about the row's content: a stale one would be wrong).
_NULLABLE_COLUMNS = ("meta_hash", "raw_hash")
# Rows a scan of a table reads at a time (bounded memory however large the table).
SCAN_ROWS = 65_536
# New rows gathered before one commit (see ``Writer``).
COMMIT_ROWS = 16_384
# Indexed search: IVF partitions read, and candidates re-ranked exactly (k x this); the
# defaults of ``Settings.search_nprobes`` and ``search_refine_factor`` (see benchmarks/README).
SEARCH_NPROBES = 50
SEARCH_REFINE_FACTOR = 10
# What pyarrow raises for rows that do not fit a table (ValueError: other column names).
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError)
# What LanceDB raises when it cannot write (``lance error: LanceError(IO): No space left on
# device``, a read-only or missing directory): a RuntimeError or an OSError.
_WRITE_ERRORS = (OSError, RuntimeError)


def check_collection_name(name: str) -> str:
    """Return ``name`` if it can name a collection, else raise ``ConfigError``."""
    if not _COLLECTION.match(name) or len(name) > 100:
        raise ConfigError(
            f"collection name {name!r} is not allowed; use letters, digits, '_', '.', and "
            "single '-' inside (up to 100 characters, starting with a letter or digit)"
        )
    return name


def check_kept_names(names: Sequence[str]) -> None:
    """Raise ``ConfigError`` unless every name in ``names`` can be a metadata column: not a
    system column, not one of LanceDB's own (``_distance``, ``_rowid``: they start with '_'),
    and without '.', which LanceDB reads as a nested field."""
    reserved = sorted(set(names) & set(SYSTEM_COLUMNS))
    if reserved:
        raise ConfigError(f"--keep cannot name the reserved column(s) {reserved}; rename them")
    bad = [n for n in names if n.startswith("_") or "." in n or not n]
    if bad:
        raise ConfigError(
            f"--keep cannot store the field(s) {bad}: a stored field name must not be empty, "
            "start with '_' (LanceDB's own columns) or contain '.'; rename them in the input"
        )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class VectorStore:
    """A directory of LanceDB tables.

    Args:
        path: the store directory (created if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"cannot open store {self.path} (not a folder); check the path")
        self._connection: Any = None

    def _connect(self) -> Any:
        """The LanceDB connection, made on first use. Connecting creates the folder, so reads
        of a store that does not exist do not connect (see ``_table_names``)."""
        if self._connection is None:
            import lancedb

            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self._connection = lancedb.connect(str(self.path))
            except OSError as exc:
                raise StoreError(f"cannot open store {self.path} ({exc}); check the path") from exc
        return self._connection

    @staticmethod
    def table_name(collection: str, model_version: str) -> str:
        return f"{check_collection_name(collection)}--{model_version}"

    def _table_names(self) -> list[str]:
        if self._connection is None and not self.path.is_dir():
            return []  # no store yet: no tables, and no folder made by looking
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._connect().list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def versions(self, collection: str) -> list[str]:
        """Model versions that have a table for ``collection``."""
        prefix = f"{collection}--"
        return sorted(n[len(prefix) :] for n in self._table_names() if n.startswith(prefix))

    def collection(self, collection: str, model_version: str) -> Collection:
        """Open an existing collection for ``model_version``.

        Raises:
            CollectionNotFound: no table for that collection and model version.
        """
        name = self.table_name(collection, model_version)
        table = self._open(name)
        if table is None:
            others = [v for v in self.versions(collection) if v != model_version]
            writer = self.writing(name)
            if writer is not None:
                raise CollectionNotFound(
                    f"the first rows of collection {collection!r} are still being written "
                    f"({writer}); try again when that run has stored them"
                )
            hint = (
                f"it exists for model versions {', '.join(others)}; use the same model"
                if others
                else f"embed a file into it first: embedops embed FILE --collection {collection}"
            )
            raise CollectionNotFound(
                f"collection {collection!r} has no vectors for model version {model_version} "
                f"in store {self.path}; {hint}"
            )
        pinned = self._pinned(collection, name)
        if pinned is not None:
            table.checkout(pinned)
        return Collection(self, collection, model_version, table)

    @property
    def catalog(self) -> Catalog:
        """The published versions of this store's collections."""
        return Catalog(self.path)

    def _pinned(self, collection: str, name: str) -> int | None:
        """The version of table ``name`` that readers see: the published one, else the last
        complete run into it (a table being built for another model version); ``None``
        (the latest) for a table from before published versions."""
        published = self.catalog.published(collection)
        if published is not None and published.table == name:
            return published.version
        built = self.catalog.built(collection, name)
        return None if built is None else int(built["version"])

    def restore(self, name: str, version: int) -> int:
        """Make ``version`` of table ``name`` its latest again (a new version with that
        content, so later runs build on it); returns the new version. Takes the writer lock.

        Raises:
            StoreError: the table or the version is gone.
        """
        with self.lock(name):
            table = self._open(name)
            if table is None:
                raise StoreError(f"table {name} is not in store {self.path}; it was dropped")
            try:
                table.restore(version)
            except (ValueError, RuntimeError, OSError) as exc:
                raise StoreError(
                    f"cannot restore version {version} of {name} ({one_line(exc)}); it may "
                    "have been cleaned up"
                ) from exc
            return int(table.version)

    def drop(self, name: str) -> None:
        """Drop table ``name`` (taking its writer lock: never under a running writer)."""
        with self.lock(name):
            self._connect().drop_table(name, ignore_missing=True)

    def tag(self, name: str, tag: str, version: int, *, keep: int | None = None) -> None:
        """Tag ``version`` of table ``name`` (tagged versions survive cleanup). With
        ``keep``, only the newest ``keep`` tags that share the tag's prefix (before its
        first '-') stay: LanceDB's cleanup stops at the oldest tagged version, so tags
        of every version ever published would keep every version."""
        table = self._open(name)
        if table is None:
            return
        try:
            table.tags.create(tag, version)
            if keep is not None:
                prefix = tag.split("-", 1)[0] + "-"
                ours = sorted(
                    (info["version"], label)
                    for label, info in table.tags.list().items()
                    if label.startswith(prefix)
                )
                for _, label in ours[: max(0, len(ours) - keep)]:
                    table.tags.delete(label)
        except (ValueError, RuntimeError, OSError) as exc:  # e.g. the tag exists
            logger.warning("cannot tag version %d of %s as %s: %s", version, name, tag, exc)

    def writer(
        self, collection: str, model_version: str, dim: int, *, commit_rows: int | None = None
    ) -> Writer:
        """A writer for ``collection`` (the table is created on its first write)."""
        name = self.table_name(collection, model_version)
        self._connect()  # creates the store folder, where the writer's lock file goes
        return Writer(self, name, model_version, dim, self._open(name), commit_rows=commit_rows)

    def _open(self, name: str) -> Any:
        """The table ``name``, or ``None`` if there is none. A folder left by a first commit
        that failed (a full disk) holds no version: it counts as no table, and the next first
        commit creates the table over it."""
        if name not in self._table_names():
            return None
        try:
            return self._connect().open_table(name)
        except ValueError as exc:  # LanceDB: "Table '...' was not found"
            if "not found" not in str(exc):
                raise
            logger.warning("table %s in %s has no committed version; ignoring it", name, self.path)
            return None

    def _create(self, name: str, data: pa.Table) -> Any:
        return self._connect().create_table(name, data)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold table ``name``'s exclusive writer lock; fail at once if another writer has
        it, naming that writer (pid, host, since when)."""
        path = self.lock_path(name)
        try:
            fh = path.open("a+")  # not "w": that would erase the holder's name
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file {path} ({exc}); check that the store folder "
                f"{self.path} is writable"
            ) from exc
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(
                    f"{_describe_holder(fh)} is writing {name} in {self.path}; "
                    "wait for it to finish, then run again"
                ) from exc
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(_holder_info()) + "\n")
                fh.flush()
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    def lock_path(self, name: str) -> Path:
        """The writer lock file of table ``name``."""
        return self.path / f".{name}.lock"

    def writing(self, name: str) -> str | None:
        """Who holds the writer lock of table ``name`` (see ``Writer.lock``), or ``None``."""
        path = self.lock_path(name)
        try:
            fh = path.open("r")
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _describe_holder(fh)
            fcntl.flock(fh, fcntl.LOCK_UN)
        return None

    def lance_table(self, name: str) -> Any:
        """Table ``name`` at its latest version (for store upkeep), or a ``StoreError``."""
        table = self._open(name)
        if table is None:
            raise StoreError(f"table {name} is not in store {self.path}; it was dropped")
        return table


class Collection:
    """Read access to one collection table."""

    def __init__(self, store: VectorStore, name: str, model_version: str, table: Any) -> None:
        self.store = store
        self.name = name
        self.model_version = model_version
        self._table = table

    def count(self) -> int:
        return int(self._table.count_rows())

    def vectors(self, ids: Sequence[str]) -> NDArray[np.float32]:
        """Stored vectors of ``ids``, in the order asked.

        Raises:
            ItemNotFound: an id is not in the collection.
        """
        wanted = list(dict.fromkeys(ids))
        found: dict[str, NDArray[np.float32]] = {}
        dim = self._table.schema.field("vector").type.list_size
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            where = f"id IN ({', '.join(_quote(i) for i in chunk)})"
            data = self._table.search().where(where).select(["id", "vector"]).limit(None).to_arrow()
            flat = data.column("vector").combine_chunks().flatten().to_numpy()
            matrix = flat.reshape(-1, dim).astype(np.float32, copy=False)
            for item_id, vector in zip(data.column("id").to_pylist(), matrix, strict=True):
                found[item_id] = vector
        missing = [i for i in wanted if i not in found]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise ItemNotFound(f"{len(missing)} id(s) not in collection {self.name!r}: {shown}")
        if not ids:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([found[i] for i in ids]).astype(np.float32)

    def nearest(
        self,
        vector: NDArray[np.float32],
        k: int,
        exclude: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        exact: bool = False,
        nprobes: int = SEARCH_NPROBES,
        refine_factor: int = SEARCH_REFINE_FACTOR,
    ) -> list[tuple[str, float]]:
        """The ``k`` rows closest to ``vector`` by cosine, best first, as ``(id, score)``.

        A table with a vector index (see ``embedops.upkeep``) is searched through it: the
        ``nprobes`` nearest IVF partitions, then ``k x refine_factor`` candidates re-ranked by
        their exact vectors; rows added since the index was last updated are scanned. ``exact``
        scans every row instead (a table without an index is always scanned). ``filters``
        (``{column: value}``, see ``nearest_where``) keeps only the rows that match, before
        the search.

        Raises:
            ConfigError: a filter names a column that is not in the table, or its value is
                not a string, number, boolean or ``None``.
        """
        clauses = [_equals(self._table.schema, n, v) for n, v in (filters or {}).items()]
        if exclude is not None:
            clauses.append(f"id != {_quote(exclude)}")
        query = (
            self._table.search(np.asarray(vector, dtype=np.float32))
            .distance_type("cosine")
            .select(["id", "_distance"])
            .limit(k + (1 if exclude is not None else 0))
        )
        if exact:
            query = query.bypass_vector_index()
        else:
            query = query.nprobes(nprobes).refine_factor(refine_factor)
        if clauses:
            query = query.where(" AND ".join(clauses), prefilter=True)
        data = query.to_arrow()
        pairs = zip(
            data.column("id").to_pylist(), data.column("_distance").to_pylist(), strict=True
        )
        return [(i, 1.0 - float(d)) for i, d in pairs if i != exclude][:k]

    def hashes(self) -> dict[str, str]:
        """``id -> content_hash`` of every row."""
        data = self._table.search().select(["id", "content_hash"]).limit(None).to_arrow()
        return dict(
            zip(data.column("id").to_pylist(), data.column("content_hash").to_pylist(), strict=True)
        )

    def nearest_where(
        self,
        vector: NDArray[np.float32],
        k: int,
        filters: Mapping[str, Any],
        exclude: str | None = None,
        **options: Any,
    ) -> list[tuple[str, float]]:
        """Like ``nearest`` (``options``: ``exact``, ``nprobes``, ``refine_factor``), among the
        rows whose columns equal ``filters`` (``{column: value}``; ``None`` matches a missing
        value). Only stored metadata columns and ``id`` can be filtered on.

        Raises:
            ConfigError: a column is not in the table, or a value is not a string, number,
                boolean or ``None``.
        """
        return self.nearest(vector, k, exclude, filters=filters, **options)

    @property
    def lance_table(self) -> Any:
        """The LanceDB table as readers see it (checked out at the published version)."""
        return self._table


class Writer:
    """Writes rows into one collection table, holding the table's writer lock.

    New rows are gathered and committed ``commit_rows`` at a time (each LanceDB commit writes a
    fragment and a new manifest, about 10 ms whatever its size, and many small fragments slow
    readers down); ``flush()`` commits what is gathered. Rows that replace stored ones are
    committed at once, after what was gathered. A new table is created by the first commit,
    with the column types of all the rows gathered for it (a kept field that is empty in the
    first rows takes its type from later ones; one empty in all of them is stored as text).
    """

    def __init__(
        self,
        store: VectorStore,
        name: str,
        model_version: str,
        dim: int,
        table: Any,
        *,
        commit_rows: int | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.model_version = model_version
        self.dim = dim
        self.commit_rows = commit_rows or COMMIT_ROWS
        self.model_spec: dict[str, str] = {}  # written into a new table's schema metadata
        self.committed = 0  # rows this writer has committed
        self._table = table
        self._pending: list[pa.Table] = []

    @property
    def _pending_rows(self) -> int:
        return sum(t.num_rows for t in self._pending)

    def hashes(self) -> dict[str, str]:
        """``id -> content_hash`` of the rows already stored."""
        if self._table is None:
            return {}
        return Collection(self.store, self.name, self.model_version, self._table).hashes()

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The stored rows' ``columns``, ``SCAN_ROWS`` at a time (a column the table lacks
        comes back as nulls)."""
        if self._table is None:
            return
        have = set(self._table.schema.names)
        present = [c for c in columns if c in have]
        reader = self._table.search().select(present).limit(None).to_batches(SCAN_ROWS)
        for batch in reader:
            arrays = [
                batch.column(c) if c in have else pa.nulls(batch.num_rows, pa.string())
                for c in columns
            ]
            yield pa.RecordBatch.from_arrays(arrays, names=list(columns))

    def lookup(self, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """``id -> (content_hash, meta_hash)`` of the stored rows among ``ids`` (as the
        table is now: commit what is gathered first)."""
        if self._table is None or not ids:
            return {}
        has_meta = "meta_hash" in self._table.schema.names
        columns = ["id", "content_hash", *(["meta_hash"] if has_meta else [])]
        found: dict[str, tuple[str, str | None]] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            where = f"id IN ({', '.join(_quote(i) for i in chunk)})"
            data = self._table.search().where(where).select(columns).limit(None).to_arrow()
            metas = data.column("meta_hash").to_pylist() if has_meta else [None] * data.num_rows
            for item_id, content, meta in zip(
                data.column("id").to_pylist(),
                data.column("content_hash").to_pylist(),
                metas,
                strict=True,
            ):
                found[item_id] = (content, meta)
        return found

    def state(self, folder: Path) -> StoredState:
        """What the table holds, as ``state.StoredState`` in ``folder`` (streamed: memory
        stays flat however large the table)."""
        state = StoredState(folder)
        for batch in self.scan(["id", "content_hash", "meta_hash", "raw_hash"]):
            state.add_batch(batch)
        state.compact()
        return state

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the table's exclusive writer lock (see ``VectorStore.lock``)."""
        with self.store.lock(self.name):
            yield

    @property
    def version(self) -> int | None:
        """The table's latest version (``None``: no table yet)."""
        return None if self._table is None else int(self._table.version)

    def write(
        self,
        ids: list[str],
        vectors: NDArray[np.float32],
        texts: list[str],
        hashes: list[str],
        metadata: dict[str, list[Any]],
        *,
        replace: set[str],
        meta_hashes: list[str] | None = None,
        raw_hashes: Sequence[int] | None = None,
    ) -> None:
        """Add new rows (gathered; see the class) and replace the rows whose id is in
        ``replace`` (committed at once). ``meta_hashes``: each row's hash of its kept
        metadata (see ``pipeline.meta_hash``); ``raw_hashes``: each row's raw hash with its
        cleaning flags (``cleaning.CleanRow.raw``; 0 or none: null)."""
        if not ids:
            return
        now = datetime.now(UTC)
        try:
            columns: dict[str, Any] = {
                "id": pa.array(ids, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), pa.float32()), self.dim
                ),
                "text": pa.array(texts, pa.string()),
                "content_hash": pa.array(hashes, pa.string()),
                "meta_hash": pa.array(meta_hashes or [""] * len(ids), pa.string()),
                "raw_hash": raw_column(raw_hashes, len(ids)),
                "model_version": pa.repeat(pa.scalar(self.model_version, pa.string()), len(ids)),
                "updated_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(ids)),
            }
            for name, values in metadata.items():
                columns[name] = _kept_column(name, values, ids)
            data = pa.table(columns)
            if self._table is not None:
                data = self._fit(data, ids)
            mask = np.array([i in replace for i in ids], dtype=bool) if replace else None
            if mask is None or not mask.any():
                self._gather(data)
                return
            self.flush()  # gathered rows first: commits keep the order of writes
            if self._table is None:  # nothing stored yet, so nothing to replace
                self._gather(data)
                return
            replaced = data.filter(pa.array(mask))
            with deferred_signals(f"saving {replaced.num_rows:,} rows to {self.name}"):
                (
                    self._table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(replaced)
                )
                self.committed += replaced.num_rows
            if not mask.all():
                self._gather(data.filter(pa.array(~mask)))
        except _ARROW_ERRORS as exc:
            raise self._misfit(exc) from exc
        except _WRITE_ERRORS as exc:
            raise self._unwritable(exc) from exc

    def flush(self) -> None:
        """Commit the gathered rows, in one commit (nothing to do when none are); the first
        commit creates the table. Ctrl-C and SIGTERM wait while it runs (see ``signals``)."""
        if not self._pending:
            return
        rows = self._pending_rows
        try:
            with deferred_signals(f"saving {rows:,} rows to {self.name}"):
                if self._table is None:
                    data = pa.concat_tables(self._pending, promote_options="permissive")
                    data = _as_new_table(data)
                    if self.model_spec:  # the table says by itself what made its vectors
                        data = data.replace_schema_metadata(
                            {**(data.schema.metadata or {}), **_spec_keys(self.model_spec)}
                        )
                    self._table = self.store._create(self.name, data)
                else:
                    self._table.add(pa.concat_tables(self._pending))
                self._pending = []
                self.committed += rows
            logger.info(
                "committed %d rows to %s",
                rows,
                self.name,
                extra={
                    "table": self.name,
                    "rows": rows,
                    "version": self.version,
                    "committed": self.committed,
                },
            )
        except _ARROW_ERRORS as exc:
            self._pending = []  # rows that do not fit would fail every later commit too
            raise self._misfit(exc) from exc
        except _WRITE_ERRORS as exc:
            self._pending = []  # a full disk: the rows are lost to this run, not stored
            raise self._unwritable(exc) from exc

    def update_metadata(
        self,
        ids: list[str],
        metadata: dict[str, list[Any]],
        meta_hashes: list[str],
        raw_hashes: Sequence[int] | None = None,
    ) -> None:
        """Rewrite the kept metadata of stored rows whose text did not change (no embedding:
        the vector and text stay). Kept fields that this input does not keep are set to
        null. ``raw_hashes`` as in ``write``. Committed at once, after what was gathered."""
        if not ids or self._table is None:
            return
        now = datetime.now(UTC)
        try:
            columns: dict[str, Any] = {
                "id": pa.array(ids, pa.string()),
                "meta_hash": pa.array(meta_hashes, pa.string()),
                "raw_hash": raw_column(raw_hashes, len(ids)),
                "updated_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(ids)),
            }
            for name, values in metadata.items():
                columns[name] = _kept_column(name, values, ids)
            self.flush()
            data = self._fit(pa.table(columns), ids, partial=True)
            with deferred_signals(f"saving the metadata of {len(ids):,} rows to {self.name}"):
                self._table.merge_insert("id").when_matched_update_all().execute(data)
                self.committed += len(ids)
        except _ARROW_ERRORS as exc:
            raise self._misfit(exc) from exc
        except _WRITE_ERRORS as exc:
            raise self._unwritable(exc) from exc

    def delete(self, ids: Sequence[str]) -> None:
        """Delete the rows of ``ids`` (after committing what was gathered)."""
        if not ids or self._table is None:
            return
        self.flush()
        try:
            with deferred_signals(f"deleting {len(ids):,} rows from {self.name}"):
                for start in range(0, len(ids), 1000):
                    chunk = ids[start : start + 1000]
                    self._table.delete(f"id IN ({', '.join(_quote(i) for i in chunk)})")
        except _WRITE_ERRORS as exc:
            raise self._unwritable(exc) from exc

    def _fit(self, data: pa.Table, ids: list[str], *, partial: bool = False) -> pa.Table:
        """``data`` in the table's column types. A kept field the table lacks is added to it
        (a field kept from a later run on); a metadata column of the table that ``data``
        lacks is null in ``data`` (in all columns of the table unless ``partial``)."""
        assert self._table is not None
        schema = self._table.schema
        new = [
            pa.field(name, pa.string() if pa.types.is_null(t) else t)
            for name, t in zip(data.column_names, data.schema.types, strict=True)
            if name not in schema.names
        ]
        if new:
            self.flush()
            with deferred_signals(f"adding columns to {self.name}"):
                self._table.add_columns(pa.schema(new))
            schema = self._table.schema
        for field in schema:
            if field.name in data.column_names:
                continue
            if field.name in SYSTEM_COLUMNS and (partial or field.name not in _NULLABLE_COLUMNS):
                continue
            data = data.append_column(field.name, pa.nulls(data.num_rows, field.type))
        if partial:
            wanted = pa.schema([schema.field(name) for name in data.column_names])
            return _cast(data, wanted, ids)
        return _cast(data.select(schema.names), schema, ids)

    def _gather(self, data: pa.Table) -> None:
        self._pending.append(data)
        if self._pending_rows >= self.commit_rows:
            self.flush()

    def _misfit(self, exc: Exception) -> StoreError:
        if self._table is None:
            columns = "none yet"
        else:
            columns = ", ".join(f"{f.name}: {f.type}" for f in self._table.schema)
        message = one_line(exc)
        return StoreError(
            f"rows do not fit table {self.name} (its columns: {columns}); "
            f"keep the same fields with the same types, or use a new collection ({message})"
        )

    def _unwritable(self, exc: Exception) -> StoreError:
        message = one_line(exc)
        if isinstance(exc, OSError) or "LanceError(IO)" in message:
            advice = "free disk space or fix the folder's permissions, then run again"
        else:
            advice = "check the input's field names and types"
        return StoreError(
            f"cannot write table {self.name} in store {self.store.path} ({message}); {advice} "
            "(rows committed before are kept, and a re-run skips them)"
        )


SPEC_PREFIX = "embedops.model."


def _spec_keys(spec: dict[str, str]) -> dict[str, str]:
    return {SPEC_PREFIX + key: value for key, value in spec.items()}


def model_spec_of(table: Any) -> dict[str, str]:
    """The model spec a table was created with (see ``registry.spec_metadata``); empty for
    a table from before it was recorded."""
    metadata = table.schema.metadata or {}
    return {
        key.decode()[len(SPEC_PREFIX) :]: value.decode()
        for key, value in metadata.items()
        if key.decode().startswith(SPEC_PREFIX)
    }


def _holder_info() -> dict[str, Any]:
    """Who this writer is, written into the lock file it holds."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "thread": threading.get_ident(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe_holder(fh: IO[str]) -> str:
    """The writer named in a held lock file: 'another writer (pid 12, host a, since ...)';
    'another writer in this process' when it is a thread of this one."""
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another writer"
    pid, host, since = info.get("pid"), info.get("host"), info.get("since")
    if pid == os.getpid() and host == socket.gethostname():
        return f"another writer in this process (a thread, since {since})"
    return f"another writer (pid {pid} on {host}, since {since})"


def raw_column(raw_hashes: Sequence[int] | None, rows: int) -> pa.Array:
    """The ``raw_hash`` column: each 128-bit value as 16 little-endian bytes, null for 0."""
    if not raw_hashes:
        return pa.nulls(rows, pa.binary(16))
    data = b"".join([h.to_bytes(16, "little") for h in raw_hashes])
    valid = np.fromiter((h != 0 for h in raw_hashes), dtype=bool, count=len(raw_hashes))
    if valid.all():
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), rows, [None, pa.py_buffer(data)])
    mask = pa.array(valid).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), rows, [mask, pa.py_buffer(data)], null_count=int((~valid).sum())
    )


def _kept_column(name: str, values: list[Any], ids: list[str]) -> pa.Array:
    """The Arrow column of kept field ``name``; when its values do not make one column (types
    that do not mix, such as 'n/a' among numbers), a ``StoreError`` naming the field and the
    first row that breaks it."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        # The shortest failing prefix ends at the culprit (int and float mix; str does not).
        good, bad = 0, len(values)
        while bad - good > 1:
            mid = (good + bad) // 2
            try:
                pa.array(values[:mid])
                good = mid
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                bad = mid
        value = values[bad - 1]
        before = pa.array(values[:good]).type if good else None
        fits = f" among values of type {before}" if before is not None else ""
        raise StoreError(
            f"kept field {name!r} cannot be stored: row id {ids[bad - 1]!r} holds "
            f"{type(value).__name__} {value!r}{fits} ({one_line(exc)}); give the "
            "field one type in the input (e.g. leave it empty instead of 'n/a'), or do not keep it"
        ) from exc


def _cast(data: pa.Table, schema: pa.Schema, ids: list[str]) -> pa.Table:
    """``data`` with the table's column types; a ``StoreError`` naming the field and the first
    row whose value does not fit its column's type (other misfits raise as they are)."""
    try:
        return data.cast(schema)
    except _ARROW_ERRORS:
        for field in schema:
            if field.name not in data.column_names:
                continue
            column = data.column(field.name)
            if column.type == field.type or _casts(column, field.type):
                continue
            for i, value in enumerate(column.to_pylist()):
                if not _casts(pa.array([value], column.type), field.type):
                    raise StoreError(
                        f"kept field {field.name!r}: row id {ids[i]!r} holds {value!r}, which "
                        f"does not fit the table's column type {field.type}; give the field "
                        "one type in the input, or embed into a new collection"
                    ) from None
        raise


def _casts(values: pa.Array | pa.ChunkedArray, to: pa.DataType) -> bool:
    try:
        values.cast(to)
    except _ARROW_ERRORS:
        return False
    return True


def _as_new_table(data: pa.Table) -> pa.Table:
    """``data`` as a new table stores it: a column with no value in any row (a kept field
    that is always empty so far) as text, and the hex hashes with zstd (half the size of the
    default, and faster to write)."""
    schema = data.schema
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):
            schema = schema.set(i, field.with_type(pa.string()))
    i = schema.get_field_index("content_hash")
    schema = schema.set(i, schema.field(i).with_metadata({"lance-encoding:compression": "zstd"}))
    return data.cast(schema)


def _equals(schema: pa.Schema, name: str, value: Any) -> str:
    """A SQL clause ``column = value`` for a LanceDB filter, the name and value quoted safely.

    Raises:
        ConfigError: ``name`` is not a filterable column of ``schema``, or ``value`` is not a
            string, number, boolean or ``None``.
    """
    columns = [f.name for f in schema if f.name not in ("vector", "content_hash", "raw_hash")]
    if name not in columns:
        raise ConfigError(
            f"cannot filter on {name!r}: not a stored field; filterable fields: "
            f"{', '.join(sorted(columns))}"
        )
    column = "`" + name.replace("`", "``") + "`"
    if value is None:
        return f"{column} IS NULL"
    if isinstance(value, bool):
        return f"{column} = {'true' if value else 'false'}"
    if isinstance(value, int | float) and np.isfinite(value):
        return f"{column} = {value!r}"
    if isinstance(value, str):
        return f"{column} = {_quote(value)}"
    raise ConfigError(
        f"filter value of {name!r} must be a string, number, boolean or null, "
        f"not {type(value).__name__}"
    )
