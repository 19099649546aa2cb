"""Report statistics against values computed by hand (and scipy where it is installed), and
``experiment_report`` on a log written row by row."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from embedops.experiments.definitions import Experiment, ExperimentStore, Shadow, Variant
from embedops.experiments.log import ExperimentLog, RequestRow, ShadowRow
from embedops.experiments.report import experiment_report
from embedops.experiments.stats import (
    mean_interval,
    percentile,
    rank_correlation,
    topk_overlap,
    two_proportion_test,
    wilson,
)


def test_wilson_interval_by_hand() -> None:
    # p = 0.8, n = 10, z = 1.96: centre 0.716738, half-width 0.226581.
    interval = wilson(8, 10)
    assert interval.value == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.490157, abs=1e-5)
    assert interval.high == pytest.approx(0.943319, abs=1e-5)
    assert wilson(0, 0).to_dict() == {"value": 0.0, "low": 0.0, "high": 1.0}
    none = wilson(0, 50)
    assert none.low == 0.0 and none.high == pytest.approx(0.071348, abs=1e-5)


def test_two_proportion_z_test_by_hand() -> None:
    # 30/100 against 45/100: pooled 0.375, se 0.068465, z 2.19089, p 0.028459.
    z, p = two_proportion_test(30, 100, 45, 100) or (0.0, 1.0)
    assert z == pytest.approx(2.19089, abs=1e-4)
    assert p == pytest.approx(0.028459, abs=1e-5)
    reverse = two_proportion_test(45, 100, 30, 100)
    assert reverse is not None and reverse[0] == pytest.approx(-z) and reverse[1] == p
    assert two_proportion_test(0, 10, 0, 10) is None  # no variance
    assert two_proportion_test(1, 0, 1, 10) is None


def test_z_test_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    z, p = two_proportion_test(120, 1000, 150, 1000) or (0.0, 1.0)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    low = wilson(37, 120).low
    # Wilson's bound is where the score test's statistic equals z.
    share = 37 / 120
    assert (share - low) / math.sqrt(low * (1 - low) / 120) == pytest.approx(1.959964, abs=1e-5)


def test_mean_interval_percentile_and_rank_measures_by_hand() -> None:
    interval = mean_interval([0.0, 1.0, 0.5, 0.5])  # sd 0.408248, half-width 0.400076
    assert (interval.value, interval.low, interval.high) == pytest.approx(
        (0.5, 0.099924, 0.900076), abs=1e-6
    )
    assert mean_interval([0.7]).to_dict() == {"value": 0.7, "low": 0.0, "high": 1.0}
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([], 99) == 0.0
    # Shared ids a, b, c ranked (0, 1, 2) and (1, 0, 2): d^2 = 2, rho = 1 - 12/24.
    assert rank_correlation(["a", "b", "c", "d"], ["b", "a", "c", "x"]) == 0.5
    assert rank_correlation(["a", "b", "c"], ["c", "b", "a"]) == -1.0
    assert rank_correlation(["a", "b"], ["a", "x"]) is None
    assert topk_overlap(["a", "b", "c", "d"], ["b", "a", "c", "x"]) == 0.75


def _store(tmp_path: Path, *, shadow: bool = False) -> tuple[Path, ExperimentLog]:
    store = tmp_path / "store"
    variants = tuple(
        Variant(label=label, model=label, weight=w, version=f"model-{label}", backend="hash")
        for label, w in (("a", 90.0), ("b", 10.0))
    )
    candidate = Shadow(model="c", version="model-c", backend="hash", rate=0.5) if shadow else None
    experiments = ExperimentStore(store)
    experiments.create(Experiment(name="ab", variants=variants, shadow=candidate))
    return store, ExperimentLog(experiments.log_path("ab"), interval=0.01)


def _request(rid: str, variant: str, latency: float, status: int = 200, returned=None):  # type: ignore[no-untyped-def]
    return RequestRow(rid, 0.0, variant, f"model-{variant}", "/r", "k", latency, status, returned)


def test_report_by_hand(tmp_path: Path) -> None:
    store, log = _store(tmp_path, shadow=True)
    results = ["x", "y", "z"]
    for i, latency in enumerate((10.0, 20.0, 30.0, 40.0)):
        log.add(_request(f"a{i}", "a", latency, returned=results))
    log.add(_request("a-error", "a", 5.0, status=503))
    log.add(_request("a-refused", "a", 1.0, status=400))
    log.add(_request("b0", "b", 7.0, returned=results))
    log.add(_request("b-embed", "b", 3.0))
    log.add(ShadowRow("a0", 0.0, "search", "model-c", "model-a", 1, 0.9, 0.5, 1.0, 3.0))
    log.add(ShadowRow("a1", 0.0, "embed", "model-c", "model-a", 4, 0.7, None, None, 3.0))
    log.add(ShadowRow("a1", 0.0, "embed", "model-other", "model-a", 4, 0.1, None, None, 3.0))
    assert log.add_feedback("a0", ["y"], [])  # clicked, rank 2
    assert log.add_feedback("a1", [], ["z", "q"])  # no click; z at rank 3; recall 1/2
    assert log.add_feedback("b-embed", ["y"], [])  # an embedding: feedback, no impression
    assert not log.add_feedback("nobody", ["y"], [])
    log.close()

    report = experiment_report(store, "ab", min_samples=1)
    a, b = report["variants"]
    assert (a["label"], a["model_version"], a["weight"]) == ("a", "model-a", 0.9)
    assert (a["requests"], a["errors"], a["feedback"]) == (6, 1, 2)
    assert a["error_rate"]["value"] == pytest.approx(1 / 6, abs=1e-6)
    assert a["latency_ms"] == {"p50": 25.0, "p95": 38.5, "p99": 39.7}
    assert a["ctr"]["value"] == 0.25  # 1 clicked of 4 impressions
    assert a["mrr"]["value"] == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-6)
    assert a["recall_at_k"] == {"value": 0.5, "low": 0.0, "high": 1.0, "k": 10}
    assert (b["requests"], b["feedback"], b["ctr"]["value"]) == (2, 1, 0.0)
    assert b["mrr"] is None and b["recall_at_k"] is None
    assert report["shadow"] == {
        "candidate": "model-c",
        "samples": 2,
        "mean_cosine": 0.8,
        "topk_overlap": 0.5,
        "rank_correlation": 1.0,
    }
    assert report["status"] == "running" and report["collection"] is None
    assert report["test"]["metric"] == "ctr"
    assert report["decision"] == "keep"  # 1/4 against 0/1: nothing significant


def _traffic(log: ExperimentLog, variant: str, n: int, clicks: int, errors: int = 0) -> None:
    for i in range(n):
        rid = f"{variant}{i}"
        log.add(_request(rid, variant, 10.0, status=500 if i < errors else 200, returned=["x"]))
    log.flush()
    for i in range(errors, errors + clicks):
        assert log.add_feedback(f"{variant}{i}", ["x"], [])


@pytest.mark.parametrize(
    ("clicks_a", "clicks_b", "errors_b", "min_samples", "decision"),
    [
        (100, 150, 0, 100, "promote"),  # 10% against 15% of 1,000: p = 0.0007
        (150, 100, 0, 100, "stop"),
        (100, 110, 0, 100, "keep"),  # 10% against 11%: p = 0.47
        (100, 150, 0, 5000, "keep"),  # significant, but too few impressions
        (100, 150, 60, 100, "stop"),  # clicks better, errors 6% against 0%
    ],
)
def test_decision(
    tmp_path: Path,
    clicks_a: int,
    clicks_b: int,
    errors_b: int,
    min_samples: int,
    decision: str,
) -> None:
    store, log = _store(tmp_path)
    _traffic(log, "a", 1000, clicks_a)
    _traffic(log, "b", 1000, clicks_b, errors=errors_b)
    log.close()
    report = experiment_report(store, "ab", min_samples=min_samples)
    assert report["decision"] == decision, report["reason"]
    if errors_b == 0:
        expected = two_proportion_test(clicks_a, 1000, clicks_b, 1000)
        assert expected is not None
        assert report["test"]["p_value"] == pytest.approx(expected[1], abs=1e-6)
        assert report["test"]["significant"] == (expected[1] < 0.05)
    assert "b" in report["reason"]


def test_feedback_reaches_a_closed_log(tmp_path: Path) -> None:
    _, log = _store(tmp_path)
    log.add(_request("r1", "a", 5.0, returned=["x"]))
    log.flush()
    log.close()  # the service moved on; feedback for its requests still lands
    assert log.add_feedback("r1", ["x"], [])
    assert not log.add_feedback("r2", ["x"], [])
    report = experiment_report(tmp_path / "store", "ab")
    assert report["variants"][0]["feedback"] == 1
