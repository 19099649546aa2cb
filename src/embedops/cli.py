"""The ``embedops`` command line: a thin layer over ``EmbeddingProcessor``.

Errors print one line to stderr and exit with the error's own code (see ``embedops.errors``);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from embedops.bench import DEFAULT_BACKENDS as DEFAULT_BENCH_BACKENDS
from embedops.config import Settings
from embedops.errors import ConfigError, EmbedopsError
from embedops.logs import configure_logging

if TYPE_CHECKING:
    from embedops.pipeline import RunReport

app = typer.Typer(
    name="embedops",
    help="Turn records into embeddings and keep them useful.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
logger = logging.getLogger(__name__)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store directory (env EMBEDOPS_STORE; default ./.embedops)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model alias, directory or cached HF id (env EMBEDOPS_MODEL)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="torch, onnx, onnx-int8 or static (env EMBEDOPS_BACKEND; default onnx).",
    ),
]
ExactOpt = Annotated[
    bool,
    typer.Option("--exact", help="Compare with every stored vector, not through the index."),
]


class _State:
    debug = False


def _settings(
    store: str | None, model: str | None, backend: str | None = None, **extra: Any
) -> Settings:
    # An empty value means unset, as for the EMBEDOPS_* variables (--model "" is not the
    # current directory).
    values: dict[str, Any] = {k: v for k, v in extra.items() if v is not None and v != ""}
    if store:
        values["store"] = Path(store)
    if model:
        values["model"] = model
    if backend:
        values["backend"] = backend
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from exc


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, ``kill``), raised in the main thread so that a run stops as
    it does on Ctrl-C: the rows embedded so far are committed, and a re-run skips them."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _guard(
    action: Callable[[], T],
    *,
    run: Callable[[], RunReport | None] | None = None,
    json_out: bool = False,
) -> T:
    """Run a command body; turn embedops errors into one line and an exit code, and Ctrl-C
    or SIGTERM into a clean stop (exit 130 or 143). ``run`` gives the report of the run the
    command made, if any: a stopped run's line says how many rows it saved (``json_out``:
    the report goes to stdout too)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    try:
        return action()
    except EmbedopsError as exc:
        if _State.debug:
            raise
        err.print(f"error: {exc}", highlight=False, markup=False, style="red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        report = run() if run is not None else None
        line = "terminated" if terminated else "interrupted"
        if report is not None:
            line += (
                f": {report.stored:,} rows saved to {report.collection} "
                f"({report.read:,} read); run the same command again to resume"
            )
            if json_out:
                out.print_json(json.dumps(report.to_dict()))
        err.print(line, highlight=False, markup=False)
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


@app.callback()
def _main(
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")] = (
        "WARNING"
    ),
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """embedops: embeddings for records, offline and reproducible."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _State.debug = debug
    # JSON logs are for machines: they get the INFO lines too (one per commit of a run).
    level = "INFO" if log_json and log_level.upper() == "WARNING" else log_level
    configure_logging("DEBUG" if debug else level, log_json)


def _split(value: str | None, *, keep_empty: bool = False) -> list[str]:
    """``a, b,c`` -> ``["a", "b", "c"]``; empty items are dropped unless ``keep_empty`` (for
    ``--columns``, where ``a,,c`` is a mistake that the reader refuses)."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if keep_empty or v.strip()]


@app.command()
def embed(
    source: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    text_field: Annotated[str | None, typer.Option(help="Field holding the text.")] = None,
    template: Annotated[
        str | None, typer.Option(help="Text from several fields, e.g. '{title}. {body}'.")
    ] = None,
    id_field: Annotated[
        str | None, typer.Option(help="Field holding the id (default: the 1-based row number).")
    ] = None,
    keep: Annotated[str | None, typer.Option(help="Fields to store as metadata: a,b,c.")] = None,
    columns: Annotated[
        str | None, typer.Option(help="Field names of a headerless CSV/TSV file: a,b,c.")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv, tsv, jsonl or parquet.")
    ] = None,
    normalize: Annotated[
        bool, typer.Option(help="Unicode NFKC and whitespace normalisation.")
    ] = True,
    strip_markup: Annotated[
        bool, typer.Option(help="Remove HTML tags/entities and stray backslashes.")
    ] = True,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Token budget per inference batch.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Inference batches at once (threads; default 1, onnx: one per core)."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="Embedding worker processes, each with its own copy of the model; faster "
            "for the static backend (default 1: in this process)."
        ),
    ] = None,
    delete_missing: Annotated[
        bool,
        typer.Option(
            "--delete-missing", help="The input is a full snapshot: delete stored ids it lacks."
        ),
    ] = False,
    feed: Annotated[
        bool,
        typer.Option(
            "--feed",
            help="The input is a change feed: each line has op upsert|delete; applied in order.",
        ),
    ] = False,
    max_quarantined: Annotated[
        str | None,
        typer.Option(
            "--max-quarantined",
            help="Stop once more rows than this are quarantined: N rows or N% of rows read "
            "(default: no limit).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve the run's Prometheus metrics on this port."),
    ] = None,
    metrics_file: Annotated[
        str | None,
        typer.Option(
            "--metrics-file", help="Write the run's metrics to this file (node-exporter textfile)."
        ),
    ] = None,
    commit_every: Annotated[
        int | None,
        typer.Option(
            "--commit-every",
            help="Rows per store commit (env EMBEDOPS_COMMIT_ROWS; default 16384): a crash "
            "re-embeds at most this many rows plus one window.",
        ),
    ] = None,
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: JsonOpt = False,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="local, or ray: embed on Ray Data (a local Ray, or the cluster at "
            "RAY_ADDRESS; needs embedops[ray]) (env EMBEDOPS_ENGINE; default local).",
        ),
    ] = None,
) -> None:
    """Embed the records of a file into a collection (unchanged rows are skipped)."""
    from embedops.memory import tune_malloc

    tune_malloc()  # before the run's threads and buffers: peak memory flat with the input
    from embedops.processor import EmbeddingProcessor
    from embedops.progress import RichProgress

    def run() -> None:
        settings = _settings(
            store,
            model,
            backend,
            batch_tokens=batch_tokens,
            workers=workers,
            processes=processes,
            commit_rows=commit_every,
            engine=engine,
        )
        with EmbeddingProcessor(settings=settings) as processor:
            started.append(processor)
            report = processor.process(
                source,
                collection=collection,
                text_field=text_field,
                template=template,
                id_field=id_field,
                keep=_split(keep),
                columns=_split(columns, keep_empty=True) or None,
                format=format,
                normalize=normalize,
                strip_markup=strip_markup,
                delete_missing=delete_missing,
                feed=feed,
                metrics_port=metrics_port,
                metrics_file=metrics_file,
                max_quarantined=max_quarantined,
                progress=RichProgress(f"embed {source.name}", console=err, enabled=not quiet),
            )
        if json_out:
            out.print_json(json.dumps(report.to_dict()))
            return
        out.print(
            f"{report.read:,} read: {report.embedded:,} embedded ({report.inserted:,} new, "
            f"{report.updated:,} changed), {report.metadata_updated:,} metadata updated, "
            f"{report.unchanged:,} unchanged, {report.deleted:,} deleted, "
            f"{report.quarantined:,} quarantined in {report.seconds:.1f}s "
            f"({report.rows_per_second:,.0f} rows/s) -> {report.collection} "
            f"[{report.model_version}]",
            highlight=False,
            markup=False,
        )
        if report.quarantine_path:
            reasons = ", ".join(f"{k}={v}" for k, v in report.reasons.items())
            out.print(
                f"quarantine: {report.quarantine_path} ({reasons})", highlight=False, markup=False
            )

    started: list[EmbeddingProcessor] = []
    _guard(run, run=lambda: started[0].last_report if started else None, json_out=json_out)


