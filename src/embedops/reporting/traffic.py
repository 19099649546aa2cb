"""The report's sections from the monitoring history: traffic, latency, errors, drift, canary.

Lines of several service instances are put in buckets of one monitoring interval (the
median ``window_s``). In a bucket, rates add up over instances (each instance's own lines
averaged first), error rates are errors over requests, latency percentiles are the
request-weighted mean of the instances' percentiles (an approximation: percentiles do not
add), and drift signals are the mean over instances, with an alert where any instance had
one.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from embedops.reporting.blocks import empty, figure, series_table
from embedops.reporting.data import DRIFT_SIGNALS, ReportData
from embedops.reporting.svg import Series, Threshold, line_chart

Line = dict[str, Any]
Bucket = tuple[float, list[Line]]  # (time, the lines in it)

MONITOR_COMMAND = "embedops serve  (the monitor appends a line every EMBEDOPS_MONITOR_INTERVAL_S)"
PERCENTILES = ("p50", "p95", "p99")
SIGNAL_TITLES = {
    "length_shift": "Input length shift",
    "unknown_token_rate": "Unknown-token rate",
    "centroid_shift": "Embedding centroid shift",
}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def interval(history: Sequence[tuple[float, Line]]) -> float:
    """The monitoring interval of ``history``: the median ``window_s`` (default 60 s)."""
    windows = [_number(line.get("window_s")) for _, line in history]
    return float(statistics.median([w for w in windows if w and w > 0] or [60.0]))


def buckets(history: Sequence[tuple[float, Line]]) -> list[Bucket]:
    """History lines grouped by monitoring interval, in time order."""
    grid = interval(history)
    grouped: dict[int, list[Line]] = defaultdict(list)
    for moment, line in history:
        grouped[math.floor(moment / grid)].append(line)
    return [(key * grid, grouped[key]) for key in sorted(grouped)]


def _rate(lines: Iterable[Line], count: Callable[[Line], float | None]) -> float | None:
    """Per second over instances: each instance's lines averaged, instances added."""
    by_instance: dict[str, list[float]] = defaultdict(list)
    for line in lines:
        value, window = count(line), _number(line.get("window_s")) or 60.0
        if value is not None and window > 0:
            by_instance[str(line.get("instance", ""))].append(value / window)
    if not by_instance:
        return None
    return sum(sum(v) / len(v) for v in by_instance.values())


def _weighted(pairs: Iterable[tuple[float, float | None]]) -> float | None:
    """The mean of values weighted by the first of each pair (1 where it is 0)."""
    total = weight = 0.0
    for w, value in pairs:
        if value is not None:
            total += max(w, 1.0) * value
            weight += max(w, 1.0)
    return total / weight if weight else None


def _series(
    label: str, points: Iterable[tuple[float, float | None]], alerts: Sequence[float] = ()
) -> Series:
    kept = [(x, y) for x, y in points if y is not None]
    flagged = set(alerts)
    return Series(label=label, points=kept, alerts=[(x, y) for x, y in kept if x in flagged])


def _variants(groups: Sequence[Bucket]) -> list[str]:
    labels: dict[str, None] = {}
    for _, lines in groups:
        for line in lines:
            labels.update(dict.fromkeys(_dict(line.get("by_variant"))))
    return list(labels)


def _variant(line: Line, label: str) -> dict[str, Any]:
    return _dict(_dict(line.get("by_variant")).get(label))


def _count(key: str, label: str | None = None) -> Callable[[Line], float | None]:
    """Reads ``key`` of a line (or of one variant's part of it)."""

    def read(line: Line) -> float | None:
        part = line if label is None else _variant(line, label)
        return _number(part.get(key))

    return read


def throughput_series(groups: Sequence[Bucket]) -> list[Series]:
    """Requests a second in all and per variant, and texts a second."""
    counts = [("all requests/s", _count("requests"))]
    counts += [(f"{v} requests/s", _count("requests", v)) for v in _variants(groups)]
    counts.append(("texts/s", _count("texts")))
    out = [_series(name, ((t, _rate(ls, read)) for t, ls in groups)) for name, read in counts]
    return [s for s in out if s.points]


def latency_series(groups: Sequence[Bucket]) -> list[Series]:
    """p50, p95, p99 over all requests, and p95 per variant when there are several."""

    def percentile(lines: list[Line], key: str, label: str | None) -> float | None:
        parts = [li if label is None else _variant(li, label) for li in lines]
        return _weighted(
            (_number(p.get("requests")) or 0.0, _number(_dict(p.get("latency_ms")).get(key)))
            for p in parts
        )

    out = [_series(p, ((t, percentile(ls, p, None)) for t, ls in groups)) for p in PERCENTILES]
    variants = _variants(groups)
    if len(variants) > 1:
        out += [
            _series(f"{v} p95", ((t, percentile(ls, "p95", v)) for t, ls in groups))
            for v in variants
        ]
    return [s for s in out if s.points]


def error_series(groups: Sequence[Bucket]) -> list[Series]:
    """The share of requests that failed, in all and per variant."""

    def share(parts: Iterable[dict[str, Any]]) -> float | None:
        requests = errors = 0.0
        for part in parts:
            requests += _number(part.get("requests")) or 0.0
            errors += _number(part.get("errors")) or 0.0
        return errors / requests if requests else None

    out = [_series("all", ((t, share(ls)) for t, ls in groups))]
    for label in _variants(groups):
        out.append(
            _series(label, ((t, share(_variant(li, label) for li in ls)) for t, ls in groups))
        )
    return [s for s in out if s.points]


