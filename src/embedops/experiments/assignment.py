"""Which variant serves a caller: a hash of the experiment name and the caller's unit (API key
id or ``user``), mapped onto the variants' cumulative shares.

The same unit always lands on the same variant while the weights stay (sticky, with no state
kept), and different experiments split independently (the name is hashed in).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from itertools import accumulate

from embedops.experiments.definitions import Experiment, Variant


def bucket(experiment: str, unit: str) -> float:
    """A number in [0, 1), uniform over units, fixed for (``experiment``, ``unit``)."""
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, unit: str) -> Variant:
    """The variant of ``experiment`` that serves ``unit`` (by the variants' weights).

    Example:
        >>> assign(experiment, "key_3f2a").label  # doctest: +SKIP
        'b'
    """
    shares = experiment.shares()
    bounds = list(accumulate(shares[v.label] for v in experiment.variants))
    index = bisect_right(bounds, bucket(experiment.name, unit))
    return experiment.variants[min(index, len(experiment.variants) - 1)]
