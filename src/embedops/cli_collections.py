"""``embedops history | rollback | promote``: a collection's published versions."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from embedops.catalog import Published
from embedops.cli import BackendOpt, JsonOpt, ModelOpt, StoreOpt, _guard, _settings, app, out
from embedops.errors import CollectionNotFound


def _print_entry(entry: Published, json_out: bool, verb: str) -> None:
    if json_out:
        out.print_json(json.dumps(asdict(entry)))
        return
    out.print(
        f"{verb} {entry.table} version {entry.version} as published version {entry.number} "
        f"({entry.model_version})",
        highlight=False,
        markup=False,
    )


@app.command()
def history(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Published versions of a collection: time, model version, run report."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        with EmbeddingProcessor(settings=_settings(store, None)) as processor:
            entries = processor.history(collection)
            current = processor.store.catalog.published(collection)
        if json_out:
            out.print_json(json.dumps([asdict(e) for e in entries]))
            return
        table = Table(title=f"{collection}: published versions")
        for name in ("#", "published at", "action", "model version", "table version", "rows"):
            table.add_column(name)
        for e in entries:
            mark = "*" if current is not None and e.number == current.number else ""
            report = e.report or {}
            rows = (
                f"+{report.get('inserted', 0)} ~{report.get('updated', 0)} "
                f"-{report.get('deleted', 0)} ={report.get('unchanged', 0)}"
                if report
                else e.note
            )
            table.add_row(
                f"{e.number}{mark}", e.published_at, e.action, e.model_version, str(e.version), rows
            )
        out.print(table)

    _guard(run)


@app.command()
def rollback(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    version: Annotated[int, typer.Argument(help="Published version (see embedops history).")],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish an earlier version of a collection again (readers see it at once)."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        with EmbeddingProcessor(settings=_settings(store, None)) as processor:
            entry = processor.rollback(collection, version)
        _print_entry(entry, json_out, "rolled back: published")

    _guard(run)


@app.command()
def promote(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Switch a collection to another model version (blue/green), through its quality gate."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        with EmbeddingProcessor(settings=_settings(store, model, backend)) as processor:
            entry = processor.promote(collection)
        _print_entry(entry, json_out, "promoted: published")

    _guard(run)


@app.command()
def status(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The running or last run of a collection: progress, rate, ETA, counts, how it ended."""
    from embedops.runlog import last_run
    from embedops.store import check_collection_name

    def run() -> None:
        check_collection_name(collection)
        settings = _settings(store, None)
        found = last_run(settings.store, collection)
        if found is None:
            raise CollectionNotFound(
                f"no run of collection {collection!r} in store {settings.store}"
            )
        if json_out:
            data = {k: v for k, v in asdict(found).items() if k != "path"}
            data["progress"], data["eta_seconds"] = found.progress, found.eta_seconds()
            out.print_json(json.dumps(data, default=str))
            return
        r = found.report
        progress = f"{found.progress:.0%}" if found.progress is not None else "?"
        eta = found.eta_seconds()
        lines = [
            f"{collection}: {found.state} (pid {found.pid} on {found.host}, started "
            f"{found.started}, last update {found.updated})",
            f"progress {progress} of {found.total:,} {found.unit}"
            + (f", ETA {eta:.0f} s" if eta is not None else ""),
            f"{r['read']:,} read: {r['inserted']:,} inserted, {r['updated']:,} updated, "
            f"{r['metadata_updated']:,} metadata updated, {r['unchanged']:,} unchanged, "
            f"{r['deleted']:,} deleted, {r['quarantined']:,} quarantined; {r['stored']:,} "
            f"stored; {r['read'] / r['seconds'] if r['seconds'] else 0:,.0f} rows/s",
        ]
        if found.error:
            lines.append(f"error: {found.error}")
        if found.state == "killed":
            lines.append("the process is gone: run the same command again to resume")
        for line in lines:
            out.print(line, highlight=False, markup=False)

    _guard(run)