def _versions(groups: Sequence[Bucket], key: str) -> list[str]:
    names: dict[str, None] = {}
    for _, lines in groups:
        for line in lines:
            names.update(dict.fromkeys(_dict(line.get(key))))
    return list(names)


def drift_series(groups: Sequence[Bucket], signal: str) -> list[Series]:
    """One drift signal per model version, with alerts where an instance raised one."""
    out: list[Series] = []
    for version in _versions(groups, "drift"):
        points: list[tuple[float, float | None]] = []
        alerts: list[float] = []
        for moment, lines in groups:
            parts = [_dict(_dict(li.get("drift")).get(version)) for li in lines]
            values = [v for p in parts if (v := _number(p.get(signal))) is not None]
            points.append((moment, sum(values) / len(values) if values else None))
            if any(signal in (p.get("alerts") or ()) for p in parts):
                alerts.append(moment)
        out.append(_series(version, points, alerts))
    return [s for s in out if s.points]


def canary_series(groups: Sequence[Bucket]) -> tuple[list[Series], list[Threshold]]:
    """The canary's Spearman per model version (alerts: failed checks) and its thresholds."""
    out: list[Series] = []
    thresholds: dict[float, None] = {}
    for version in _versions(groups, "canary"):
        points: list[tuple[float, float | None]] = []
        failed: list[float] = []
        for moment, lines in groups:
            parts = [_dict(_dict(li.get("canary")).get(version)) for li in lines]
            values = [v for p in parts if (v := _number(p.get("spearman"))) is not None]
            points.append((moment, sum(values) / len(values) if values else None))
            thresholds.update(
                dict.fromkeys(v for p in parts if (v := _number(p.get("threshold"))) is not None)
            )
            if any(p.get("passed") is False for p in parts):
                failed.append(moment)
        out.append(_series(version, points, failed))
    limits = [Threshold("threshold", value) for value in list(thresholds)[-1:]]
    return [s for s in out if s.points], limits


def _chart(
    name: str,
    title: str,
    series: Sequence[Series],
    unit: str,
    caption: str,
    thresholds: Sequence[Threshold] = (),
    *,
    gap: float,
    percent: bool = False,
) -> str:
    svg = line_chart(
        name=name,
        title=title,
        series=series,
        y_label=unit,
        thresholds=thresholds,
        percent=percent,
        gap=gap,
    )
    return figure(svg, caption, series_table(series, unit, percent=percent))


def traffic_section(data: ReportData) -> str:
    """Throughput, latency and errors over time (HTML of the section's body)."""
    if not data.history:
        return empty("No monitoring history in this window.", MONITOR_COMMAND)
    groups, gap = buckets(data.history), 3 * interval(data.history)
    parts = [
        _chart(
            "throughput",
            "Throughput",
            throughput_series(groups),
            "per second",
            "Requests and texts a second, summed over service instances; one line per variant.",
            gap=gap,
        ),
        _chart(
            "latency",
            "Latency",
            latency_series(groups),
            "ms",
            "Request latency percentiles (request-weighted over instances).",
            gap=gap,
        ),
    ]
    errors = error_series(groups)
    if errors:
        parts.append(
            _chart(
                "errors",
                "Error rate",
                errors,
                "share of requests",
                "Failed requests over all requests, per variant.",
                gap=gap,
                percent=True,
            )
        )
    return "".join(parts)


def drift_section(data: ReportData) -> str:
    """Drift signals and the quality canary over time, with their thresholds."""
    groups, gap = buckets(data.history), 3 * interval(data.history)
    parts: list[str] = []
    for signal in DRIFT_SIGNALS:
        series = drift_series(groups, signal)
        if not series:
            continue
        limit = data.drift_thresholds.get(signal)
        title = SIGNAL_TITLES[signal]
        parts.append(
            _chart(
                f"drift-{signal}",
                title,
                series,
                signal.replace("_", " "),
                f"{title} against the baseline window, per model version; red rings: alerts.",
                [Threshold("alert threshold", limit)] if limit is not None else [],
                gap=gap,
                percent=signal == "unknown_token_rate",
            )
        )
    norms = drift_series(groups, "norm_mean")
    if norms:
        parts.append(
            _chart(
                "drift-norm",
                "Embedding norm",
                norms,
                "mean L2 norm",
                "Mean norm of the served embeddings, per model version.",
                gap=gap,
            )
        )
    canary, limits = canary_series(groups)
    if canary:
        parts.append(
            _chart(
                "canary",
                "Quality canary",
                canary,
                "Spearman",
                "Spearman correlation on held-out pairs; red rings: failed checks.",
                limits,
                gap=gap,
            )
        )
    if not parts:
        return empty("No drift or canary measurements in this window.", MONITOR_COMMAND)
    return "".join(parts)


def summary(data: ReportData) -> list[tuple[str, str]]:
    """Headline numbers of the window: requests, error rate, latest p95."""
    if not data.history:
        return []
    requests = sum(_number(line.get("requests")) or 0.0 for _, line in data.history)
    errors = sum(_number(line.get("errors")) or 0.0 for _, line in data.history)
    out = [("requests", f"{requests:,.0f}")]
    if requests:
        out.append(("error rate", f"{errors / requests:.2%}"))
    latency = latency_series(buckets(data.history[-50:]))
    p95 = next((s for s in latency if s.label == "p95"), None)
    if p95 is not None:
        out.append(("latest p95", f"{p95.points[-1][1]:.1f} ms"))
    return out
