"""The SVG chart primitives: ticks, thinning, gaps, escaping."""

from __future__ import annotations

import math

from embedops.reporting.svg import (
    MAX_POINTS,
    Bar,
    Interval,
    Series,
    Threshold,
    decimate,
    interval_chart,
    line_chart,
    nice_ticks,
    split_at_gaps,
    stacked_bars,
    time_ticks,
)
from tests.reporting.conftest import parse


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(0, 7.3) == [0, 2, 4, 6, 8]
    assert nice_ticks(0, 0.043) == [0, 0.01, 0.02, 0.03, 0.04, 0.05]
    assert nice_ticks(5, 5) == [5, 6, 7, 8, 9, 10]  # a flat line still gets an axis
    ticks = nice_ticks(-3, 12)
    assert ticks[0] <= -3 and ticks[-1] >= 12


def test_time_ticks_fall_on_round_times() -> None:
    ticks = time_ticks(1_000_030.0, 1_000_030.0 + 3 * 3600)
    assert ticks and all(t % 1800 == 0 for t in ticks)
    assert ticks[0] >= 1_000_030 and ticks[-1] <= 1_000_030 + 3 * 3600


def test_decimate_keeps_spikes_and_order() -> None:
    points = [(float(i), math.sin(i / 50)) for i in range(10_000)]
    points[5_003] = (5_003.0, 40.0)
    kept = decimate(points, 200)
    assert len(kept) <= 200
    assert (5_003.0, 40.0) in kept
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)
    assert decimate(points[:10], 200) == points[:10]


def test_long_series_are_thinned_in_the_chart() -> None:
    series = [Series("a", [(float(i * 60), float(i % 7)) for i in range(5_000)])]
    root, _ = parse(line_chart(name="x", title="t", series=series, y_label="ms"))
    group = root.one("g", class_="series")
    assert int(group.attrs["data-points"]) <= MAX_POINTS
    assert len(group.one("polyline").attrs["points"].split()) == int(group.attrs["data-points"])


def test_lines_break_at_gaps() -> None:
    points = [(0.0, 1.0), (60.0, 2.0), (600.0, 3.0), (660.0, 4.0), (5000.0, 5.0)]
    assert [len(p) for p in split_at_gaps(points, 180)] == [2, 2, 1]
    assert len(split_at_gaps(points, None)) == 1
    svg = line_chart(name="x", title="t", series=[Series("a", points)], y_label="ms", gap=180)
    root, _ = parse(svg)
    assert len(root.all("polyline")) == 3
    assert len(root.all("circle", class_="point")) == 1  # the lone point is drawn as a dot


def test_a_thinned_line_stays_one_line() -> None:
    points = [(float(i * 60), float(i % 7)) for i in range(5_000)]
    alerts = points[::2]
    series = [Series("a", points, alerts=alerts)]
    root, _ = parse(line_chart(name="x", title="t", series=series, y_label="ms", gap=180))
    assert len(root.all("polyline")) == 1
    assert len(root.all("circle", class_="alert")) <= MAX_POINTS


def test_labels_and_titles_are_escaped() -> None:
    label = '<img src=x onerror="alert(1)">&'
    svgs = [
        line_chart(name=label, title=label, series=[Series(label, [(0.0, 1.0)])],
                   y_label=label, thresholds=[Threshold(label, 0.5)]),
        interval_chart(name="i", title=label, rows=[Interval(label, 0.5, 0.4, 0.6)],
                       x_label=label, attrs={"data-experiment": label}),
        stacked_bars(name="b", title=label, bars=[Bar(label, [(label, 3.0)], label, label)],
                     categories=[label], x_label=label),
    ]  # fmt: skip
    for svg in svgs:
        assert "<img" not in svg
        root, refs = parse(svg)
        assert not refs and not root.all("img")
        assert root.one("svg").child("title").full_text() == label


def test_stacked_bars_skip_empty_segments() -> None:
    bars = [Bar("run", [("inserted", 5.0), ("updated", 0.0), ("unchanged", 2.0)], "failed")]
    root, _ = parse(
        stacked_bars(name="b", title="t", bars=bars, categories=["inserted", "updated",
                     "unchanged"], x_label="rows")
    )  # fmt: skip
    segments = root.all("rect", class_="segment")
    assert [s.attrs["data-category"] for s in segments] == ["inserted", "unchanged"]
    assert root.one("g", class_="bar").attrs["data-status"] == "failed"
