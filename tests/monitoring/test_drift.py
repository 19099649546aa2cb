"""``DriftMonitor`` on its own: the baseline is kept across restarts, PSI behaves, and with
the real model the centroid shift stays put on the same corpus and moves on another."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from embedops.config import Settings
from embedops.monitoring.drift import DriftMonitor, baseline_path, length_histogram, psi
from embedops.processor import EmbeddingProcessor
from tests.monitoring.conftest import ag_news_texts, sts_sentences

LIMITS = {"length_shift": 0.2, "unknown_token_rate": 0.05, "centroid_shift": 0.1}


def _vectors(n: int, seed: int, centre: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 8)) + centre
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_psi_is_zero_for_alike_histograms_and_grows_with_the_shift() -> None:
    short = length_histogram([10, 12, 14, 9, 11] * 20)
    assert psi(short, short) == pytest.approx(0.0)
    assert psi(short, length_histogram([11, 13, 10, 9, 12] * 20)) < 0.2
    assert psi(short, length_histogram([60, 70, 80] * 30)) > 5
    assert length_histogram([0, 7, 8, 511, 512, 5000]).tolist()[:2] == [2.0, 1.0]
    assert length_histogram([512, 5000])[-1] == 2


def test_the_baseline_is_saved_and_reused_after_a_restart(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(100)]
    first = DriftMonitor(tmp_path, 100, LIMITS)
    first.observe("v1", texts, [5] * 100, _vectors(100, 0))
    path = baseline_path(tmp_path, "v1")
    assert path.is_file() and first.values()["v1"]["length_shift"] == pytest.approx(0.0)

    again = DriftMonitor(tmp_path, 100, LIMITS)  # a restart: no baseline to form again
    again.observe("v1", texts[:50], [40] * 50, _vectors(50, 1, centre=3.0))
    moved = again.values()["v1"]
    assert moved["length_shift"] > 5 and moved["centroid_shift"] > 0.1
    assert moved["alerts"] == ["length_shift", "centroid_shift"]
    assert path.stat().st_mtime_ns == path.stat().st_mtime_ns  # not rewritten

    elsewhere = DriftMonitor(tmp_path / "other", 100, LIMITS)
    elsewhere.observe("v1", texts[:50], [40] * 50, _vectors(50, 1, centre=3.0))
    assert set(elsewhere.values()["v1"]) == {"norm_mean", "norm_std", "alerts"}  # no baseline


def test_a_corrupt_baseline_is_replaced(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, "v/1")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    monitor = DriftMonitor(tmp_path, 10, LIMITS)
    monitor.observe("v/1", ["a"] * 10, [3] * 10, _vectors(10, 0))
    assert '"texts": 10' in path.read_text()


@pytest.mark.integration
@pytest.mark.quality
def test_real_model_centroid_shift_stays_put_then_moves(tmp_path: Path) -> None:
    processor = EmbeddingProcessor(settings=Settings(store=tmp_path, backend="onnx"))
    processor.open()
    embedder = processor.embedder
    tokenizer = embedder.spec.path / "tokenizer.json"
    window = 1000
    monitor = DriftMonitor(None, window, LIMITS)
    sts = sts_sentences()
    random.Random(0).shuffle(sts)

    def feed(texts: list[str]) -> dict[str, object]:
        for i in range(0, len(texts), 100):
            chunk = texts[i : i + 100]
            vectors = embedder.embed(chunk)
            monitor.observe("v", chunk, embedder.count_tokens(chunk), vectors, tokenizer)
        return monitor.refresh()["v"]

    try:
        feed(sts[:window])
        same = feed(sts[window : 2 * window])
        titles = [text.split(". ")[0] for text in ag_news_texts()[:window]]
        news = feed(titles)
    finally:
        processor.close()
    assert same["alerts"] == [], same
    assert same["centroid_shift"] < 0.07 and same["length_shift"] < 0.1, same  # type: ignore[operator]
    assert same["norm_mean"] == pytest.approx(1.0, abs=1e-4)
    assert news["centroid_shift"] > 0.3, news  # type: ignore[operator]
    assert "centroid_shift" in news["alerts"] and "length_shift" in news["alerts"], news  # type: ignore[operator]
