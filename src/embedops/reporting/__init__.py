"""The HTML report (``embedops report``): one self-contained file with plots of the store's
monitoring history, experiments, runs and models.

``load_report_data`` reads a store (``data.py``); ``render_report`` makes the page
(``html.py``) from sections (``traffic.py``, ``experiments.py``, ``runs.py``) built from SVG
chart primitives (``svg.py``) and HTML blocks (``blocks.py``); ``write_report`` does both
and writes the file atomically.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from embedops.errors import ConfigError
from embedops.reporting.data import ReportData, load_report_data
from embedops.reporting.html import render_report

__all__ = ["ReportData", "load_report_data", "render_report", "write_report"]


def write_report(
    store: Path,
    output: Path,
    *,
    since_hours: float | None = None,
    drift_thresholds: dict[str, float] | None = None,
) -> ReportData:
    """Write the report of ``store`` to ``output`` (temporary file, then rename) and return
    what it shows.

    Raises:
        ConfigError: ``output`` cannot be written (a folder, no permission, no space).
    """
    data = load_report_data(store, since_hours=since_hours, drift_thresholds=drift_thresholds)
    page = render_report(data)
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(page, encoding="utf-8")
        temp.replace(output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write the report to {output} ({exc.strerror or exc}); "
            "choose a file in a folder you can write"
        ) from exc
    return data
