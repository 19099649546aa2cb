"""``experiment_report(store, name)``: per-variant traffic, latency, errors and quality with
95% intervals, a significance test and a suggested decision, from the experiment's log.

Definitions used (also in docs/experiments.md):

- errors: responses with status 500 or more (a refused request is the caller's, not the
  model's); latency: of the successful responses.
- impressions: successful requests that returned result ids (searches, similar items).
- click-through (CTR): impressions with feedback that clicked at least one id.
- MRR: over impressions with feedback, 1 / rank of the first returned id that was clicked or
  marked relevant (0 if none was).
- recall@k: over impressions whose feedback marks relevant ids, the share of those ids among
  the first ``k`` returned.
- The test compares each challenger's CTR with the control's (the first variant) by the
  pooled two-proportion z-test, Bonferroni-corrected over the challengers.
- Decision: ``stop`` when a challenger's error rate is significantly higher than the
  control's, or its CTR significantly lower; ``promote`` when its CTR is significantly higher
  and every compared variant has ``min_samples`` impressions; ``keep`` otherwise (not enough
  evidence yet).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedops.experiments.definitions import Experiment, ExperimentStore
from embedops.experiments.log import connect
from embedops.experiments.stats import (
    Interval,
    mean_interval,
    percentile,
    two_proportion_test,
    wilson,
)

logger = logging.getLogger(__name__)

ALPHA = 0.05


@dataclass
class _Arm:
    """What the log says about one variant."""

    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    feedback: int = 0
    impressions: int = 0
    clicks: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)


def _read_arms(path: Path, recall_k: int) -> dict[str, _Arm]:
    arms: dict[str, _Arm] = {}
    if not path.is_file():
        return arms
    db = connect(path)
    try:
        feedback: dict[str, tuple[set[str], set[str], int]] = {}
        for request_id, clicked, relevant in db.execute(
            "SELECT request_id, clicked, relevant FROM feedback"
        ):
            seen = feedback.setdefault(request_id, (set(), set(), 0))
            seen[0].update(json.loads(clicked))
            seen[1].update(json.loads(relevant))
            feedback[request_id] = (seen[0], seen[1], seen[2] + 1)
        rows = db.execute(
            "SELECT request_id, variant, latency_ms, status, returned FROM requests"
        ).fetchall()
    finally:
        db.close()
    for request_id, variant, latency_ms, status, returned in rows:
        arm = arms.setdefault(variant, _Arm())
        arm.requests += 1
        if status >= 500:
            arm.errors += 1
        if status >= 400:
            continue
        arm.latencies.append(float(latency_ms))
        given = feedback.get(request_id)
        if given is not None:
            arm.feedback += given[2]
        if returned is None:
            continue
        ids: list[str] = json.loads(returned)
        arm.impressions += 1
        if given is None:
            continue
        clicked, relevant, _ = given
        arm.clicks += bool(clicked)
        good = clicked | relevant
        if good:
            rank = next((i + 1 for i, item in enumerate(ids) if item in good), None)
            arm.reciprocal_ranks.append(1 / rank if rank is not None else 0.0)
        if relevant:
            arm.recalls.append(len(relevant & set(ids[:recall_k])) / len(relevant))
    return arms


def _shadow(experiment: Experiment, path: Path) -> dict[str, Any] | None:
    if experiment.shadow is None:
        return None
    summary: dict[str, Any] = {
        "candidate": experiment.shadow.version,
        "samples": 0,
        "mean_cosine": None,
        "topk_overlap": None,
        "rank_correlation": None,
    }
    if not path.is_file():
        return summary
    db = connect(path)
    try:
        samples, cosine, overlap, correlation = db.execute(
            "SELECT COUNT(*), AVG(cosine), AVG(overlap), AVG(rank_correlation) FROM shadow "
            "WHERE candidate = ?",
            (experiment.shadow.version,),
        ).fetchone()
    finally:
        db.close()
    summary["samples"] = int(samples)
    for name, value in (
        ("mean_cosine", cosine),
        ("topk_overlap", overlap),
        ("rank_correlation", correlation),
    ):
        summary[name] = round(float(value), 6) if value is not None else None
    return summary


def _interval(value: Interval | None, **extra: Any) -> dict[str, Any] | None:
    return None if value is None else value.to_dict() | extra


def experiment_report(
    store: Path, name: str, *, recall_k: int = 10, min_samples: int = 100
) -> dict[str, Any]:
    """The report of experiment ``name`` in ``store`` (the shape is fixed: see
    docs/experiments.md).

    Args:
        store: the store directory.
        name: the experiment.
        recall_k: the ``k`` of recall@k.
        min_samples: impressions each compared variant needs before the decision is anything
            but ``keep`` on click-through (errors can stop an experiment sooner).

    Raises:
        ConfigError: no such experiment.
    """
    experiments = ExperimentStore(Path(store))
    experiment = experiments.get(name)
    path = experiments.log_path(name)
    arms = _read_arms(path, recall_k)
    shares = experiment.shares()
    variants = []
    for v in experiment.variants:
        arm = arms.get(v.label, _Arm())
        ok = arm.latencies
        variants.append(
            {
                "label": v.label,
                "model_version": v.version,
                "weight": round(shares[v.label], 6),
                "requests": arm.requests,
                "errors": arm.errors,
                "error_rate": wilson(arm.errors, arm.requests).to_dict(),
                "latency_ms": {f"p{q}": round(percentile(ok, q), 3) for q in (50, 95, 99)},
                "feedback": arm.feedback,
                "ctr": _interval(wilson(arm.clicks, arm.impressions) if arm.impressions else None),
                "mrr": _interval(
                    mean_interval(arm.reciprocal_ranks) if arm.reciprocal_ranks else None
                ),
                "recall_at_k": _interval(
                    mean_interval(arm.recalls) if arm.recalls else None, k=recall_k
                ),
            }
        )
    test, decision, reason = _decide(experiment, arms, min_samples)
    return {
        "experiment": experiment.name,
        "status": experiment.status,
        "started": experiment.started,
        "collection": experiment.collection,
        "variants": variants,
        "test": test,
        "decision": decision,
        "reason": reason,
        "shadow": _shadow(experiment, path),
    }


def _decide(
    experiment: Experiment, arms: dict[str, _Arm], min_samples: int
) -> tuple[dict[str, Any], str, str]:
    """The CTR test, the decision and its reason."""
    labels = [v.label for v in experiment.variants]
    control = labels[0]
    base = arms.get(control, _Arm())
    challengers = labels[1:]
    test: dict[str, Any] = {
        "metric": "ctr",
        "method": "pooled two-proportion z-test",
        "p_value": None,
        "significant": False,
    }
    if not challengers:
        return test, "keep", _one_variant_reason(experiment)
    # Errors first: a challenger that fails more often is stopped whatever its clicks.
    for label in challengers:
        arm = arms.get(label, _Arm())
        errors = two_proportion_test(base.errors, base.requests, arm.errors, arm.requests)
        if errors is not None and errors[0] > 0 and errors[1] * len(challengers) < ALPHA:
            rate, base_rate = arm.errors / arm.requests, base.errors / base.requests
            return (
                test,
                "stop",
                f"variant {label} fails more often than {control}: error rate {rate:.2%} against "
                f"{base_rate:.2%} (p={errors[1]:.2g})",
            )
    results = []
    for label in challengers:
        arm = arms.get(label, _Arm())
        outcome = two_proportion_test(base.clicks, base.impressions, arm.clicks, arm.impressions)
        if outcome is not None:
            results.append((min(1.0, outcome[1] * len(challengers)), outcome[0], label, arm))
    if not results:
        return test, "keep", "no click feedback to compare yet; send POST /v1/feedback"
    p_value, z, label, arm = min(results, key=lambda r: r[0])
    correction = f", Bonferroni over {len(challengers)}" if len(challengers) > 1 else ""
    test["method"] = f"pooled two-proportion z-test, {label} against {control}{correction}"
    test["p_value"] = round(p_value, 6)
    test["significant"] = p_value < ALPHA
    ctr, base_ctr = arm.clicks / arm.impressions, base.clicks / base.impressions
    figures = f"CTR {ctr:.2%} against {base_ctr:.2%} for {control} (p={p_value:.2g})"
    fewest = min(arm.impressions, base.impressions)
    if not test["significant"]:
        return test, "keep", f"no significant difference yet: {label} {figures}"
    if fewest < min_samples:
        return (
            test,
            "keep",
            f"{label} {figures}, but only {fewest} impressions in a variant; wait for "
            f"{min_samples} before deciding",
        )
    if z > 0:
        return test, "promote", f"variant {label} is better: {figures}"
    return test, "stop", f"variant {label} is worse: {figures}"


def _one_variant_reason(experiment: Experiment) -> str:
    if experiment.shadow is None:
        return "one variant: nothing to compare; add a variant or a shadow candidate"
    return (
        f"one variant with {experiment.shadow.version} in the shadow: read its agreement "
        f"below, then run it as a variant to measure clicks"
    )
