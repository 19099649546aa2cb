"""The report's run history (run logs and published versions) and model registry sections."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from embedops.reporting.blocks import Raw, badge, empty, figure, series_table, table, utc
from embedops.reporting.data import RUN_COUNTS, ModelRow, PublishedRow, ReportData, RunRecord
from embedops.reporting.svg import (
    Bar,
    Interval,
    Series,
    fmt,
    interval_chart,
    line_chart,
    stacked_bars,
)

MAX_BARS = 40  # runs drawn as bars (the newest); the table lists MAX_ROWS
MAX_ROWS = 200
RUN_COMMAND = "embedops embed FILE --collection NAME --id-field ID --text-field TEXT"
MODEL_COMMAND = "embedops models add MODEL, then embedops models evaluate VERSION"
VERDICT_COLOURS = {"passed": "#1e8449", "failed": "#c0392b"}
STATE_KINDS = {"finished": "good", "running": "info", "interrupted": "warn"}


def _state(state: str) -> Raw:
    return badge(state, STATE_KINDS.get(state, "bad"))


def run_bars(runs: Sequence[RunRecord]) -> list[Bar]:
    """The newest ``MAX_BARS`` runs as bars of rows by outcome, oldest first."""
    return [
        Bar(
            label=f"{run.collection} · {datetime.fromtimestamp(run.started, UTC):%m-%d %H:%M:%S}",
            segments=[(name, float(run.counts.get(name, 0))) for name in RUN_COUNTS],
            status=run.state,
            note=f"{fmt(run.rate)} rows/s · {run.state}",
        )
        for run in runs[-MAX_BARS:]
    ]


def rate_series(runs: Sequence[RunRecord]) -> list[Series]:
    """Rows a second of each run over time, a line per collection; failed runs marked."""
    by_collection: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_collection[run.collection].append(run)
    return [
        Series(
            label=collection,
            points=[(r.started, r.rate) for r in items],
            alerts=[(r.started, r.rate) for r in items if r.state in ("failed", "killed")],
            markers=True,
        )
        for collection, items in by_collection.items()
    ]


def _run_table(runs: Sequence[RunRecord]) -> str:
    rows: list[list[object]] = [
        [
            run.collection,
            utc(run.started),
            _state(run.state),
            run.model_version,
            run.counts["read"],
            *[run.counts[name] for name in RUN_COUNTS],
            round(run.seconds, 2),
            round(run.rate, 1),
            run.error,
        ]
        for run in reversed(runs[-MAX_ROWS:])
    ]
    headers = [
        "collection",
        "started",
        "state",
        "model version",
        "read",
        *RUN_COUNTS,
        "seconds",
        "rows/s",
        "error",
    ]
    return table(headers, rows, caption="newest first")


def _published_table(rows: Sequence[PublishedRow]) -> str:
    return table(
        [
            "collection",
            "#",
            "action",
            "model version",
            "table version",
            "published",
            "note",
            "readers see",
        ],
        [
            [
                r.collection,
                r.number,
                r.action,
                r.model_version,
                r.version,
                r.published_at,
                r.note,
                badge("published", "good") if r.current else "",
            ]
            for r in rows
        ],
        caption="published versions (embedops history COLLECTION)",
    )


def runs_section(data: ReportData) -> str:
    """Runs as stacked bars and rates over time, with the tables of runs and versions."""
    if not data.runs and not data.published:
        return empty("No runs in this store (or in this window).", RUN_COMMAND)
    parts: list[str] = []
    if data.runs:
        bars = run_bars(data.runs)
        svg = stacked_bars(
            name="runs",
            title="Runs: rows by outcome",
            bars=bars,
            categories=RUN_COUNTS,
            x_label="rows",
        )
        shown = (
            f"the newest {len(bars)} of {len(data.runs)}" if len(bars) < len(data.runs) else "each"
        )
        caption = f"Rows of {shown} run(s) by outcome; the square's colour is the run's state."
        fallback = table(
            ["run", "state", *RUN_COUNTS],
            [[b.label, b.status, *[int(v) for _, v in b.segments]] for b in bars],
        )
        parts.append(figure(svg, caption, fallback))
        series = rate_series(data.runs)
        svg = line_chart(name="run-rate", title="Run rate", series=series, y_label="rows/s")
        caption = "Rows read a second by each run, a line per collection; red rings: failed."
        parts.append(figure(svg, caption, series_table(series, "rows/s")))
        parts.append(_run_table(data.runs))
    if data.published:
        parts.append(_published_table(data.published))
    return "".join(parts)


def _model_rows(models: Sequence[ModelRow]) -> list[list[object]]:
    return [
        [
            m.version,
            ", ".join(m.aliases),
            m.backend,
            m.precision,
            m.dim,
            m.stsb,
            f"{m.gate} (STS-B ≥ {m.stsb_min:g})" if m.stsb_min is not None else m.gate,
            badge(m.verdict, {"passed": "good", "failed": "bad"}.get(m.verdict, "warn")),
            "; ".join(m.failures),
        ]
        for m in models
    ]


def models_section(data: ReportData) -> str:
    """Registered model versions: STS-B against their gates, aliases, verdicts."""
    if not data.models:
        return empty("No model versions registered in this store.", MODEL_COMMAND)
    parts: list[str] = []
    scored = [m for m in data.models if m.stsb is not None]
    if scored:
        rows = [
            Interval(
                label=m.version,
                value=m.stsb,
                mid=m.stsb_min,
                colour=VERDICT_COLOURS.get(m.verdict),
                note=f"{fmt(m.stsb or 0.0)} {m.verdict}"
                + (f" · {', '.join(m.aliases)}" if m.aliases else ""),
            )
            for m in scored
        ]
        svg = interval_chart(
            name="models-stsb",
            title="STS-B Spearman by model version",
            rows=rows,
            x_label="STS-B dev Spearman (tick: the gate's minimum)",
            kind="range",
        )
        caption = "Quality of each evaluated version; the tick is its gate's minimum."
        parts.append(
            figure(svg, caption, table(["version", "STS-B"], [[m.version, m.stsb] for m in scored]))
        )
    headers = [
        "version",
        "aliases",
        "backend",
        "precision",
        "dim",
        "STS-B",
        "gate",
        "verdict",
        "failures",
    ]
    parts.append(table(headers, _model_rows(data.models)))
    return "".join(parts)


def summary(data: ReportData) -> list[tuple[str, str]]:
    """Headline: runs, failed runs, the production version."""
    out: list[tuple[str, str]] = []
    if data.runs:
        bad = sum(1 for r in data.runs if r.state in ("failed", "killed"))
        out.append(("runs", f"{len(data.runs)} ({bad} failed)" if bad else str(len(data.runs))))
    production = next((m.version for m in data.models if "production" in m.aliases), None)
    if production:
        out.append(("production", production))
    return out
