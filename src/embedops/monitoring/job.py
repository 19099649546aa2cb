"""Prometheus metrics of a batch run: rows by outcome, rate, progress, batch latency, memory.

Served while the run goes on (``--metrics-port``: Prometheus scrapes the process) or written
to a file for node-exporter's textfile collector (``--metrics-file``: rewritten as the run
goes and at its end). The names start with ``embedops_job_``; the service exports the same
model version label. Beside them, the names the service exports where they apply to a run:
``embedops_batch_texts`` and ``embedops_batch_tokens``, and the drift gauges
(``monitoring.drift``): the whole run so far against the first run of the collection with
that model version, whose sums are saved at its end to
``<store>/.monitoring/run-<collection>-<version>.json`` (not the service's baseline: a run's
documents are not the service's queries; not the run's first texts: a run embeds its texts
sorted by length). The first run exports the norm statistics only.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import write_to_textfile as _write_textfile

from embedops.monitoring.batches import batch_histograms
from embedops.monitoring.drift import DriftGauges, DriftMonitor

OUTCOMES = (
    "read",
    "inserted",
    "updated",
    "metadata_updated",
    "unchanged",
    "deleted",
    "quarantined",
)


class JobMetrics:
    """The metrics of one run, in a registry of their own."""

    def __init__(
        self,
        collection: str,
        model_version: str,
        *,
        port: int | None = None,
        textfile: Path | None = None,
        interval: float = 5.0,
        drift_thresholds: dict[str, float] | None = None,
        store: Path | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.model_version = model_version
        self.batch_texts, self.batch_tokens = batch_histograms(self.registry)
        limits = drift_thresholds or {
            "length_shift": 0.2,
            "unknown_token_rate": 0.05,
            "centroid_shift": 0.1,
        }
        # A window that never rotates: the whole run.
        self.drift = DriftMonitor(
            store, 1 << 62, limits, DriftGauges(self.registry, limits), prefix=f"run-{collection}"
        )
        labels = ["collection", "model_version"]
        self._labels = {"collection": collection, "model_version": model_version}
        self.rows = Gauge(
            "embedops_job_rows",
            "Rows of the run by outcome.",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.rate = Gauge(
            "embedops_job_rows_per_second",
            "Rows read per second so far.",
            labels,
            registry=self.registry,
        )
        self.progress = Gauge(
            "embedops_job_progress_ratio",
            "Share of the source read (0-1).",
            labels,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "embedops_job_batch_seconds",
            "Seconds to embed one model batch.",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.rss = Gauge(
            "embedops_job_max_rss_bytes",
            "Peak resident memory of the process.",
            labels,
            registry=self.registry,
        )
        self.up = Gauge(
            "embedops_job_running",
            "1 while the run goes on, 0 once it ended.",
            labels,
            registry=self.registry,
        )
        self._textfile = textfile
        self._interval = interval
        self._last = 0.0
        self._started = time.monotonic()
        self.up.labels(**self._labels).set(1)
        if port is not None:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def observe_batch(self, seconds: float) -> None:
        self.batch_seconds.labels(**self._labels).observe(seconds)

    def observe_texts(
        self,
        texts: Sequence[str],
        lengths: Sequence[int],
        vectors: NDArray[Any],
        tokenizer: Path | None = None,
    ) -> None:
        """Record one model batch: its size, tokens, and drift sums (``tokenizer``: the
        model's ``tokenizer.json``, for the unknown-token rate)."""
        self.batch_texts.labels(self.model_version).observe(len(texts))
        self.batch_tokens.labels(self.model_version).observe(sum(lengths))
        self.drift.observe(self.model_version, texts, lengths, vectors, tokenizer)

    def update(
        self, report: Any, position: int, total: int, *, force: bool = False, done: bool = False
    ) -> None:
        """Set the gauges from the run's report (``force``: write the file now)."""
        for outcome in OUTCOMES:
            self.rows.labels(**self._labels, outcome=outcome).set(getattr(report, outcome))
        elapsed = max(time.monotonic() - self._started, 1e-9)
        self.rate.labels(**self._labels).set(report.read / elapsed)
        if total:
            self.progress.labels(**self._labels).set(min(1.0, position / total))
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.rss.labels(**self._labels).set(peak_kb * 1024)
        if done:
            self.up.labels(**self._labels).set(0)
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self.drift.refresh()
            if self._textfile is not None:
                self._textfile.parent.mkdir(parents=True, exist_ok=True)
                _write_textfile(str(self._textfile), self.registry)
        if done:  # after the last export: the first run has nothing to compare with
            self.drift.keep_window(self.model_version)