def _print_hits(hits: list[tuple[str, float]], json_out: bool, title: str) -> None:
    if json_out:
        out.print_json(json.dumps([{"id": i, "score": round(s, 6)} for i, s in hits]))
        return
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    for rank, (item_id, score) in enumerate(hits, start=1):
        table.add_row(str(rank), item_id, f"{score:.4f}")
    out.print(table)


@app.command()
def similar(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    item_id: Annotated[str, typer.Argument(help="Id of a stored item.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = 10,
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    exact: ExactOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The stored items most similar to a stored item (the item itself left out)."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        with EmbeddingProcessor(settings=_settings(store, model, backend)) as processor:
            hits = processor.most_similar(collection, item_id=item_id, k=k, exact=exact)
        _print_hits(hits, json_out, f"most similar to {item_id} in {collection}")

    _guard(run)


@app.command()
def search(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    query: Annotated[str, typer.Argument(help="Free-text query.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    exact: ExactOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The stored items closest to a free-text query."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        with EmbeddingProcessor(settings=_settings(store, model, backend)) as processor:
            hits = processor.search(collection, query, k=k, exact=exact)
        _print_hits(hits, json_out, f"{collection}: {query}")

    _guard(run)


@app.command()
def compare(
    text_a: Annotated[str, typer.Argument(help="First text.")],
    text_b: Annotated[str, typer.Argument(help="Second text.")],
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cosine similarity of two texts."""
    from embedops.processor import EmbeddingProcessor

    def run() -> None:
        processor = EmbeddingProcessor(settings=_settings(store, model, backend))
        score = processor.similarity(text_a, text_b)
        if json_out:
            out.print_json(json.dumps({"a": text_a, "b": text_b, "cosine": round(score, 6)}))
        else:
            out.print(f"{score:.4f}", highlight=False)

    _guard(run)


@app.command()
def bench(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="Your texts: a .txt file (one per line), or CSV, TSV, JSONL or Parquet "
            "(see --text-field). Default: a few built-in sentences."
        ),
    ] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    format: Annotated[
        str | None, typer.Option("--format", help="csv, tsv, jsonl or parquet.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Texts to read at most.")] = 1000,
    backends: Annotated[str, typer.Option(help="Backends to compare: a,b,c.")] = ",".join(
        DEFAULT_BENCH_BACKENDS
    ),
    reference: Annotated[
        str | None,
        typer.Option(help="Backend the others are compared with (default: torch if it runs)."),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Timed rounds per backend.")] = 3,
    output: Annotated[
        Path | None, typer.Option("--out", help="Also write the results as JSON here.")
    ] = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the backends on your texts: speed, load time, agreement with the reference.

    Against sentence-transformers, from a source checkout: python -m benchmarks.bench.
    """
    from embedops.bench import read_texts, run_bench

    def run() -> None:
        texts = read_texts(source, text_field=text_field, limit=limit, fmt=format)
        results = run_bench(
            texts,
            backends=_split(backends),
            reference=reference,
            rounds=rounds,
            settings=_settings(None, model),
        )
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(results, indent=2) + "\n")
        if json_out:
            out.print_json(json.dumps(results))
            return
        table = Table(
            title=f"{results['texts']:,} texts, {results['mean_tokens']} tokens on average, "
            f"best of {rounds} rounds; agreement with {results['reference']}"
        )
        columns = ("backend", "load s", "texts/s", "median", "tokens/s", "cos min", "cos mean")
        for column in (*columns, "top-10 shared"):
            table.add_column(column, justify="left" if column == "backend" else "right")
        for row in results["results"]:
            table.add_row(
                row["backend"],
                f"{row['load_s']:.2f}",
                f"{row['texts_per_s']:,.0f}",
                f"{row['texts_per_s_median']:,.0f}",
                f"{row['tokens_per_s']:,.0f}",
                *(
                    "" if row[k] is None else f"{row[k]:.4f}"
                    for k in ("cosine_min", "cosine_mean", "neighbour_overlap")
                ),
            )
        out.print(table)

    _guard(run)


def main() -> None:
    """Console entry point."""
    app()


from embedops.cli_models import models_app as _models_app  # noqa: E402

app.add_typer(_models_app, name="models")

import embedops.cli_index  # noqa: E402, F401  (registers `embedops index`)
from embedops import cli_collections as _cli_collections  # noqa: E402,F401  history, rollback
from embedops import cli_report as _cli_report  # noqa: E402,F401  registers report
from embedops import cli_service as _cli_service  # noqa: E402,F401  registers serve, keys
from embedops.cli_experiments import experiments_app as _experiments_app  # noqa: E402

app.add_typer(_experiments_app, name="experiments")
