"""``embedops bench``: the backends side by side on a user's texts (installed CLI, no checkout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embedops.bench import SAMPLE_TEXTS, agreement, read_texts, run_bench
from embedops.cli import app
from embedops.errors import ConfigError

runner = CliRunner()


def test_agreement_of_identical_and_of_shuffled_vectors() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cos_min, cos_mean, overlap = agreement(vectors, vectors)
    assert cos_min == pytest.approx(1.0, abs=1e-5) and cos_mean == pytest.approx(1.0, abs=1e-5)
    assert overlap == pytest.approx(1.0)
    other = rng.normal(size=(30, 8)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    cos_min, cos_mean, overlap = agreement(other, vectors)
    assert cos_mean is not None and cos_mean < 0.5
    assert overlap is not None and overlap < 0.6
    # Different dimensions: no cosine, but neighbours still compare.
    cos_min, _, overlap = agreement(vectors[:, :4].copy(), vectors)
    assert cos_min is None and overlap is not None


def test_read_texts_from_txt_jsonl_and_the_samples(tmp_path: Path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("first text\n\n  second text  \nthird\n")
    assert read_texts(txt, limit=2) == ["first text", "second text"]
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("".join(json.dumps({"body": f"item {i}"}) + "\n" for i in range(5)))
    assert read_texts(jsonl, text_field="body", limit=3) == ["item 0", "item 1", "item 2"]
    with pytest.raises(ConfigError, match="no field 'text'"):
        read_texts(jsonl)
    assert read_texts(None) == list(SAMPLE_TEXTS)


def test_run_bench_times_each_backend() -> None:
    results = run_bench(list(SAMPLE_TEXTS), backends=["hash"], rounds=2)
    assert results["reference"] == "hash" and results["texts"] == len(SAMPLE_TEXTS)
    (row,) = results["results"]
    assert row["backend"] == "hash" and row["cosine_mean"] is None  # the reference itself
    assert row["texts_per_s"] >= row["texts_per_s_median"] > 0 and row["tokens_per_s"] > 0


def test_run_bench_refuses_a_reference_that_does_not_run() -> None:
    with pytest.raises(ConfigError, match="reference backend 'torch'"):
        run_bench(["a"], backends=["hash"], reference="torch")
    with pytest.raises(ConfigError, match="name each backend once"):
        run_bench(["a"], backends=["hash", "hash"])


def test_cli_bench_writes_json(tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SAMPLE_TEXTS))
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app, ["bench", str(texts), "--backends", "hash", "--rounds", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["hash"]
    assert "texts/s" in result.stdout
