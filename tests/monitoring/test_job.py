"""A batch run exports the service's batch and drift names beside its own; a later run of
the collection is measured against the first."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.monitoring.drift import baseline_path
from tests.monitoring.conftest import ag_news_texts, sts_sentences

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _run(tmp_path: Path, texts: list[str], name: str) -> tuple[Samples, str, int]:
    source = tmp_path / f"{name}.csv"
    with source.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows([f"{name}-{i}", text] for i, text in enumerate(texts))
    out = tmp_path / f"{name}.prom"
    settings = Settings(store=tmp_path / "s", backend="hash")
    with EmbeddingProcessor(settings=settings) as processor:
        report = processor.process(
            source, collection="c", id_field="id", text_field="text", metrics_file=out
        )
        version = processor.embedder.spec.version
    assert report.inserted == len(texts)
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(out.read_text())
        for s in family.samples
    }
    return samples, version, report.tokens


def test_runs_export_batch_sizes_tokens_and_drift_against_the_first_run(
    tmp_path: Path,
) -> None:
    sts = sts_sentences()
    random.Random(0).shuffle(sts)  # the file is grouped by genre
    first, version, tokens = _run(tmp_path, sts[:600], "first")
    label = frozenset({("model_version", version)})
    assert first[("embedops_batch_texts_sum", label)] == 600
    assert first[("embedops_batch_tokens_sum", label)] == tokens
    assert first[("embedops_embedding_norm_mean", label)] == pytest.approx(1.0, abs=1e-5)
    assert ("embedops_drift_input_length_shift", label) not in first  # nothing to compare
    assert baseline_path(tmp_path / "s", version, "run-c").is_file()

    same, _, _ = _run(tmp_path, sts[600:1200], "same")
    assert same[("embedops_drift_input_length_shift", label)] < 0.2
    news, _, _ = _run(tmp_path, ag_news_texts()[:600], "news")
    assert news[("embedops_drift_input_length_shift", label)] > 1.0
    alert = ("embedops_drift_alert", frozenset({*label, ("signal", "length_shift")}))
    assert same[alert] == 0 and news[alert] == 1
    threshold = ("embedops_drift_threshold", frozenset({("signal", "centroid_shift")}))
    assert news[threshold] == 0.1
