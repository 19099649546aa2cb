"""Variant assignment: shares within 2 percentage points of the weights over 10,000 keys,
the same variant for the same key every time, independent splits across experiments."""

from __future__ import annotations

from collections import Counter

import pytest

from embedops.experiments.assignment import assign, bucket
from embedops.experiments.definitions import Experiment, Variant

KEYS = [f"key_{i:06x}" for i in range(10_000)]


def _experiment(name: str, weights: dict[str, float]) -> Experiment:
    variants = tuple(
        Variant(label=label, model=f"m-{label}", weight=w, version=f"v-{label}", backend="hash")
        for label, w in weights.items()
    )
    return Experiment(name=name, variants=variants)


@pytest.mark.parametrize(
    "weights",
    [{"a": 90, "b": 10}, {"a": 50, "b": 30, "c": 20}, {"a": 0.5, "b": 0.5}, {"a": 1, "b": 99}],
)
def test_shares_follow_the_weights_within_two_points(weights: dict[str, float]) -> None:
    experiment = _experiment("split", weights)
    counts = Counter(assign(experiment, key).label for key in KEYS)
    total = sum(weights.values())
    for label, weight in weights.items():
        share = counts[label] / len(KEYS)
        assert abs(share - weight / total) < 0.02, (label, share, weight / total)
    assert sum(counts.values()) == len(KEYS)


def test_assignment_is_sticky_per_key() -> None:
    experiment = _experiment("sticky", {"a": 70, "b": 30})
    first = [assign(experiment, key).label for key in KEYS]
    # A definition read back from the store (a new object) assigns the same way.
    again = Experiment.from_dict(experiment.to_dict())
    assert [assign(again, key).label for key in KEYS] == first
    assert [assign(experiment, key).label for key in reversed(KEYS)] == first[::-1]


def test_experiments_split_independently() -> None:
    one = _experiment("one", {"a": 50, "b": 50})
    two = _experiment("two", {"a": 50, "b": 50})
    same = sum(assign(one, k).label == assign(two, k).label for k in KEYS)
    # Independent halves agree about half the time; the same hash would agree always.
    assert abs(same / len(KEYS) - 0.5) < 0.03


def test_bucket_is_uniform_in_unit_interval() -> None:
    values = [bucket("x", key) for key in KEYS]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = Counter(int(v * 10) for v in values)
    assert all(abs(deciles[d] / len(KEYS) - 0.1) < 0.015 for d in range(10))
