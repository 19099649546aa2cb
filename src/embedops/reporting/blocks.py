"""HTML building blocks of the report: figures with a text fallback, tables, empty states.

Everything that is not markup written here is escaped (``esc``); ``Raw`` marks a cell that
is markup already (a status badge built from escaped parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from embedops.reporting.svg import Series, esc, fmt


class Raw(str):
    """A table cell that is HTML already (its parts escaped by whoever built it)."""

    __slots__ = ()


def cell(value: object) -> str:
    """A table cell's HTML: ``Raw`` as is, ``None`` as a dash, numbers short, text escaped."""
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "–"
    if isinstance(value, float):
        return esc(fmt(value))
    return esc(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str = "") -> str:
    """An HTML table; numbers right-aligned by the stylesheet (``class="num"``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell(v)}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{cell(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str, caption: str, fallback: str) -> str:
    """A chart with its caption and its data as text (a table under ``<details>``)."""
    return (
        f'<figure class="plot">{svg}<figcaption>{esc(caption)}</figcaption>'
        f'<details class="fallback"><summary>data as a table</summary>{fallback}</details>'
        "</figure>"
    )


def empty(what: str, command: str) -> str:
    """The text of a section without data, naming the command that produces it."""
    return f'<p class="empty">{esc(what)} It is produced by: <code>{esc(command)}</code></p>'


def badge(text: str, kind: str) -> Raw:
    """A coloured label (``kind``: good, bad, warn, info)."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def utc(seconds: float) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def series_table(series: Sequence[Series], unit: str, *, percent: bool = False) -> str:
    """A line chart's data as text: per series its points, lowest, mean, highest and last."""
    rows: list[list[object]] = []
    for line in series:
        values = [y for _, y in line.points]
        if not values:
            continue
        rows.append(
            [
                line.label,
                len(values),
                fmt(min(values), percent=percent),
                fmt(sum(values) / len(values), percent=percent),
                fmt(max(values), percent=percent),
                fmt(values[-1], percent=percent),
                len(line.alerts),
            ]
        )
    return table(
        ["series", "points", "lowest", "mean", "highest", "last", "alerts"], rows, caption=unit
    )
