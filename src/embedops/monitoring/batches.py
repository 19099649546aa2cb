"""The batch histograms the service and the batch jobs both export."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

BATCH_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384)


def batch_histograms(registry: CollectorRegistry) -> tuple[Histogram, Histogram]:
    """``embedops_batch_texts`` and ``embedops_batch_tokens`` by model version, in
    ``registry``."""
    texts = Histogram(
        "embedops_batch_texts",
        "Texts per model batch.",
        ["model_version"],
        buckets=BATCH_TEXT_BUCKETS,
        registry=registry,
    )
    tokens = Histogram(
        "embedops_batch_tokens",
        "Tokens per model batch (before padding).",
        ["model_version"],
        buckets=BATCH_TOKEN_BUCKETS,
        registry=registry,
    )
    return texts, tokens
