"""Input and embedding drift per model version, against a baseline window.

The first ``drift_window`` texts a model version embeds are its **baseline**; it is saved to
``<store>/.monitoring/baseline-<version>.json`` and reused after a restart (delete the file to
take a new one). The **current window** is the last ``3/4 drift_window`` to ``drift_window``
texts: ``PARTS`` parts of incremental sums, the oldest dropped when a new one starts. Signals
of the current window against the baseline:

- ``length_shift``: population stability index (PSI) of the token-length histograms (bins in
  ``LENGTH_EDGES``; under 0.1 is no change, over 0.2 a clear one);
- ``unknown_token_rate``: share of ``[UNK]`` ids when the model's tokenizer tokenises a sample
  of the window's texts (``UNK_SAMPLE`` a part and refresh); every backend, the hash and
  static ones too, has the model's ``tokenizer.json``, so the rate is that tokenizer's;
- ``centroid_shift``: 1 - cosine of the window's mean vector with the baseline's;
- ``norm_mean`` and ``norm_std``: of the vectors' L2 norms (1 and 0 for normalised models; a
  change means the backend or its post-processing changed).

The request path only adds to sums (one histogram, one vector sum, norms); the sample is
tokenised and the signals computed in ``refresh`` (the monitor's background task, and each
``/metrics`` scrape without the tokenising).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Gauge

from embedops.config import Settings

logger = logging.getLogger(__name__)

SIGNALS = ("length_shift", "unknown_token_rate", "centroid_shift")
# Token-length bins: [edge[i], edge[i + 1]), the last open-ended.
LENGTH_EDGES = np.asarray([0, 8, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512])
# Parts of the current window (it holds (PARTS - 1) / PARTS of drift_window at least).
PARTS = 4
# Texts of a part kept, between two refreshes, to measure the unknown-token rate.
UNK_SAMPLE = 256
# Share of a part the current window needs before signals are computed.
_MIN_SHARE = 0.1
_MIN_TEXTS = 50  # ... and at most this many
_PSI_FLOOR = 1e-4  # bin share floor: an empty bin would make PSI infinite


def psi(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """Population stability index of two histograms (counts; 0 when they are alike)."""
    e = np.maximum(expected / max(expected.sum(), 1.0), _PSI_FLOOR)
    a = np.maximum(actual / max(actual.sum(), 1.0), _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def length_histogram(lengths: Sequence[int]) -> NDArray[np.float64]:
    """Counts of ``lengths`` in the ``LENGTH_EDGES`` bins."""
    bins = np.searchsorted(LENGTH_EDGES, np.asarray(lengths), side="right") - 1
    return np.bincount(np.clip(bins, 0, len(LENGTH_EDGES) - 1), minlength=len(LENGTH_EDGES)).astype(
        np.float64
    )


@dataclass
class Stats:
    """Incremental sums over a set of texts and their vectors."""

    texts: int = 0
    lengths: NDArray[np.float64] = field(default_factory=lambda: length_histogram([]))
    vector_sum: NDArray[np.float64] | None = None
    norm_sum: float = 0.0
    norm_squares: float = 0.0
    unknown: int = 0  # [UNK] ids among the sampled texts' tokens
    sampled_tokens: int = 0
    sample: list[str] = field(default_factory=list)  # waiting to be tokenised

    def add(self, texts: Sequence[str], lengths: Sequence[int], vectors: NDArray[Any]) -> None:
        """Add texts, their token counts and their vectors."""
        self.texts += len(texts)
        self.lengths += length_histogram(lengths)
        total = vectors.sum(axis=0, dtype=np.float64)
        self.vector_sum = total if self.vector_sum is None else self.vector_sum + total
        norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
        self.norm_sum += float(norms.sum())
        self.norm_squares += float(np.square(norms).sum())
        room = UNK_SAMPLE - len(self.sample)
        if room > 0:
            self.sample.extend(texts[:room])

    def merged(self, other: Stats) -> Stats:
        """The sums of both (samples not carried)."""
        if self.vector_sum is None:
            vector_sum = other.vector_sum
        elif other.vector_sum is None:
            vector_sum = self.vector_sum
        else:
            vector_sum = self.vector_sum + other.vector_sum
        return Stats(
            texts=self.texts + other.texts,
            lengths=self.lengths + other.lengths,
            vector_sum=vector_sum,
            norm_sum=self.norm_sum + other.norm_sum,
            norm_squares=self.norm_squares + other.norm_squares,
            unknown=self.unknown + other.unknown,
            sampled_tokens=self.sampled_tokens + other.sampled_tokens,
        )

    def unknown_rate(self) -> float | None:
        return self.unknown / self.sampled_tokens if self.sampled_tokens else None

    def norms(self) -> tuple[float, float]:
        """Mean and standard deviation of the vectors' norms."""
        if not self.texts:
            return 0.0, 0.0
        mean = self.norm_sum / self.texts
        return mean, math.sqrt(max(0.0, self.norm_squares / self.texts - mean * mean))

    def to_json(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "length_edges": LENGTH_EDGES.tolist(),
            "lengths": self.lengths.tolist(),
            "vector_sum": None if self.vector_sum is None else self.vector_sum.tolist(),
            "norm_sum": self.norm_sum,
            "norm_squares": self.norm_squares,
            "unknown": self.unknown,
            "sampled_tokens": self.sampled_tokens,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Stats:
        if raw.get("length_edges") != LENGTH_EDGES.tolist():
            raise ValueError("the baseline was binned differently")
        vector_sum = raw.get("vector_sum")
        return cls(
            texts=int(raw["texts"]),
            lengths=np.asarray(raw["lengths"], dtype=np.float64),
            vector_sum=None if vector_sum is None else np.asarray(vector_sum, np.float64),
            norm_sum=float(raw["norm_sum"]),
            norm_squares=float(raw["norm_squares"]),
            unknown=int(raw["unknown"]),
            sampled_tokens=int(raw["sampled_tokens"]),
        )


class DriftGauges:
    """The drift gauges (the service and the batch jobs export the same names)."""

    def __init__(self, registry: CollectorRegistry, thresholds: dict[str, float]) -> None:
        def gauge(name: str, text: str, labels: Sequence[str] = ("model_version",)) -> Gauge:
            return Gauge(name, text, list(labels), registry=registry)

        self.values = {
            "length_shift": gauge(
                "embedops_drift_input_length_shift",
                "PSI of the input token-length histogram, current window vs baseline.",
            ),
            "unknown_token_rate": gauge(
                "embedops_drift_unknown_token_rate",
                "Share of [UNK] tokens in the current window (sampled).",
            ),
            "centroid_shift": gauge(
                "embedops_drift_centroid_shift",
                "1 - cosine of the window's embedding centroid with the baseline's.",
            ),
            "norm_mean": gauge("embedops_embedding_norm_mean", "Mean L2 norm of the vectors."),
            "norm_std": gauge("embedops_embedding_norm_std", "Std of the vectors' L2 norms."),
        }
        self.alert = gauge(
            "embedops_drift_alert",
            "1 while a drift signal is over its threshold.",
            ("model_version", "signal"),
        )
        threshold = gauge(
            "embedops_drift_threshold", "Alert threshold of each drift signal.", ("signal",)
        )
        self.thresholds = thresholds
        for signal, value in thresholds.items():
            threshold.labels(signal).set(value)

    def set(self, version: str, values: dict[str, Any]) -> None:
        """Set ``version``'s gauges from ``values`` (a ``DriftMonitor.values`` entry)."""
        for name, gauge in self.values.items():
            if name in values:
                gauge.labels(version).set(values[name])
        for signal in self.thresholds:
            if signal in values:
                self.alert.labels(version, signal).set(int(signal in values["alerts"]))


def signals(baseline: Stats, window: Stats, thresholds: dict[str, float]) -> dict[str, Any]:
    """The drift signals of ``window`` against ``baseline`` and the alerts among them."""
    out: dict[str, Any] = {"length_shift": psi(baseline.lengths, window.lengths)}
    rate = window.unknown_rate()
    if rate is not None:
        out["unknown_token_rate"] = rate
    if baseline.vector_sum is not None and window.vector_sum is not None:
        b, w = baseline.vector_sum, window.vector_sum
        denominator = float(np.linalg.norm(b) * np.linalg.norm(w))
        cosine = float(b @ w) / denominator if denominator > 0 else 1.0
        out["centroid_shift"] = 1.0 - cosine
    out["norm_mean"], out["norm_std"] = window.norms()
    out["alerts"] = [s for s in SIGNALS if s in out and out[s] > thresholds[s]]
    return out


def thresholds(settings: Settings) -> dict[str, float]:
    """The drift alert thresholds of ``settings`` by signal."""
    return {
        "length_shift": settings.drift_length_shift_max,
        "unknown_token_rate": settings.drift_unknown_rate_max,
        "centroid_shift": settings.drift_centroid_shift_max,
    }


def baseline_path(store: Path, version: str, prefix: str = "baseline") -> Path:
    """Where ``version``'s baseline is saved."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{prefix}-{version}")
    return store / ".monitoring" / f"{safe}.json"


@dataclass
class _Version:
    tokenizer_path: Path | None
    baseline: Stats | None = None
    forming: Stats = field(default_factory=Stats)
    parts: deque[Stats] = field(default_factory=lambda: deque([Stats()], maxlen=PARTS))

    def window(self) -> Stats:
        """The current window's sums."""
        out = Stats()
        for part in self.parts:
            out = out.merged(part)
        return out


class DriftMonitor:
    """Drift of each model version's inputs and vectors against its baseline.

    Args:
        store: baselines go to ``<store>/.monitoring/`` (``None``: kept in memory only).
        window: texts in the baseline window; the current window is 3/4 to all of it.
        thresholds: alert thresholds by signal (``SIGNALS``).
        gauges: Prometheus gauges to set on ``refresh`` (optional).
        prefix: of the baseline files' names (batch runs keep theirs apart).
    """

    def __init__(
        self,
        store: Path | None,
        window: int,
        thresholds: dict[str, float],
        gauges: DriftGauges | None = None,
        prefix: str = "baseline",
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.window = window
        self.thresholds = thresholds
        self.gauges = gauges
        self._versions: dict[str, _Version] = {}
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        version: str,
        texts: Sequence[str],
        lengths: Sequence[int],
        vectors: NDArray[Any],
        tokenizer_path: Path | None = None,
    ) -> None:
        """Add embedded texts (cheap: sums only)."""
        if not texts:
            return
        with self._lock:
            state = self._versions.get(version)
            if state is None:
                state = _Version(tokenizer_path, baseline=self._load(version))
                self._versions[version] = state
            if state.baseline is None:
                state.forming.add(texts, lengths, vectors)
                if state.forming.texts >= self.window:
                    state.baseline = self._keep(version, state.forming)
            state.parts[-1].add(texts, lengths, vectors)
            if state.parts[-1].texts >= self.window / PARTS:
                state.parts.append(Stats())

    def refresh(self, *, tokenize: bool = True) -> dict[str, dict[str, Any]]:
        """Tokenise the waiting samples (``tokenize``), compute every version's signals and set
        the gauges. Returns ``values()``."""
        if tokenize:
            self._count_unknown()
        values = self.values()
        if self.gauges is not None:
            for version, entry in values.items():
                self.gauges.set(version, entry)
        return values

    def values(self) -> dict[str, dict[str, Any]]:
        """Signals by model version (only the norms before a baseline; versions without enough
        texts in the window left out)."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            states = list(self._versions.items())
            windows = [(v, s.baseline, s.window()) for v, s in states]
        least = max(1.0, min(_MIN_SHARE * self.window / PARTS, _MIN_TEXTS))
        for version, baseline, window in windows:
            if window.texts < least:
                continue
            if baseline is None:  # the norms only, until there is a baseline
                mean, std = window.norms()
                out[version] = {"norm_mean": mean, "norm_std": std, "alerts": []}
            else:
                out[version] = signals(baseline, window, self.thresholds)
        return out

    def keep_window(self, version: str) -> None:
        """Save ``version``'s current window as its baseline, if it has none yet (the end of
        a batch run whose window is the whole run)."""
        with self._lock:
            state = self._versions.get(version)
            if state is None or state.baseline is not None:
                return
            state.baseline = self._keep(version, state.window())

    def _count_unknown(self) -> None:
        with self._lock:
            work: list[tuple[str, Path | None, list[tuple[Stats, list[str]]]]] = []
            for version, state in self._versions.items():
                parts = [state.forming, *state.parts]
                taken = [(s, s.sample) for s in parts if s.sample]
                for s in parts:
                    s.sample = []
                work.append((version, state.tokenizer_path, taken))
        for version, path, taken in work:
            tokenizer = self._tokenizer(version, path)
            if tokenizer is None:
                continue
            tokenizer, unk = tokenizer
            for stats, texts in taken:
                encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
                ids = [i for e in encodings for i in e.ids]
                with self._lock:
                    stats.unknown += sum(1 for i in ids if i == unk)
                    stats.sampled_tokens += len(ids)

    def _tokenizer(self, version: str, path: Path | None) -> tuple[Any, int] | None:
        if version not in self._tokenizers:
            found: tuple[Any, int] | None = None
            if path is not None and path.is_file():
                from embedops.models.tokens import read_tokenizer

                tokenizer = read_tokenizer(path)
                token = getattr(tokenizer.model, "unk_token", None) or "[UNK]"
                unk = tokenizer.token_to_id(token)
                if unk is not None:
                    found = (tokenizer, int(unk))
            if found is None:
                logger.info("drift: no unknown-token rate for %s (no tokenizer with one)", version)
            self._tokenizers[version] = found
        result: tuple[Any, int] | None = self._tokenizers[version]
        return result

    def _load(self, version: str) -> Stats | None:
        if self.store is None:
            return None
        path = baseline_path(self.store, version, self.prefix)
        try:
            baseline = Stats.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("drift: ignoring the baseline %s (%s); taking a new one", path, exc)
            return None
        logger.info("drift: %s measured against the baseline in %s", version, path)
        return baseline

    def _keep(self, version: str, baseline: Stats) -> Stats:
        """Save ``baseline``, unless another process saved one first (then use that)."""
        if self.store is None:
            return baseline
        path = baseline_path(self.store, version, self.prefix)
        saved = self._load(version)
        if saved is not None:
            return saved
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(baseline.to_json()), encoding="utf-8")
            os.replace(temporary, path)
            logger.info("drift: baseline of %s saved to %s", version, path)
        except OSError as exc:
            logger.warning("drift: cannot save the baseline %s (%s)", path, exc)
        return baseline
