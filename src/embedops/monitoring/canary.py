"""The quality canary: each served model version embeds held-out pairs now and then, and the
Spearman correlation of their cosines with the human scores is exported.

Pairs come from ``canary_pairs``: a TSV of ``sentence1, sentence2, score`` rows, or the STS-B
layout (score in the 5th column, the sentences in the 6th and 7th). A version passes when its
Spearman (0-1) is at least its threshold: the registry's quality gate for that version (STS-B
minimum / 100, less ``canary_tolerance``: the canary's pairs are a sample) when the version is
registered with a gate that has a minimum, else ``canary_min_spearman``.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from embedops.config import Settings
from embedops.errors import EmbedopsError, InputError
from embedops.models.base import Embedder
from embedops.quality import spearman
from embedops.registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    """Held-out sentence pairs and their human scores."""

    first: list[str]
    second: list[str]
    scores: list[float]


@dataclass(frozen=True)
class CanaryResult:
    """One version's canary run."""

    model_version: str
    spearman: float
    threshold: float
    passed: bool
    time: float  # Unix seconds

    def to_json(self) -> dict[str, float | bool]:
        """The history line's shape."""
        return {"spearman": self.spearman, "threshold": self.threshold, "passed": self.passed}


def read_pairs(path: Path) -> Pairs:
    """Pairs from a TSV (``sentence1, sentence2, score``, or the STS-B layout); a first row
    whose score is not a number is a header.

    Raises:
        InputError: the file is missing, or holds fewer than 3 pairs or malformed rows.
    """
    if not path.is_file():
        raise InputError(f"{path}: canary pairs file not found")
    pairs = Pairs([], [], [])
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) >= 7:
                score, a, b = row[4], row[5], row[6]
            elif len(row) == 3:
                a, b, score = row
            else:
                raise InputError(
                    f"{path}:{number}: {len(row)} columns; want sentence1, sentence2, score "
                    "(tab-separated) or the STS-B layout"
                )
            try:
                value = float(score)
            except ValueError:
                if number == 1:
                    continue  # a header
                raise InputError(f"{path}:{number}: score {score!r} is not a number") from None
            pairs.first.append(a)
            pairs.second.append(b)
            pairs.scores.append(value)
    if len(pairs.scores) < 3:
        raise InputError(f"{path}: {len(pairs.scores)} pairs; the canary needs at least 3")
    return pairs


def score(embedder: Embedder, pairs: Pairs) -> float:
    """Spearman (0-1 scale, -1 to 1) of ``embedder``'s pair cosines with the human scores."""
    a = embedder.embed(pairs.first)
    b = embedder.embed(pairs.second)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0)
    return spearman(cosines.tolist(), pairs.scores)


def threshold_for(version: str, settings: Settings) -> float:
    """The canary threshold of ``version`` (see the module's docstring)."""
    try:
        registry = ModelRegistry(store=settings.store)
        record = registry.find(version)
        gate = registry.gate_for(record) if record is not None else None
    except EmbedopsError as exc:
        logger.warning("canary: cannot read the registry's gate for %s (%s)", version, exc)
        gate = None
    if gate is not None and gate.stsb_min is not None:
        return gate.stsb_min / 100 - settings.canary_tolerance
    return settings.canary_min_spearman


class CanaryGauges:
    """``embedops_quality_canary_*`` gauges by model version."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model_version"]
        self.spearman = Gauge(
            "embedops_quality_canary_spearman",
            "Spearman of the canary pairs' cosines with their human scores (last run).",
            labels,
            registry=registry,
        )
        self.passed = Gauge(
            "embedops_quality_canary_passed",
            "1 when the last canary run met its threshold, else 0.",
            labels,
            registry=registry,
        )
        self.last_run = Gauge(
            "embedops_quality_canary_last_run_timestamp_seconds",
            "Unix time of the last canary run.",
            labels,
            registry=registry,
        )

    def set(self, result: CanaryResult) -> None:
        self.spearman.labels(result.model_version).set(result.spearman)
        self.passed.labels(result.model_version).set(int(result.passed))
        self.last_run.labels(result.model_version).set(result.time)


class Canary:
    """Runs the canary for the served embedders (blocking: call it in a thread).

    Args:
        settings: ``canary_pairs`` and the thresholds.
        gauges: set after each version's run (optional).
    """

    def __init__(self, settings: Settings, gauges: CanaryGauges | None = None) -> None:
        self.settings = settings
        self.gauges = gauges
        self.results: dict[str, CanaryResult] = {}
        self._pairs: Pairs | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.canary_pairs is not None

    def run(self, embedders: Sequence[Embedder]) -> list[CanaryResult]:
        """Score each embedder on the pairs and export the results.

        Raises:
            InputError: the pairs file cannot be read.
        """
        path = self.settings.canary_pairs
        if path is None:
            return []
        if self._pairs is None:
            self._pairs = read_pairs(path)
        out: list[CanaryResult] = []
        for embedder in embedders:
            version = embedder.spec.version
            started = time.perf_counter()
            try:
                value = score(embedder, self._pairs)
            except EmbedopsError as exc:
                logger.error("canary: %s could not embed the pairs: %s", version, exc)
                continue
            threshold = threshold_for(version, self.settings)
            result = CanaryResult(version, value, threshold, value >= threshold, time.time())
            self.results[version] = result
            if self.gauges is not None:
                self.gauges.set(result)
            log = logger.info if result.passed else logger.warning
            log(
                "canary: %s Spearman %.4f on %d pairs (threshold %.4f, %s) in %.1fs",
                version,
                value,
                len(self._pairs.scores),
                threshold,
                "passed" if result.passed else "FAILED",
                time.perf_counter() - started,
            )
            out.append(result)
        return out
