"""Prometheus metrics of experiments and shadow runs, registered on the service's registry
(``ServiceMetrics.registry``), so they appear on ``/metrics`` beside the service's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ExperimentMetrics:
    """Requests by experiment and variant; shadow agreement, samples and drops."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "embedops_experiment_requests",
            "Requests an experiment variant served.",
            ["experiment", "variant"],
            registry=registry,
        )
        self.shadow_cosine = Histogram(
            "embedops_shadow_cosine",
            "Mean cosine of the shadow candidate's vectors with production's, per request.",
            ["experiment", "candidate"],
            buckets=(0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0),
            registry=registry,
        )
        self.shadow_overlap = Gauge(
            "embedops_shadow_topk_overlap",
            "Top-k overlap of the shadow candidate's search results with production's (last).",
            ["experiment", "candidate"],
            registry=registry,
        )
        self.shadow_samples = Counter(
            "embedops_shadow_samples",
            "Requests the shadow candidate compared with production.",
            ["experiment", "candidate"],
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "embedops_shadow_dropped",
            "Sampled requests dropped because the shadow queue was full.",
            ["experiment", "candidate"],
            registry=registry,
        )
