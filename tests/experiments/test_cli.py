"""``embedops experiments``: create, list, show, report, stop, and promote through the
registry's quality gate."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cli import app
from embedops.experiments.definitions import ExperimentStore
from embedops.registry import PRODUCTION, ModelRegistry
from embedops.store import VectorStore
from tests.experiments.conftest import register, register_evaluated, tiny_model

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_create_list_show_report_stop(tmp_path: Path, models: dict[str, Path]) -> None:
    store = tmp_path / "store"
    version_a = register(store, models["a"])
    s = str(store)
    code, stdout, stderr = _run(
        "experiments", "create", "ab", "--store", s, "--backend", "hash",
        "--variant", f"a={version_a}:90",
        "--variant", f"b={models['b']}:10",  # a directory, pinned with --backend
        "--shadow", version_a, "--shadow-rate", "0.25", "--collection", "docs",
    )  # fmt: skip
    assert code == 0, stderr
    assert f"a: {version_a} (90%)" in stdout
    experiment = ExperimentStore(store).get("ab")
    b = experiment.variant("b")
    assert b.version.startswith("model-b-hash-fp32-") and b.backend == "hash"
    assert experiment.shadow is not None and experiment.shadow.rate == 0.25
    assert experiment.collection == "docs" and experiment.status == "running"

    code, stdout, _ = _run("experiments", "list", "--store", s, "--json")
    assert code == 0 and [e["name"] for e in json.loads(stdout)] == ["ab"]
    code, stdout, _ = _run("experiments", "show", "ab", "--store", s, "--json")
    assert json.loads(stdout)["variants"][1]["version"] == b.version

    # A second running experiment is refused: one runs at a time.
    code, _, stderr = _run(
        "experiments", "create", "other", "--store", s, "--variant", f"a={version_a}:1"
    )
    assert code == 9 and "'ab' is running" in stderr

    code, stdout, _ = _run("experiments", "report", "ab", "--store", s, "--json")
    report = json.loads(stdout)
    assert [v["requests"] for v in report["variants"]] == [0, 0]
    assert report["decision"] == "keep" and report["shadow"]["samples"] == 0
    code, stdout, _ = _run("experiments", "report", "ab", "--store", s)
    assert code == 0 and "decision: keep" in stdout

    code, stdout, _ = _run("experiments", "stop", "ab", "--store", s)
    assert code == 0 and "stopped" in stdout
    assert ExperimentStore(store).running() is None


def test_bad_variants_are_one_line_errors(tmp_path: Path, models: dict[str, Path]) -> None:
    s = str(tmp_path / "store")
    for bad in ("a=model", "a:1", "=m:1", "a=m:heavy"):
        code, _, stderr = _run("experiments", "create", "x", "--store", s, "--variant", bad)
        assert code == 9 and "LABEL=MODEL:WEIGHT" in stderr, bad
    code, _, stderr = _run(
        "experiments", "create", "x", "--store", s, "--variant", "a=/nowhere/model:1"
    )
    assert code == 7, stderr  # ModelLoadError
    code, _, stderr = _run("experiments", "show", "missing", "--store", s)
    assert code == 9 and "no experiment 'missing'" in stderr


def test_promote_goes_through_the_quality_gate(tmp_path: Path, models: dict[str, Path]) -> None:
    store = tmp_path / "store"
    s = str(store)
    version_a = register_evaluated(store, models["a"], passed=True)
    version_b = register(store, models["b"])  # never evaluated
    failing = register_evaluated(store, tiny_model(tmp_path / "m", "model-c", 16), passed=False)
    # The collection is published with b's table; a's is built beside it.
    items = [{"id": "1", "text": "red hat"}, {"id": "2", "text": "blue shirt"}]
    for version in (version_b, version_a):
        with EmbeddingProcessor(store=store, model=version, backend="hash") as processor:
            processor.upsert("docs", items)
    catalog = VectorStore(store).catalog
    assert catalog.published("docs").model_version == version_b  # type: ignore[union-attr]
    code, _, stderr = _run(
        "experiments", "create", "ab", "--store", s, "--collection", "docs",
        "--variant", f"a={version_a}:50", "--variant", f"b={version_b}:40",
        "--variant", f"c={failing}:10",
    )  # fmt: skip
    assert code == 0, stderr
    registry = ModelRegistry(store=store)

    code, _, stderr = _run("experiments", "promote", "ab", "b", "--store", s)
    assert code == 12 and "was not evaluated" in stderr  # QualityGateFailed
    code, _, stderr = _run("experiments", "promote", "ab", "c", "--store", s)
    assert code == 12 and "quality gate failed" in stderr
    assert PRODUCTION not in registry.aliases()
    assert ExperimentStore(store).get("ab").status == "running"
    assert catalog.published("docs").model_version == version_b  # type: ignore[union-attr]

    code, stdout, stderr = _run("experiments", "promote", "ab", "a", "--store", s)
    assert "production -> " in stdout
    assert code == 0, stderr
    assert registry.aliases()[PRODUCTION].version == version_a
    assert catalog.published("docs").model_version == version_a  # type: ignore[union-attr]
    promoted = ExperimentStore(store).get("ab")
    assert (promoted.status, promoted.promoted) == ("promoted", "a")
    assert promoted.ended is not None


def test_definitions_store(tmp_path: Path, models: dict[str, Path]) -> None:
    import dataclasses

    import pytest

    from embedops.errors import ConfigError
    from embedops.experiments.definitions import Experiment, Variant

    experiments = ExperimentStore(tmp_path / "store")
    assert experiments.list() == [] and experiments.running() is None
    variant = Variant(label="a", model="m", weight=1.0, version="v", backend="hash")
    first = experiments.create(Experiment(name="one", variants=(variant,)))
    assert experiments.running() == first
    # A running experiment may be replaced (new weights); its start time is kept.
    heavier = dataclasses.replace(variant, weight=3.0)
    replaced = experiments.put(
        Experiment(name="one", variants=(heavier,), started="2000-01-01T00:00:00+00:00"),
        replace=True,
    )
    assert replaced.started == first.started and experiments.get("one").variants == (heavier,)
    experiments.finish("one")
    # An ended experiment's name stays taken: its log belongs to its report.
    with pytest.raises(ConfigError, match="exists \\(stopped\\)"):
        experiments.put(Experiment(name="one", variants=(variant,)), replace=True)
    for bad in (
        {"name": "Bad Name"},
        {"variants": ()},
        {"variants": (variant, variant)},
        {"variants": (dataclasses.replace(variant, weight=0.0),)},
    ):
        with pytest.raises(ConfigError):
            Experiment(**({"name": "x", "variants": (variant,)} | bad))  # type: ignore[arg-type]
    assert json.loads(experiments.path.read_text())["experiments"]["one"]["status"] == "stopped"
    assert experiments.log_path("one") == tmp_path / "store" / ".experiments" / "one.sqlite"
