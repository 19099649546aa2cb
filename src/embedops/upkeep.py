"""Store upkeep: compaction, cleanup of old versions, and the ANN vector index.

After a run that stored rows, when the table needs it (``needs_upkeep``), and on
``embedops index``:

1. LanceDB's ``optimize`` compacts small fragments into large ones, removes versions older
   than the retention (``Settings.keep_versions_hours``) through LanceDB's own cleanup, which
   never removes the latest version or a tagged one (published versions), and adds rows
   written since the index was last updated to the index (it is trained again, from
   scratch, when those rows are more than ``Settings.index_retrain_share`` of the table).
   LanceDB refuses a cleanup whose cutoff passes a tagged version, so the cutoff stops a
   second before the oldest tag (``cleanup_age``).
2. A table of ``Settings.index_min_rows`` rows or more that has no vector index gets one
   (``Settings.index_type``, cosine). Below the threshold search stays an exact scan; above
   it, ``exact=True`` (``--exact``) still scans every row.
3. Readers see the collection's published version: when upkeep started from it, the new
   version (same rows, compacted and indexed) is published in its place (``_republish``).

Upkeep holds the table's writer lock, so it never runs beside a writer of the same table.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from embedops.config import Settings
from embedops.errors import StoreError
from embedops.store import Collection, VectorStore

logger = logging.getLogger(__name__)

VECTOR_COLUMN = "vector"
# k-means iterations of the IVF training (LanceDB's default, 50, took longer for the same
# recall on the million-row benchmark; see benchmarks/README.md).
KMEANS_ITERATIONS = 20
_MIN_PARTITIONS = 1
_MAX_PARTITIONS = 4096
# Fewer rows cannot train an index (PQ needs 256 per code book); search them exactly.
MIN_INDEX_ROWS = 1000
# A cleanup cutoff stays this far before the oldest tagged version.
_TAG_MARGIN = timedelta(seconds=1)


@dataclass
class UpkeepReport:
    """What one upkeep did.

    Attributes:
        table: the table's name.
        rows: rows in the table.
        index: ``none`` (below the threshold), ``built``, ``rebuilt`` (forced or retrained),
            ``updated`` (new rows added to it) or ``current`` (nothing to add).
        index_type: the vector index's type, if it has one.
        indexed_rows, unindexed_rows: rows the index covers and rows it does not (after).
        fragments_removed: fragments fewer after compaction.
        versions_removed: old versions removed by the cleanup.
        versions_kept: versions left (the latest, tagged ones, those within the retention).
        seconds: wall time of the upkeep.
    """

    table: str
    rows: int = 0
    index: str = "none"
    index_type: str | None = None
    indexed_rows: int = 0
    unindexed_rows: int = 0
    fragments_removed: int = 0
    versions_removed: int = 0
    versions_kept: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def partitions_for(rows: int) -> int:
    """IVF partitions for ``rows`` rows: sqrt(rows) / 2 (500 at a million), at most one per
    256 rows (LanceDB trains no more) and within 1 and 4,096."""
    wanted = min(round(math.sqrt(rows) / 2), rows // 256, _MAX_PARTITIONS)
    return max(_MIN_PARTITIONS, wanted)


def vector_index(table: Any) -> Any | None:
    """The config of the vector index on ``vector`` of a LanceDB table, or ``None``."""
    for config in table.list_indices():
        if list(config.columns) == [VECTOR_COLUMN] and str(config.index_type).startswith("Ivf"):
            return config
    return None


def build_index(table: Any, settings: Settings, dim: int) -> None:
    """Build (or replace) the table's vector index as ``settings`` say, by cosine."""
    from lancedb.index import IvfPq, IvfSq

    rows = int(table.count_rows())
    partitions = partitions_for(rows)
    config: Any
    if settings.index_type == "IVF_PQ":
        config = IvfPq(
            distance_type="cosine",
            num_partitions=partitions,
            num_sub_vectors=sub_vectors(dim, settings.index_pq_dims),
            max_iterations=KMEANS_ITERATIONS,
        )
    else:
        config = IvfSq(
            distance_type="cosine", num_partitions=partitions, max_iterations=KMEANS_ITERATIONS
        )
    started = time.perf_counter()
    table.create_index(VECTOR_COLUMN, replace=True, config=config)  # (column, config=...)
    logger.info(
        "built %s index of %s on %d rows in %.1fs",
        settings.index_type,
        table.name,
        rows,
        time.perf_counter() - started,
    )


