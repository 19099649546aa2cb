"""The monitoring history as lines: rates add over instances, shares and means are weighted."""

from __future__ import annotations

from embedops.reporting.traffic import (
    buckets,
    canary_series,
    drift_series,
    error_series,
    latency_series,
    throughput_series,
)
from tests.reporting.conftest import DRIFT_ALERTS, INTERVALS, NOW, history_line


def _history() -> list[tuple[float, dict[str, object]]]:
    start = NOW - INTERVALS * 60
    return [
        (start + i * 60 + 5, history_line(start + i * 60 + 5, instance, i))
        for i in range(INTERVALS)
        for instance in ("a", "b")
    ]


def test_rates_add_over_instances() -> None:
    groups = buckets(_history())
    assert len(groups) == INTERVALS and all(len(lines) == 2 for _, lines in groups)
    series = {s.label: s for s in throughput_series(groups)}
    # a: 120 requests a minute, b: 180 -> 5 a second; variants 90% / 10%
    assert {y for _, y in series["all requests/s"].points} == {5.0}
    assert {round(y, 3) for _, y in series["control requests/s"].points} == {4.5}
    assert {round(y, 3) for _, y in series["treatment requests/s"].points} == {0.5}
    assert {y for _, y in series["texts/s"].points} == {10.0}


def test_a_second_line_of_one_instance_is_averaged_not_added() -> None:
    history = _history()[:2]
    moment, line = history[0]
    history.append((moment + 1, dict(line, requests=240)))  # instance a again, same minute
    series = {s.label: s for s in throughput_series(buckets(history))}
    assert series["all requests/s"].points[0][1] == (120 + 240) / 2 / 60 + 180 / 60


def test_error_share_and_weighted_latency() -> None:
    groups = buckets(_history())
    errors = {s.label: s for s in error_series(groups)}
    assert errors["all"].points[0][1] == 6 / 300
    assert round(errors["treatment"].points[0][1], 4) == round(2 / 30, 4)
    latency = {s.label: s for s in latency_series(groups)}
    assert [y for _, y in latency["p50"].points[:5]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert {y for _, y in latency["treatment p95"].points} == {35.0}


def test_drift_alerts_and_canary() -> None:
    groups = buckets(_history())
    shift = {s.label: s for s in drift_series(groups, "length_shift")}
    assert len(shift["v2"].alerts) == DRIFT_ALERTS and not shift["v1"].alerts
    assert [y for _, y in shift["v2"].alerts] == [0.3] * DRIFT_ALERTS
    canary, limits = canary_series(groups)
    assert [s.label for s in canary] == ["v1"] and [t.value for t in limits] == [0.8]
