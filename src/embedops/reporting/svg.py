"""Hand-written SVG charts for the HTML report: lines over time, intervals, stacked bars.

No plotting library and nothing fetched: each function returns one ``<svg>`` element as text,
to be inlined in the page. Every chart carries ``data-plot`` (its name), a ``<title>`` and a
``<desc>``; each line is a ``<g class="series" data-series=... data-points=N>``, each row of
an interval chart a ``<g class="row" data-label=...>`` with ``<line class="whisker">`` where it
has an interval, and each bar a ``<g class="bar">`` of ``<rect class="segment">``. Tests read
these marks back to check that a chart shows what it was given.

Long series are thinned (``decimate``) to at most ``MAX_POINTS`` points a line, keeping each
bucket's lowest and highest value so that spikes survive. All text is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_POINTS = 240
WIDTH = 760
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#444444",
    "#8C564B",
)
ALERT = "#C0392B"
STATUS_COLOURS = {
    "finished": "#009E73",
    "running": "#0072B2",
    "interrupted": "#E69F00",
    "failed": "#C0392B",
    "killed": "#C0392B",
}
_TIME_STEPS: tuple[int, ...] = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600)
_TIME_STEPS += (12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)
_CHAR_WIDTH = 6.4  # average width of a 11px sans-serif character, for layout


def esc(text: object) -> str:
    """``text`` escaped for HTML and SVG text and attribute values."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Series:
    """One line of a line chart.

    Attributes:
        label: its legend entry.
        points: ``(x, y)`` pairs in x order (x: Unix seconds on a time axis).
        alerts: points to mark as alerts (drawn as red rings).
        markers: draw a dot at each point (discrete events, such as runs).
    """

    label: str
    points: Sequence[tuple[float, float]]
    alerts: Sequence[tuple[float, float]] = ()
    markers: bool = False


@dataclass(frozen=True)
class Threshold:
    """A horizontal reference line (an alert threshold, a gate)."""

    label: str
    value: float


@dataclass(frozen=True)
class Interval:
    """One row of an interval chart: an estimate and its interval (or range).

    Attributes:
        label: the row's name (a variant).
        value: the estimate (``None``: no data, the row says so).
        low, high: the interval's ends (``None``: no interval).
        mid: a tick inside the interval (latency: p95 between p50 and p99).
        note: text shown at the row's right end (the default: value and interval).
        colour: the dot's colour (default: the palette's, by row).
    """

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    mid: float | None = None
    note: str | None = None
    colour: str | None = None


@dataclass(frozen=True)
class Bar:
    """One stacked bar: named segments, a status and a label."""

    label: str
    segments: Sequence[tuple[str, float]]
    status: str = ""
    note: str = ""


@dataclass
class _Frame:
    """The plot area of a chart inside its ``WIDTH x height`` box."""

    left: float
    top: float
    right: float
    bottom: float
    parts: list[str] = field(default_factory=list)

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def fmt(value: float, *, percent: bool = False) -> str:
    """A short human number: three significant digits, k and M for large ones."""
    if percent:
        return f"{value * 100:.3g}%"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low..high`` (steps of 1, 2 or 5 times a power of 10)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def time_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Tick times (Unix seconds) on round UTC minutes, hours or days inside ``low..high``."""
    span = max(high - low, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    first = math.ceil(low / step) * step
    return [float(t) for t in range(int(first), int(high) + 1, step)]


def time_label(seconds: float, span: float) -> str:
    """``HH:MM`` (or ``MM-DD HH:MM`` over more than a day) of a Unix time, in UTC."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if span > 86400:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M:%S" if span < 120 else "%H:%M")


