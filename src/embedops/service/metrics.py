"""Prometheus metrics of the service, in a registry of the app's own (no global state, so that
several apps, in tests, do not collide).

Names and labels are a contract (docs/monitoring.md; deploy/ builds alerts and dashboards on
them): do not rename them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from embedops.monitoring.batches import batch_histograms

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """Requests, latency and errors by route, model version and variant; batch sizes and
    queue depth by model version; tokens by key and model version; cache hits."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedops_requests",
            "HTTP requests by route, method, status, model version and variant.",
            ["route", "method", "status", "model_version", "variant"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "embedops_request_seconds",
            "HTTP request latency by route, model version and variant.",
            ["route", "model_version", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "embedops_errors",
            "Error responses by route and OpenAI error code (or type, when it has no code).",
            ["route", "type", "model_version", "variant"],
            registry=self.registry,
        )
        self.batch_size, self.batch_tokens = batch_histograms(self.registry)
        self.queue_depth = Gauge(
            "embedops_queue_texts",
            "Texts waiting for a model batch.",
            ["model_version"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "embedops_tokens",
            "Tokens embedded, by API key id and model version (usage metering).",
            ["key", "model_version"],
            registry=self.registry,
        )
        self.cache = Counter(
            "embedops_cache_requests",
            "Texts looked up in the vector cache, by result (hit or miss).",
            ["model_version", "result"],
            registry=self.registry,
        )

    def observe_batch(self, texts: int, tokens: int, model_version: str = "unknown") -> None:
        """Record one model batch."""
        self.batch_size.labels(model_version).observe(texts)
        self.batch_tokens.labels(model_version).observe(tokens)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
