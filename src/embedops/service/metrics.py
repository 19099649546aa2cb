"""Prometheus metrics of the service, in a registry of the app's own (no global state, so that
several apps, in tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServiceMetrics:
    """Requests by route and status, latency, batch sizes, queue depth and tokens by key."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedops_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "embedops_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "embedops_batch_texts",
            "Texts per model batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "embedops_batch_tokens",
            "Tokens per model batch (before padding).",
            buckets=(16, 64, 256, 1024, 4096, 16384),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "embedops_queue_texts", "Texts waiting for a model batch.", registry=self.registry
        )
        self.tokens = Counter(
            "embedops_tokens", "Tokens embedded, by API key id.", ["key"], registry=self.registry
        )

    def observe_batch(self, texts: int, tokens: int) -> None:
        """Record one model batch."""
        self.batch_size.observe(texts)
        self.batch_tokens.observe(tokens)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
