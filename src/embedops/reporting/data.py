"""What the report shows, read from a store: monitoring history, experiments, runs, models.

Every loader is tolerant: a missing file is an empty section, and a line or file that cannot
be read is skipped and counted in ``ReportData.notes`` (the report says so), never an error
that loses the whole report.

- Monitoring history: ``<store>/.monitoring/history.jsonl``, one JSON object a line (the
  service's monitor writes it; format in ``docs/monitoring.md``), read with
  ``embedops.monitoring.history.read_history_lines``.
- Experiments: the names in ``<store>/experiments.json``, each reported by
  ``embedops.experiments.report.experiment_report(store, name)``, imported lazily: without
  that module the report has no experiments.
- Runs: the run logs ``<store>/.runs/<collection>/*.json`` (``embedops.runlog``) and the
  published versions of ``<store>/.collections/*.json`` (``embedops.catalog``).
- Models: ``<store>/registry.json`` (``embedops.registry``).
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops.errors import EmbedopsError, StoreError
from embedops.monitoring.history import parse_time, read_history_lines

logger = logging.getLogger(__name__)

HISTORY_FILE = Path(".monitoring") / "history.jsonl"
DRIFT_SIGNALS = ("length_shift", "unknown_token_rate", "centroid_shift")
DEFAULT_DRIFT_THRESHOLDS = {"length_shift": 0.2, "unknown_token_rate": 0.05, "centroid_shift": 0.1}
RUN_COUNTS = ("inserted", "updated", "metadata_updated", "unchanged", "deleted", "quarantined")


@dataclass(frozen=True)
class RunRecord:
    """One run of a collection, as its run log last described it.

    Attributes:
        collection: the collection.
        started: Unix seconds.
        state: ``running``, ``finished``, ``interrupted``, ``failed`` or ``killed``.
        model_version: the model version that embedded.
        counts: rows by outcome (``RUN_COUNTS``) and ``read``.
        seconds: how long it ran.
        rate: rows read a second.
        error: the error of a failed run.
    """

    collection: str
    started: float
    state: str
    model_version: str
    counts: dict[str, int]
    seconds: float
    rate: float
    error: str | None


@dataclass(frozen=True)
class PublishedRow:
    """One published version of a collection (``embedops history``)."""

    collection: str
    number: int
    model_version: str
    version: int
    published_at: str
    action: str
    note: str
    current: bool


@dataclass(frozen=True)
class ModelRow:
    """One registered model version and its gate verdict."""

    version: str
    backend: str
    precision: str
    dim: int
    added_at: str
    stsb: float | None
    gate: str
    stsb_min: float | None
    verdict: str  # passed, failed, not evaluated
    failures: tuple[str, ...]
    aliases: tuple[str, ...]


@dataclass
class ReportData:
    """Everything the report shows (see the module)."""

    store: str
    generated: float
    since_hours: float | None
    history: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    published: list[PublishedRow] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)
    drift_thresholds: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_DRIFT_THRESHOLDS)
    )
    notes: list[str] = field(default_factory=list)


def experiment_names(store: Path) -> list[str]:
    """The experiments defined in ``<store>/experiments.json`` (file order)."""
    path = store / "experiments.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path} ({exc})") from exc
    entries = raw.get("experiments", raw) if isinstance(raw, dict) else raw
    if isinstance(entries, dict):
        return [str(name) for name in entries if name != "format"]
    if isinstance(entries, list):
        return [str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e]
    return []


def load_experiments(store: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Each experiment's report (the experiments module's dict), or none without it."""
    try:
        names = experiment_names(store)
    except StoreError as exc:
        notes.append(str(exc))
        return []
    if not names:
        return []
    try:
        module = importlib.import_module("embedops.experiments.report")
    except ImportError:
        notes.append("experiments are defined, but this embedops cannot report them")
        return []
    reports: list[dict[str, Any]] = []
    for name in names:
        try:
            report = module.experiment_report(store, name)
        except (EmbedopsError, OSError, ValueError, KeyError) as exc:
            notes.append(f"experiment {name!r} could not be reported: {exc}")
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports


def _run_files(store: Path) -> Iterator[tuple[str, Path]]:
    folder = store / ".runs"
    if not folder.is_dir():
        return
    for collection in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(collection.glob("*.json")):
            yield collection.name, path


