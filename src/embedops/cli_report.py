"""``embedops report``: a self-contained HTML report of a store (see ``embedops.reporting``).

Registered by one import at the end of ``embedops.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedops.cli import StoreOpt, _guard, _settings, app, err, out
from embedops.errors import ConfigError
from embedops.reporting.data import DEFAULT_DRIFT_THRESHOLDS


def _drift_thresholds(settings: object) -> dict[str, float]:
    """The drift thresholds of the settings (``drift_<signal>_max``), where they exist."""
    names = {
        "length_shift": "drift_length_shift_max",
        "unknown_token_rate": "drift_unknown_rate_max",
        "centroid_shift": "drift_centroid_shift_max",
    }
    return {
        signal: float(getattr(settings, name, DEFAULT_DRIFT_THRESHOLDS[signal]))
        for signal, name in names.items()
    }


@app.command()
def report(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML file to write.", dir_okay=False)
    ],
    store: StoreOpt = None,
    since: Annotated[
        float | None,
        typer.Option(
            "--since", help="Only monitoring and runs of the last HOURS hours (default: all)."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report (plots of traffic, latency, drift, experiments,
    runs and models); it opens offline."""

    def run() -> None:
        if since is not None and not since > 0:
            raise ConfigError(f"--since must be a number of hours above 0 (got {since})")
        from embedops.reporting import write_report

        settings = _settings(store, None)
        data = write_report(
            settings.store,
            output,
            since_hours=since,
            drift_thresholds=_drift_thresholds(settings),
        )
        for note in data.notes:
            err.print(f"note: {note}", highlight=False, markup=False)
        size = output.stat().st_size
        counts = (
            f"{len(data.history)} monitoring lines, {len(data.experiments)} experiments, "
            f"{len(data.runs)} runs, {len(data.models)} model versions"
        )
        out.print(
            f"report: {output} ({size / 1024:.0f} KiB; {counts})", highlight=False, markup=False
        )

    _guard(run)
