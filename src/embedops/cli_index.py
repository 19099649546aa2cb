"""``embedops index``: store upkeep by hand (compaction, cleanup of old versions, the index).

Registered on ``embedops.cli.app`` by the import at the end of ``cli.py``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from embedops.cli import BackendOpt, JsonOpt, ModelOpt, StoreOpt, _guard, _settings, app, out


@app.command()
def index(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Train the vector index anew even if it has one.")
    ] = False,
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compact a collection, remove its old versions and build or update its vector index.

    Unlike the upkeep after a run, this builds the index whatever the collection's size
    (from 1,000 rows: fewer cannot train one). Versions younger than EMBEDOPS_KEEP_VERSIONS_HOURS
    (default 168) and tagged versions are kept.
    """
    from embedops import upkeep
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        settings = _settings(store, model, backend)
        with EmbeddingProcessor(settings=settings) as processor:
            table = processor.store.collection(collection, processor.model_version)
            report = upkeep.maintain(table, settings, rebuild=rebuild, index=True)
        if json_out:
            out.print_json(json.dumps(report.to_dict()))
            return
        if report.index_type is None:
            what = f"no index ({report.rows:,} rows: too few to train one; search is exact)"
        else:
            what = (
                f"index {report.index} ({report.index_type}, {report.indexed_rows:,} rows "
                f"indexed, {report.unindexed_rows:,} not)"
            )
        out.print(
            f"{report.table}: {report.rows:,} rows; {what}; {report.fragments_removed:,} "
            f"fragments fewer after compaction; {report.versions_removed:,} old versions "
            f"removed, {report.versions_kept:,} kept; {report.seconds:.1f}s",
            highlight=False,
            markup=False,
        )

    _guard(run)