def load_runs(store: Path, notes: list[str], *, since: float | None = None) -> list[RunRecord]:
    """The runs in the run logs (oldest first) that started at or after ``since``."""
    from embedops.state import pid_alive

    host = socket.gethostname()
    runs: list[RunRecord] = []
    unreadable = 0
    for collection, path in _run_files(store):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            started = parse_time(record["started"])
            report = record.get("report") or {}
            state = str(record["state"])
            if state == "running" and record.get("host") == host:
                state = state if pid_alive(int(record["pid"])) else "killed"
            counts = {k: int(report.get(k) or 0) for k in ("read", *RUN_COUNTS)}
            seconds = float(report.get("seconds") or 0.0)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
            continue
        if started is None or (since is not None and started < since):
            continue
        rate = float(report.get("rows_per_second") or 0.0)
        if not rate and seconds > 0:
            rate = counts["read"] / seconds
        runs.append(
            RunRecord(
                collection=collection,
                started=started,
                state=state,
                model_version=str(report.get("model_version") or ""),
                counts=counts,
                seconds=seconds,
                rate=rate,
                error=record.get("error"),
            )
        )
    if unreadable:
        notes.append(f"{unreadable} run log file(s) could not be read and are left out")
    runs.sort(key=lambda run: run.started)
    return runs


def load_published(store: Path, notes: list[str]) -> list[PublishedRow]:
    """Every published version of every collection in the store's catalog."""
    from embedops.catalog import Catalog

    catalog = Catalog(store)
    rows: list[PublishedRow] = []
    if not catalog.folder.is_dir():
        return rows
    for path in sorted(catalog.folder.glob("*.json")):
        collection = path.stem
        try:
            history = catalog.history(collection)
            current = catalog.published(collection)
        except (EmbedopsError, TypeError) as exc:
            notes.append(f"catalog of {collection!r} left out: {exc}")
            continue
        rows.extend(
            PublishedRow(
                collection=collection,
                number=entry.number,
                model_version=entry.model_version,
                version=entry.version,
                published_at=entry.published_at,
                action=entry.action,
                note=entry.note,
                current=current is not None and current.number == entry.number,
            )
            for entry in history
        )
    return rows


def load_models(store: Path, notes: list[str]) -> list[ModelRow]:
    """The registered model versions with their aliases and gate verdicts."""
    if not (store / "registry.json").is_file():
        return []
    from embedops.registry import ModelRegistry

    registry = ModelRegistry(store=store)
    try:
        versions = registry.versions()
        aliases = registry.aliases()
    except EmbedopsError as exc:
        notes.append(str(exc))
        return []
    rows: list[ModelRow] = []
    for record in versions:
        evaluation = record.evaluation
        failures: tuple[str, ...] = ()
        if evaluation is None:
            verdict, stsb, gate, stsb_min = "not evaluated", None, "", None
        else:
            verdict = "passed" if evaluation.passed else "failed"
            stsb, gate = evaluation.stsb_spearman, evaluation.gate.name
            stsb_min, failures = evaluation.gate.stsb_min, evaluation.failures
        rows.append(
            ModelRow(
                version=record.version,
                backend=record.backend,
                precision=record.precision,
                dim=record.dim,
                added_at=record.added_at,
                stsb=stsb,
                gate=gate,
                stsb_min=stsb_min,
                verdict=verdict,
                failures=tuple(failures),
                aliases=tuple(
                    sorted(a.name for a in aliases.values() if a.version == record.version)
                ),
            )
        )
    return rows


def load_report_data(
    store: Path,
    *,
    since_hours: float | None = None,
    now: float | None = None,
    drift_thresholds: dict[str, float] | None = None,
) -> ReportData:
    """Everything the report of ``store`` shows, from the last ``since_hours`` hours (the
    monitoring history and the runs; experiments and models are shown whole)."""
    store = Path(store)
    generated = datetime.now(UTC).timestamp() if now is None else now
    since = generated - since_hours * 3600 if since_hours is not None else None
    data = ReportData(store=str(store), generated=generated, since_hours=since_hours)
    if drift_thresholds:
        data.drift_thresholds.update(drift_thresholds)
    data.history, skipped = read_history_lines(store / HISTORY_FILE, since)
    if skipped:
        data.notes.append(f"{skipped} line(s) of {HISTORY_FILE} could not be read and are left out")
    data.experiments = load_experiments(store, data.notes)
    data.runs = load_runs(store, data.notes, since=since)
    data.published = load_published(store, data.notes)
    data.models = load_models(store, data.notes)
    for note in data.notes:
        logger.info("report: %s", note)
    return data