def sub_vectors(dim: int, dims_per_sub: int) -> int:
    """PQ sub-vectors: ``dim / dims_per_sub``, lowered to a divisor of ``dim``."""
    wanted = max(1, dim // max(1, dims_per_sub))
    while dim % wanted:
        wanted -= 1
    return wanted


def index_counts(table: Any) -> tuple[int, int]:
    """Rows the vector index covers and rows it does not (all of them without an index)."""
    config = vector_index(table)
    stats = table.index_stats(config.name) if config is not None else None
    if stats is None:
        return 0, int(table.count_rows())
    return int(stats.num_indexed_rows), int(stats.num_unindexed_rows)


def cleanup_age(table: Any, keep: timedelta, now: datetime | None = None) -> timedelta:
    """The age from which LanceDB's cleanup may remove versions: ``keep``, raised so that no
    tagged version is older than it (LanceDB keeps tagged versions, but refuses the whole
    cleanup when one is older than the cutoff; so versions older than the oldest tag go,
    and those between it and the retention wait until it is deleted)."""
    tagged = {int(info["version"]) for info in table.tags.list().values()}
    if not tagged:
        return keep
    stamps: list[datetime] = [
        v["timestamp"] for v in table.list_versions() if int(v["version"]) in tagged
    ]
    if not stamps:
        return keep
    oldest = min(stamps)
    current = now or (datetime.now(oldest.tzinfo) if oldest.tzinfo else datetime.now())
    return max(keep, current - oldest + _TAG_MARGIN)


def maintain(
    collection: Collection, settings: Settings, *, rebuild: bool = False, index: bool = False
) -> UpkeepReport:
    """Compact, clean up and index one collection table, holding its writer lock.

    Args:
        collection: the collection (see ``VectorStore.collection``).
        settings: retention, index threshold and type.
        rebuild: build the vector index anew even if it has one.
        index: build a vector index even below ``settings.index_min_rows``.

    Raises:
        StoreError: another writer holds the table, or LanceDB cannot write it.
    """
    started = time.perf_counter()
    store = collection.store
    name = store.table_name(collection.name, collection.model_version)
    table = store.lance_table(name)  # the latest version, not the one readers are pinned to
    dim = int(table.schema.field(VECTOR_COLUMN).type.list_size)
    report = UpkeepReport(table=name)
    with store.lock(name):  # the writer lock: never beside a run into the same table
        table.checkout_latest()
        before = int(table.version)
        try:
            _maintain(table, settings, report, dim, rebuild=rebuild, index=index)
        except (OSError, RuntimeError, ValueError) as exc:
            message = " ".join(str(exc).split())
            raise StoreError(
                f"upkeep of table {name} in {store.path} failed ({message}); the rows "
                "stored are kept, and `embedops index` retries it"
            ) from exc
        _republish(store, collection.name, name, before, int(table.version))
    report.seconds = round(time.perf_counter() - started, 3)
    logger.info("upkeep: %s", report.to_dict())
    return report


def _maintain(
    table: Any, settings: Settings, report: UpkeepReport, dim: int, *, rebuild: bool, index: bool
) -> None:
    report.rows = rows = int(table.count_rows())
    existing = vector_index(table)
    _, unindexed = index_counts(table)
    # Rows the index does not cover are added to it by optimize (their IVF partition and PQ
    # codes come from the old training); when they are many, the index is trained again.
    retrain = existing is not None and rows > 0 and unindexed / rows > settings.index_retrain_share
    fragments = int(table.stats()["fragment_stats"]["num_fragments"])
    versions = {int(v["version"]) for v in table.list_versions()}
    # Compaction, cleanup by LanceDB (the latest and tagged versions are kept), index update.
    keep = timedelta(hours=settings.keep_versions_hours)
    try:
        table.optimize(cleanup_older_than=cleanup_age(table, keep))
    except RuntimeError as exc:
        # LanceDB takes the age as a duration from its own clock, after compacting: a slow
        # compaction (or a tag made meanwhile) moves the cutoff past a tagged version, and
        # LanceDB refuses the cleanup (removing nothing). Compaction is done now: again.
        if "tagged version" not in str(exc):
            raise
        logger.info("cleanup met a tagged version; trying again (%s)", exc)
        table.optimize(cleanup_older_than=cleanup_age(table, keep))
    after = int(table.stats()["fragment_stats"]["num_fragments"])
    report.fragments_removed = max(0, fragments - after)
    wanted = index or (settings.index_min_rows > 0 and rows >= settings.index_min_rows)
    if existing is None and wanted and rows >= MIN_INDEX_ROWS:
        build_index(table, settings, dim)
        report.index = "built"
    elif existing is not None and (rebuild or retrain):
        build_index(table, settings, dim)
        report.index = "rebuilt"
    elif existing is not None:
        report.index = "updated" if unindexed else "current"
    config = vector_index(table)
    if config is not None:
        report.index_type = str(config.index_type)
        report.indexed_rows, report.unindexed_rows = index_counts(table)
    left = {int(v["version"]) for v in table.list_versions()}
    report.versions_kept = len(left)
    report.versions_removed = len(versions - left)


def _republish(store: VectorStore, collection: str, table: str, before: int, after: int) -> None:
    """Readers see a collection's published version (``catalog``); upkeep makes new versions
    with the same rows (compacted, indexed). If ``before`` was published (or recorded as the
    last complete run), the version after upkeep takes its place, so that readers search
    through the index: published as ``upkeep`` and tagged like every published version."""
    if after == before:
        return
    catalog = store.catalog
    built = catalog.built(collection, table)
    if built is not None and int(built["version"]) == before:
        catalog.record_built(collection, table, after, built["report"])
    current = catalog.published(collection)
    if current is None or current.table != table or current.version != before:
        return
    entry = catalog.publish(
        collection,
        table=table,
        model_version=current.model_version,
        version=after,
        action="upkeep",
        note=f"version {before} compacted and indexed",
        report=current.report,
    )
    store.tag(table, f"published-{entry.number}-v{after}", after)


def needs_upkeep(table: Any, settings: Settings) -> bool:
    """Whether a table needs upkeep after a run: it has ``settings.upkeep_fragments``
    fragments or more (many small commits to compact), or rows its vector index does not
    cover, or no index though it has ``settings.index_min_rows`` rows. A small table
    written a few times needs none (each upkeep is a new version, published in place of the
    run's)."""
    if int(table.stats()["fragment_stats"]["num_fragments"]) >= settings.upkeep_fragments:
        return True
    if vector_index(table) is not None:
        return index_counts(table)[1] > 0
    rows = int(table.count_rows())
    return settings.index_min_rows > 0 and rows >= max(settings.index_min_rows, MIN_INDEX_ROWS)


def after_run(
    store: VectorStore, collection: str, model_version: str, stored: int, settings: Settings
) -> UpkeepReport | None:
    """Upkeep after a run that stored ``stored`` rows, when the table needs it (see
    ``needs_upkeep``; never when ``settings.upkeep`` is off). A failure is logged, not
    raised: the run's rows are stored, and ``embedops index`` does the upkeep by hand."""
    if not settings.upkeep or stored <= 0:
        return None
    try:
        found = store.collection(collection, model_version)
        table = store.lance_table(store.table_name(collection, model_version))
        if not needs_upkeep(table, settings):
            return None
        return maintain(found, settings)
    except StoreError as exc:
        logger.warning("%s", exc)
        return None
