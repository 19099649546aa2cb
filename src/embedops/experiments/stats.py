"""The statistics of experiment reports, in the standard library (no scipy): Wilson intervals
for proportions, a normal interval for means, the pooled two-proportion z-test, and the rank
agreement of two result lists."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95%


@dataclass(frozen=True)
class Interval:
    """A value with its 95% confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """``{"value", "low", "high"}``, rounded to 6 places."""
        return {
            "value": round(self.value, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
        }


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The share ``successes / n`` with its Wilson score interval (``n == 0``: 0 in [0, 1])."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no rounding)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high)


def mean_interval(values: Sequence[float], lo: float = 0.0, hi: float = 1.0) -> Interval:
    """The mean with a normal 95% interval (sample standard deviation), clipped to
    [``lo``, ``hi``]; fewer than two values: the whole range."""
    n = len(values)
    if n == 0:
        return Interval(0.0, lo, hi)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, lo, hi)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return Interval(mean, max(lo, mean - half), min(hi, mean + half))


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float] | None:
    """The pooled two-proportion z-test of ``s1/n1`` against ``s2/n2``.

    Returns:
        ``(z, two-sided p)``, z > 0 when the second share is higher; ``None`` when a group is
        empty or the pooled share is 0 or 1 (no variance: nothing to test).
    """
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    z = (s2 / n2 - s1 / n1) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default); 0.0 when
    there are no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def topk_overlap(production: Sequence[str], candidate: Sequence[str]) -> float:
    """The share of production's result ids that the candidate also returned (1.0: the same
    set; empty production results: 1.0 if the candidate's are empty too)."""
    if not production:
        return 1.0 if not candidate else 0.0
    return len(set(production) & set(candidate)) / len(production)


def rank_correlation(production: Sequence[str], candidate: Sequence[str]) -> float | None:
    """Spearman's correlation of the ranks the two lists give their shared ids (``None``:
    fewer than two shared ids)."""
    wanted = set(candidate)
    shared = [i for i in production if i in wanted]
    n = len(shared)
    if n < 2:
        return None
    common = set(shared)
    order = {item: rank for rank, item in enumerate(i for i in candidate if i in common)}
    d2 = sum((rank - order[item]) ** 2 for rank, item in enumerate(shared))
    return 1 - 6 * d2 / (n * (n * n - 1))
