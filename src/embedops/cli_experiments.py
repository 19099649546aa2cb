"""``embedops experiments``: A/B tests and shadow runs between model versions (see
``embedops.experiments`` and docs/experiments.md).

``create``, ``stop`` and ``promote`` change ``<store>/experiments.json`` (a running service
follows within ``EMBEDOPS_EXPERIMENT_POLL_S``); ``list``, ``show`` and ``report`` read it and
the experiment's log. Errors are one line and an exit code, as in ``embedops.cli``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from embedops.cli import BackendOpt, JsonOpt, StoreOpt, _guard, _settings, out
from embedops.errors import ConfigError
from embedops.experiments.definitions import ExperimentStore, Sticky, parse_variant
from embedops.experiments.manage import build_experiment, promote_variant
from embedops.experiments.report import experiment_report

experiments_app = typer.Typer(
    help="Experiments: traffic splits and shadow runs between model versions.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The experiment's name.")]


def _print(text: str) -> None:
    out.print(text, highlight=False, markup=False)


def _store(store: str | None) -> ExperimentStore:
    return ExperimentStore(_settings(store, None).store)


@experiments_app.command()
def create(
    name: NameArg,
    variant: Annotated[
        list[str],
        typer.Option(
            "--variant",
            help="LABEL=MODEL:WEIGHT, e.g. a=production:90 (repeat; the first is the control).",
        ),
    ],
    sticky: Annotated[
        str, typer.Option(help="Keep a caller on one variant by its API key or 'user'.")
    ] = "key",
    shadow: Annotated[
        str | None, typer.Option(help="A candidate model that embeds a sample in the shadow.")
    ] = None,
    shadow_rate: Annotated[
        float | None,
        typer.Option(help="Share of requests the shadow embeds (env EMBEDOPS_SHADOW_RATE)."),
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="The collection it is about (promote switches it).")
    ] = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Create and start an experiment (each model reference is pinned to its version now)."""

    def run() -> None:
        settings = _settings(store, None, backend)
        if sticky not in ("key", "user"):
            raise ConfigError(f"--sticky takes key or user, got {sticky!r}")
        mode: Sticky = "user" if sticky == "user" else "key"
        experiment = build_experiment(
            settings,
            name,
            [parse_variant(v) for v in variant],
            sticky=mode,
            shadow=shadow,
            shadow_rate=shadow_rate,
            collection=collection,
        )
        ExperimentStore(settings.store).create(experiment)
        shares = experiment.shares()
        for v in experiment.variants:
            _print(f"{v.label}: {v.version} ({shares[v.label]:.0%})")
        if experiment.shadow is not None:
            _print(f"shadow: {experiment.shadow.version} (rate {experiment.shadow.rate:g})")
        _print(f"experiment {name} running (sticky by {mode})")

    _guard(run)


@experiments_app.command("list")
def list_(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Every experiment of the store."""

    def run() -> None:
        experiments = _store(store).list()
        if json_out:
            out.print_json(json.dumps([e.to_dict() for e in experiments]))
            return
        table = Table(title="experiments")
        for column in ("name", "status", "started", "variants", "shadow"):
            table.add_column(column, overflow="fold")
        for e in experiments:
            shares = e.shares()
            table.add_row(
                e.name,
                e.status,
                e.started,
                ", ".join(f"{v.label} {shares[v.label]:.0%}" for v in e.variants),
                e.shadow.version if e.shadow is not None else "",
            )
        out.print(table)

    _guard(run)


@experiments_app.command()
def show(name: NameArg, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """One experiment's definition."""

    def run() -> None:
        data = _store(store).get(name).to_dict()
        if json_out:
            out.print_json(json.dumps(data))
            return
        for key, value in data.items():
            _print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")

    _guard(run)


@experiments_app.command()
def stop(name: NameArg, store: StoreOpt = None) -> None:
    """Stop an experiment (services serve their own model again; the log stays)."""

    def run() -> None:
        experiment = _store(store).finish(name)
        _print(f"experiment {name} {experiment.status}")

    _guard(run)


def _interval(value: dict[str, Any] | None, percent: bool = True) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value['value']:.1%} ({100 * value['low']:.1f}-{100 * value['high']:.1f})"
    return f"{value['value']:.2f} ({value['low']:.2f}-{value['high']:.2f})"


@experiments_app.command()
def report(
    name: NameArg,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    min_samples: Annotated[
        int, typer.Option(help="Impressions per variant before deciding on click-through.")
    ] = 100,
) -> None:
    """Per-variant traffic, latency, errors and quality with 95% intervals, a significance
    test and a suggested decision (keep, promote or stop)."""

    def run() -> None:
        settings = _settings(store, None)
        data = experiment_report(settings.store, name, min_samples=min_samples)
        if json_out:
            out.print_json(json.dumps(data))
            return
        _print(f"experiment {name}: {data['status']} since {data['started']}")
        for v in data["variants"]:
            _print(f"  {v['label']}: {v['model_version']} ({v['weight']:.0%} of traffic)")
        traffic = Table(title="traffic (95% intervals)")
        columns = ("variant", "requests", "feedback", "error rate", "p50 ms", "p95 ms", "p99 ms")
        for column in columns:
            traffic.add_column(column, no_wrap=True)
        quality = Table(title="quality (95% intervals)")
        k = next((v["recall_at_k"]["k"] for v in data["variants"] if v["recall_at_k"]), 10)
        for column in ("variant", "CTR", "MRR", f"recall@{k}"):
            quality.add_column(column, no_wrap=True)
        for v in data["variants"]:
            latency = v["latency_ms"]
            traffic.add_row(
                v["label"],
                str(v["requests"]),
                str(v["feedback"]),
                _interval(v["error_rate"]),
                *(f"{latency[p]:.1f}" for p in ("p50", "p95", "p99")),
            )
            quality.add_row(
                v["label"],
                _interval(v["ctr"]),
                _interval(v["mrr"], percent=False),
                _interval(v["recall_at_k"], percent=False),
            )
        out.print(traffic)
        out.print(quality)
        test = data["test"]
        p_value = "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"
        _print(f"test: {test['method']} on {test['metric']}: p = {p_value}")
        shadow = data["shadow"]
        if shadow is not None:
            figures = ", ".join(
                f"{k} {shadow[k]:.3f}"
                for k in ("mean_cosine", "topk_overlap", "rank_correlation")
                if shadow[k] is not None
            )
            _print(f"shadow {shadow['candidate']}: {shadow['samples']} samples; {figures or '-'}")
        _print(f"decision: {data['decision']} ({data['reason']})")

    _guard(run)


@experiments_app.command()
def promote(
    name: NameArg,
    variant: Annotated[str, typer.Argument(help="The variant's label.")],
    store: StoreOpt = None,
) -> None:
    """Make a variant's model version production (through the registry's quality gate)."""

    def run() -> None:
        record = promote_variant(_settings(store, None), name, variant)
        _print(f"production -> {record.version}; experiment {name} promoted")

    _guard(run)