def decimate(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` of ``points``: per bucket, the lowest and highest point, in order."""
    if len(points) <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    size = math.ceil(len(points) / buckets)
    kept: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        lowest = min(range(len(bucket)), key=lambda i: bucket[i][1])
        highest = max(range(len(bucket)), key=lambda i: bucket[i][1])
        kept.extend(bucket[i] for i in sorted({lowest, highest}))
    return kept


def thinned_gap(count: int, limit: int, gap: float | None) -> float | None:
    """The gap that still means "no data" after ``count`` points are thinned to ``limit``
    (``decimate`` keeps two points of each bucket, so kept points lie up to two buckets apart)."""
    if gap is None or count <= limit:
        return gap
    return gap * 2 * math.ceil(count / max(1, limit // 2))


def split_at_gaps(
    points: Sequence[tuple[float, float]], gap: float | None
) -> list[list[tuple[float, float]]]:
    """``points`` cut where consecutive x values are more than ``gap`` apart."""
    pieces: list[list[tuple[float, float]]] = []
    for point in points:
        if not pieces or (gap is not None and point[0] - pieces[-1][-1][0] > gap):
            pieces.append([])
        pieces[-1].append(point)
    return pieces


def _open(name: str, title: str, desc: str, height: float, attrs: Mapping[str, str]) -> str:
    extra = "".join(f' {key}="{esc(value)}"' for key, value in attrs.items())
    return (
        f'<svg class="chart" data-plot="{esc(name)}"{extra} '
        f'viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
        f'role="img"><title>{esc(title)}</title><desc>{esc(desc)}</desc>'
    )


def _legend(items: Sequence[tuple[str, str, bool]], top: float) -> tuple[str, float]:
    """Legend entries ``(label, colour, dashed)`` wrapped in rows; the SVG and its height."""
    parts: list[str] = []
    x, y = 64.0, top + 10
    for label, colour, dashed in items:
        width = 26 + min(len(label), 40) * _CHAR_WIDTH + 14
        if x + width > WIDTH - 8 and x > 64:
            x, y = 64.0, y + 16
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<g class="legend-item"><line x1="{x:.0f}" y1="{y - 4:.0f}" x2="{x + 18:.0f}" '
            f'y2="{y - 4:.0f}" stroke="{colour}" stroke-width="3"{dash}/>'
            f'<text x="{x + 24:.0f}" y="{y:.0f}">{esc(_short(label, 40))}</text></g>'
        )
        x += width
    return "".join(parts), (y - top + 8 if items else 0.0)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _y_axis(frame: _Frame, ticks: Sequence[float], label: str, percent: bool) -> None:
    low, high = ticks[0], ticks[-1]
    for tick in ticks:
        y = frame.bottom - (tick - low) / (high - low) * frame.height
        frame.parts.append(
            f'<line class="grid" x1="{frame.left:.0f}" y1="{y:.1f}" x2="{frame.right:.0f}" '
            f'y2="{y:.1f}"/><text class="tick" x="{frame.left - 6:.0f}" y="{y + 4:.1f}" '
            f'text-anchor="end">{esc(fmt(tick, percent=percent))}</text>'
        )
    middle = (frame.top + frame.bottom) / 2
    frame.parts.append(
        f'<text class="axis-label" transform="translate(14 {middle:.0f}) rotate(-90)" '
        f'text-anchor="middle">{esc(label)}</text>'
    )


def line_chart(
    *,
    name: str,
    title: str,
    series: Sequence[Series],
    y_label: str,
    thresholds: Sequence[Threshold] = (),
    percent: bool = False,
    max_points: int = MAX_POINTS,
    gap: float | None = None,
    attrs: Mapping[str, str] | None = None,
) -> str:
    """Lines over time (x: Unix seconds, UTC), one per series, with threshold lines.

    Args:
        name: the ``data-plot`` value.
        title: the chart's title (also its SVG ``<title>``).
        series: the lines; points beyond ``max_points`` a line are thinned.
        y_label: the y axis title, with its unit (``requests/s``, ``ms``).
        thresholds: dashed red reference lines.
        percent: y values are shares (0-1) shown as percentages.
        gap: a line breaks where two points are further apart than this (no data between).
        attrs: extra attributes of the ``<svg>`` element.
    """
    shown = [(s, decimate(s.points, max_points)) for s in series]
    xs = [x for _, points in shown for x, _ in points]
    ys = [y for _, points in shown for _, y in points] + [t.value for t in thresholds]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 60.0)
    if x_high - x_low < 1:
        x_low, x_high = x_low - 30, x_high + 30
    y_ticks = nice_ticks(min([0.0, *ys]), max(ys) if ys else 1.0)
    legend_items = [(s.label, PALETTE[i % len(PALETTE)], False) for i, s in enumerate(series)]
    legend_items += [
        (f"{t.label} ({fmt(t.value, percent=percent)})", ALERT, True) for t in thresholds
    ]
    legend, legend_height = _legend(legend_items, 4)
    height = 230 + legend_height
    frame = _Frame(left=64, top=12 + legend_height, right=WIDTH - 16, bottom=height - 40)
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return frame.left + (x - x_low) / (x_high - x_low) * frame.width

    def py(y: float) -> float:
        return frame.bottom - (y - y_low) / (y_high - y_low) * frame.height

    _y_axis(frame, y_ticks, y_label, percent)
    span = x_high - x_low
    for tick in time_ticks(x_low, x_high):
        frame.parts.append(
            f'<line class="tick-mark" x1="{px(tick):.1f}" y1="{frame.bottom:.0f}" '
            f'x2="{px(tick):.1f}" y2="{frame.bottom + 4:.0f}"/><text class="tick" '
            f'x="{px(tick):.1f}" y="{frame.bottom + 16:.0f}" text-anchor="middle">'
            f"{esc(time_label(tick, span))}</text>"
        )
    frame.parts.append(
        f'<line class="axis" x1="{frame.left}" y1="{frame.bottom}" x2="{frame.right}" '
        f'y2="{frame.bottom}"/><text class="axis-label" x="{(frame.left + frame.right) / 2:.0f}" '
        f'y="{frame.bottom + 32:.0f}" text-anchor="middle">time (UTC)</text>'
    )
    for threshold in thresholds:
        frame.parts.append(
            f'<line class="threshold" data-value="{threshold.value:g}" x1="{frame.left}" '
            f'y1="{py(threshold.value):.1f}" x2="{frame.right}" y2="{py(threshold.value):.1f}" '
            f'stroke="{ALERT}" stroke-dasharray="5 3"><title>{esc(threshold.label)} '
            f"{esc(fmt(threshold.value, percent=percent))}</title></line>"
        )
    for index, (line, points) in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        body = []
        for piece in split_at_gaps(points, thinned_gap(len(line.points), max_points, gap)):
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in piece)
            body.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            if len(piece) == 1 and not line.markers:
                x, y = piece[0]
                body.append(
                    f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" '
                    f'fill="{colour}"/>'
                )
        if line.markers:
            body += [
                f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                f"<title>{esc(line.label)}: {esc(fmt(y, percent=percent))}</title></circle>"
                for x, y in points
            ]
        body += [
            f'<circle class="alert" cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="none" '
            f'stroke="{ALERT}" stroke-width="2"><title>alert: {esc(line.label)} '
            f"{esc(fmt(y, percent=percent))}</title></circle>"
            for x, y in decimate(line.alerts, max_points)
        ]
        frame.parts.append(
            f'<g class="series" data-series="{esc(line.label)}" data-points="{len(points)}">'
            + "".join(body)
            + "</g>"
        )
    desc = f"{title}: {len(series)} series over {fmt(span / 3600)} hours"
    return _open(name, title, desc, height, attrs or {}) + legend + "".join(frame.parts) + "</svg>"


def interval_chart(
    *,
    name: str,
    title: str,
    rows: Sequence[Interval],
    x_label: str,
    kind: str = "ci",
    percent: bool = False,
    attrs: Mapping[str, str] | None = None,
) -> str:
    """One row per variant: a dot at the estimate and a whisker over its interval.

    ``kind`` is ``ci`` (whiskers are 95% intervals, ``class="whisker"``) or ``range``
    (whiskers span percentiles, ``class="range"``, with a tick at ``mid``).
    """
    ends = [v for r in rows for v in (r.value, r.low, r.high, r.mid) if v is not None]
    ticks = nice_ticks(min([0.0, *ends]), max(ends) if ends else 1.0)
    label_width = min(180.0, 16 + max((len(r.label) for r in rows), default=4) * _CHAR_WIDTH)
    height = 56 + 30 * len(rows)
    frame = _Frame(left=label_width, top=10, right=WIDTH - 170, bottom=height - 40)
    low, high = ticks[0], ticks[-1]

    def px(x: float) -> float:
        return frame.left + (x - low) / (high - low) * frame.width

    for tick in ticks:
        frame.parts.append(
            f'<line class="grid" x1="{px(tick):.1f}" y1="{frame.top}" x2="{px(tick):.1f}" '
            f'y2="{frame.bottom}"/><text class="tick" x="{px(tick):.1f}" '
            f'y="{frame.bottom + 16:.0f}" text-anchor="middle">'
            f"{esc(fmt(tick, percent=percent))}</text>"
        )
    frame.parts.append(
        f'<text class="axis-label" x="{(frame.left + frame.right) / 2:.0f}" '
        f'y="{frame.bottom + 32:.0f}" text-anchor="middle">{esc(x_label)}</text>'
    )
    mark = "whisker" if kind == "ci" else "range"
    for index, row in enumerate(rows):
        y = frame.top + 20 + 30 * index
        colour = row.colour or PALETTE[index % len(PALETTE)]
        body = [
            f'<text class="row-label" x="{frame.left - 8:.0f}" y="{y + 4:.0f}" '
            f'text-anchor="end">{esc(_short(row.label, 26))}<title>{esc(row.label)}</title></text>'
        ]
        if row.low is not None and row.high is not None:
            body.append(
                f'<line class="{mark}" x1="{px(row.low):.1f}" y1="{y}" x2="{px(row.high):.1f}" '
                f'y2="{y}" stroke="{colour}" stroke-width="2"/>'
                + "".join(
                    f'<line class="cap" x1="{px(end):.1f}" y1="{y - 6}" x2="{px(end):.1f}" '
                    f'y2="{y + 6}" stroke="{colour}" stroke-width="2"/>'
                    for end in (row.low, row.high)
                )
            )
        if row.mid is not None:
            body.append(
                f'<line class="mid" x1="{px(row.mid):.1f}" y1="{y - 8}" x2="{px(row.mid):.1f}" '
                f'y2="{y + 8}" stroke="{colour}" stroke-width="3"/>'
            )
        note = row.note
        if row.value is not None:
            body.append(
                f'<circle class="estimate" cx="{px(row.value):.1f}" cy="{y}" r="5" '
                f'fill="{colour}"/>'
            )
            if note is None:
                note = fmt(row.value, percent=percent)
                if row.low is not None and row.high is not None:
                    note += f" [{fmt(row.low, percent=percent)}, {fmt(row.high, percent=percent)}]"
        body.append(
            f'<text class="value" x="{frame.right + 12:.0f}" y="{y + 4:.0f}">'
            f"{esc(note if note is not None else 'no data')}</text>"
        )
        frame.parts.append(f'<g class="row" data-label="{esc(row.label)}">{"".join(body)}</g>')
    desc = f"{title}: {len(rows)} rows"
    return _open(name, title, desc, height, attrs or {}) + "".join(frame.parts) + "</svg>"


def stacked_bars(
    *,
    name: str,
    title: str,
    bars: Sequence[Bar],
    categories: Sequence[str],
    x_label: str,
    attrs: Mapping[str, str] | None = None,
) -> str:
    """Horizontal stacked bars, one per item, coloured by category, with a status square."""
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}
    legend, legend_height = _legend([(c, colours[c], False) for c in categories], 4)
    totals = [sum(v for _, v in bar.segments) for bar in bars]
    ticks = nice_ticks(0.0, max(totals, default=1.0) or 1.0)
    label_width = min(220.0, 28 + max((len(bar.label) for bar in bars), default=4) * _CHAR_WIDTH)
    height = 60 + legend_height + 22 * len(bars)
    frame = _Frame(left=label_width, top=12 + legend_height, right=WIDTH - 150, bottom=height - 40)
    high = ticks[-1]

    def px(x: float) -> float:
        return frame.left + x / high * frame.width

    for tick in ticks:
        frame.parts.append(
            f'<line class="grid" x1="{px(tick):.1f}" y1="{frame.top}" x2="{px(tick):.1f}" '
            f'y2="{frame.bottom}"/><text class="tick" x="{px(tick):.1f}" '
            f'y="{frame.bottom + 16:.0f}" text-anchor="middle">{esc(fmt(tick))}</text>'
        )
    frame.parts.append(
        f'<text class="axis-label" x="{(frame.left + frame.right) / 2:.0f}" '
        f'y="{frame.bottom + 32:.0f}" text-anchor="middle">{esc(x_label)}</text>'
    )
    for index, bar in enumerate(bars):
        y = frame.top + 6 + 22 * index
        status_colour = STATUS_COLOURS.get(bar.status, "#999999")
        body = [
            f'<circle class="status" cx="{frame.left - 9:.0f}" cy="{y + 7.5}" r="4.5" '
            f'fill="{status_colour}"><title>{esc(bar.status)}</title></circle>'
            f'<text class="row-label" x="{frame.left - 20:.0f}" y="{y + 12}" '
            f'text-anchor="end">{esc(_short(bar.label, 32))}</text>'
        ]
        x = 0.0
        for category, value in bar.segments:
            if value <= 0:
                continue
            body.append(
                f'<rect class="segment" data-category="{esc(category)}" data-value="{value:g}" '
                f'x="{px(x):.1f}" y="{y}" width="{max(px(x + value) - px(x), 1.0):.1f}" '
                f'height="15" fill="{colours.get(category, "#999999")}">'
                f"<title>{esc(category)}: {esc(fmt(value))}</title></rect>"
            )
            x += value
        body.append(
            f'<text class="value" x="{frame.right + 10:.0f}" y="{y + 12}">'
            f"{esc(_short(bar.note, 24))}</text>"
        )
        frame.parts.append(
            f'<g class="bar" data-status="{esc(bar.status)}">' + "".join(body) + "</g>"
        )
    desc = f"{title}: {len(bars)} bars"
    return _open(name, title, desc, height, attrs or {}) + legend + "".join(frame.parts) + "</svg>"
