"""The quality canary: pairs files, thresholds, and the real default model in a service."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from embedops.config import Settings
from embedops.errors import InputError
from embedops.monitoring.canary import Canary, CanaryGauges, read_pairs, threshold_for
from embedops.monitoring.history import read_history
from embedops.processor import EmbeddingProcessor
from tests.conftest import shared_file
from tests.monitoring.conftest import scrape, value, wait_for
from tests.service.conftest import Server


def _pairs_file(folder: Path, n: int = 200) -> Path:
    """``n`` STS-B dev pairs (a seeded sample) as ``sentence1, sentence2, score`` with a
    header: a small held-out set written for the test, never kept in the repository."""
    rows = shared_file("stsb-dev.tsv").read_text(encoding="utf-8").splitlines()
    sample = random.Random(7).sample(rows, n)
    lines = ["sentence1\tsentence2\tscore"]
    lines += [f"{r.split(chr(9))[5]}\t{r.split(chr(9))[6]}\t{r.split(chr(9))[4]}" for r in sample]
    path = folder / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pairs_are_read_in_both_layouts(tmp_path: Path) -> None:
    three = _pairs_file(tmp_path, 5)
    pairs = read_pairs(three)
    assert len(pairs.scores) == 5 and len(pairs.first) == len(pairs.second) == 5
    sts = read_pairs(shared_file("stsb-dev.tsv"))
    assert len(sts.scores) == 1500 and sts.scores[0] == 5.0
    assert sts.first[0] == "A man with a hard hat is dancing."
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t1\nc\td\tnot a score\n")
    with pytest.raises(InputError, match=r"bad\.tsv:2"):
        read_pairs(bad)
    bad.write_text("a\tb\n")
    with pytest.raises(InputError, match="2 columns"):
        read_pairs(bad)
    with pytest.raises(InputError, match="not found"):
        read_pairs(tmp_path / "missing.tsv")


def test_an_unregistered_version_is_held_to_the_setting(tmp_path: Path) -> None:
    settings = Settings(store=tmp_path, canary_min_spearman=0.6)
    assert threshold_for("some-version", settings) == 0.6


def test_the_hash_backend_fails_the_canary(tmp_path: Path) -> None:
    settings = Settings(store=tmp_path, backend="hash", canary_pairs=_pairs_file(tmp_path))
    registry = CollectorRegistry()
    canary = Canary(settings, CanaryGauges(registry))
    with EmbeddingProcessor(settings=settings) as processor:
        [result] = canary.run([processor.embedder])
    assert result.spearman < 0.75 and not result.passed and result.threshold == 0.75
    version = {"model_version": result.model_version}
    assert registry.get_sample_value("embedops_quality_canary_passed", version) == 0
    assert registry.get_sample_value("embedops_quality_canary_spearman", version) == pytest.approx(
        result.spearman
    )


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("canary")
    server = Server(
        folder / "store",
        backend="onnx",
        canary_pairs=_pairs_file(folder),
        canary_interval_s=3600,
        monitor_interval_s=1,
    )
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.quality
def test_the_real_model_passes_the_canary_in_the_service(real_server: Server) -> None:
    started = time.time()

    def ran() -> bool:
        return any(name == "embedops_quality_canary_spearman" for name, _ in scrape(real_server))

    wait_for(ran, timeout=120)
    samples = scrape(real_server)
    [(_, labels)] = [key for key in samples if key[0] == "embedops_quality_canary_spearman"]
    version = dict(labels)["model_version"]
    spearman = value(samples, "embedops_quality_canary_spearman", model_version=version)
    assert spearman is not None and 0.80 <= spearman <= 0.95, spearman
    assert value(samples, "embedops_quality_canary_passed", model_version=version) == 1
    last = value(
        samples, "embedops_quality_canary_last_run_timestamp_seconds", model_version=version
    )
    assert last is not None and started - 120 <= last <= time.time()

    def logged() -> bool:
        return any("canary" in line for line in read_history(real_server.store))

    wait_for(logged, timeout=30)
    line = next(line for line in read_history(real_server.store) if "canary" in line)
    assert line["canary"][version] == {
        "spearman": pytest.approx(spearman),
        "threshold": 0.75,
        "passed": True,
    }
