"""``embedops models``: the model registry on the command line (see ``embedops.registry``).

``list`` and ``show`` read; ``add``, ``evaluate``, ``promote`` and ``alias`` change
``<store>/registry.json``. Errors are one line and an exit code, as in ``embedops.cli``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedops.cli import BackendOpt, JsonOpt, StoreOpt, _guard, _settings, out
from embedops.registry import PRODUCTION, ModelRegistry, ModelVersion

models_app = typer.Typer(
    help="The model registry: versions, quality scores and aliases (production, candidate).",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="A version string or an alias (e.g. production).")]


def _registry(store: str | None) -> ModelRegistry:
    return ModelRegistry(store=_settings(store, None).store)


def _print(text: str) -> None:
    out.print(text, highlight=False, markup=False)


def _verdict(record: ModelVersion) -> str:
    if record.evaluation is None:
        return "not evaluated"
    return "passed" if record.evaluation.passed else "failed"


@models_app.command("list")
def list_(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Registered model versions, their aliases and gate verdicts."""

    def run() -> None:
        registry = _registry(store)
        versions = registry.versions()
        aliases = registry.aliases()
        if json_out:
            out.print_json(
                json.dumps(
                    {
                        "versions": [v.to_dict() for v in versions],
                        "aliases": {a.name: a.version for a in aliases.values()},
                    }
                )
            )
            return
        table = Table(title=f"models in {registry.path}")
        table.add_column("version", overflow="fold")
        for column in ("backend", "dim", "aliases", "STS-B", "gate"):
            table.add_column(column)
        for v in versions:
            names = ", ".join(a.name for a in aliases.values() if a.version == v.version)
            score = v.evaluation.stsb_spearman if v.evaluation is not None else None
            table.add_row(
                v.version,
                v.backend,
                str(v.dim),
                names,
                "" if score is None else f"{score:.2f}",
                _verdict(v),
            )
        out.print(table)

    _guard(run)


@models_app.command()
def show(ref: RefArg, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Everything recorded about one version."""

    def run() -> None:
        registry = _registry(store)
        record = registry.get(ref)
        data = record.to_dict()
        data["aliases"] = sorted(
            a.name for a in registry.aliases().values() if a.version == record.version
        )
        if json_out:
            out.print_json(json.dumps(data))
            return
        evaluation = data.pop("evaluation")
        for key, value in data.items():
            _print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
        if evaluation is None:
            _print("evaluation: none (run: embedops models evaluate VERSION --stsb FILE)")
            return
        for key, value in evaluation.items():
            _print(f"evaluation.{key}: {value}")

    _guard(run)


@models_app.command()
def add(
    model: Annotated[str, typer.Argument(help="Model alias, directory or cached HF id.")],
    backend: BackendOpt = None,
    store: StoreOpt = None,
) -> None:
    """Register a model run by a backend (its weights are hashed, not loaded)."""

    def run() -> None:
        settings = _settings(store, None, backend)
        registry = ModelRegistry(store=settings.store)
        record = registry.add(model, backend=settings.backend, cache_dir=settings.cache_dir)
        _print(f"registered {record.version} ({record.digest}) in {registry.path}")

    _guard(run)


@models_app.command()
def evaluate(
    ref: RefArg,
    stsb: Annotated[
        Path,
        typer.Option("--stsb", envvar="EMBEDOPS_STSB", help="STS-B dev file (stsb-dev.tsv)."),
    ],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a version on STS-B dev and against the torch reference; record its gate verdict.

    A failed gate is recorded and printed, not an error: promote refuses the version.
    """

    def run() -> None:
        settings = _settings(store, None)
        registry = ModelRegistry(store=settings.store)
        record = registry.evaluate(ref, stsb=stsb, cache_dir=settings.cache_dir)
        evaluation = record.evaluation
        assert evaluation is not None  # evaluate() records it
        if json_out:
            out.print_json(json.dumps({"version": record.version, **evaluation.to_dict()}))
            return
        verdict = "passed" if evaluation.passed else "FAILED: " + "; ".join(evaluation.failures)
        _print(f"{record.version}: {evaluation.figures()}; {verdict}")

    _guard(run)


@models_app.command()
def promote(
    ref: RefArg,
    alias: Annotated[str, typer.Option("--alias", help="The alias to point at it.")] = PRODUCTION,
    store: StoreOpt = None,
) -> None:
    """Point an alias (production) at a version that passed its quality gate."""

    def run() -> None:
        settings = _settings(store, None)
        registry = ModelRegistry(store=settings.store)
        record = registry.promote(ref, alias=alias, cache_dir=settings.cache_dir)
        _print(f"{alias} -> {record.version}")

    _guard(run)


@models_app.command("alias")
def alias_(
    name: Annotated[str, typer.Argument(help="Alias name, e.g. candidate.")],
    ref: RefArg,
    store: StoreOpt = None,
) -> None:
    """Point an alias at a version (production: use promote, which checks the gate)."""

    def run() -> None:
        record = _registry(store).set_alias(name, ref)
        _print(f"{name} -> {record.version}")

    _guard(run)
