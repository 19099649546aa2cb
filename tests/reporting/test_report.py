"""The HTML report renders from a real store: each plot is there with the series, points and
whiskers its input implies, nothing is fetched from elsewhere, and text is escaped."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedops.cli import app
from embedops.model_versions import Evaluation, ModelVersion
from embedops.quality import Gate
from embedops.registry import ModelRegistry
from embedops.reporting import load_report_data, render_report
from embedops.reporting.data import RUN_COUNTS
from tests.reporting.conftest import (
    DRIFT_ALERTS,
    INTERVALS,
    NOW,
    Node,
    experiment_report,
    parse,
    write_history,
)

runner = CliRunner()
ITEMS = "sku,title\nA1,red shoe\nA2,blue hat\nA3,\nA4,green sock\n"
CHANGED = "sku,title\nA1,red shoe\nA2,blue cap\nA3,\nA4,green sock\nA5,grey scarf\n"


def _embed(store: Path, source: Path) -> None:
    result = runner.invoke(
        app,
        ["embed", str(source), "--collection", "items", "--id-field", "sku", "--text-field",
         "title", "--store", str(store), "--backend", "hash", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr


def _register(store: Path) -> None:
    registry = ModelRegistry(store=store)
    gate = Gate(name="fp32", stsb_min=80.0)
    for version, score in (("m-onnx-fp32-aaaa", 82.0), ("m-onnx-int8-bbbb", 78.5)):
        failures = () if score >= 80 else (f"STS-B Spearman {score} is not >= 80.0",)
        evaluation = Evaluation(
            stsb_spearman=score, cosine_min=None, cosine_mean=None, reference=None, gate=gate,
            failures=failures, data="stsb-dev.tsv", evaluated_at="2026-12-04T09:00:00+00:00",
        )  # fmt: skip
        registry.register(
            ModelVersion(
                version=version, name="m", model="m", path="/m", local=True, digest="sha256:0",
                backend="onnx", engine="onnx", precision=version.split("-")[2], dim=384,
                max_tokens=256, evaluation=evaluation,
            )
        )  # fmt: skip
    registry.register(
        ModelVersion(
            version="m-static-pca256-cccc", name="m", model="m", path="/m", local=True,
            digest="sha256:1", backend="static", engine="static", precision="pca256", dim=256,
            max_tokens=512,
        )
    )  # fmt: skip
    registry.set_alias("candidate", "m-onnx-fp32-aaaa")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with three real runs (insert, unchanged, changed), a registry and a history."""
    root = tmp_path_factory.mktemp("report")
    store = root / "store"
    source = root / "items.csv"
    source.write_text(ITEMS)
    _embed(store, source)
    _embed(store, source)
    source.write_text(CHANGED)
    _embed(store, source)
    _register(store)
    write_history(store, old=4, broken=2)
    return store


@pytest.fixture(scope="module")
def page(store: Path) -> str:
    data = load_report_data(store, since_hours=24, now=NOW)
    data.experiments = [experiment_report(), experiment_report("no-feedback-yet")]
    for variant in data.experiments[1]["variants"]:
        variant.update(ctr=None, mrr=None, recall_at_k=None)
    return render_report(data)


@pytest.fixture(scope="module")
def root(page: str) -> Node:
    return parse(page)[0]


def _plot(root: Node, name: str, **attrs: str) -> Node:
    svg = root.one("svg", data_plot=name, **attrs)
    assert svg.child("title").full_text().strip()
    return svg


def _series(svg: Node) -> dict[str, int]:
    """Points per series, checked against the polyline's coordinates."""
    out = {}
    for group in svg.all("g", class_="series"):
        coords = [c for line in group.all("polyline") for c in line.attrs["points"].split()]
        assert len(coords) == int(group.attrs["data-points"])
        out[group.attrs["data-series"]] = len(coords)
    return out


def test_every_plot_is_there(root: Node) -> None:
    names = {svg.attrs["data-plot"] for svg in root.all("svg")}
    assert names == {
        "throughput", "latency", "errors", "drift-length_shift", "drift-unknown_token_rate",
        "drift-centroid_shift", "drift-norm", "canary", "experiment-ctr", "experiment-mrr",
        "experiment-recall", "experiment-error-rate", "experiment-latency", "experiment-shadow",
        "runs", "run-rate", "models-stsb",
    }  # fmt: skip
    for svg in root.all("svg"):
        assert svg.attrs["role"] == "img"
        assert svg.child("title").full_text()
    # each plot sits in a figure with a caption and its data as a table
    for figure in root.all("figure", class_="plot"):
        assert figure.one("figcaption").full_text()
        assert figure.one("details").all("table")


def test_traffic_series_and_points(root: Node) -> None:
    # two instances a minute fall in one bucket: INTERVALS points a line
    assert _series(_plot(root, "throughput")) == {
        "all requests/s": INTERVALS, "control requests/s": INTERVALS,
        "treatment requests/s": INTERVALS, "texts/s": INTERVALS,
    }  # fmt: skip
    latency = _series(_plot(root, "latency"))
    assert latency == dict.fromkeys(
        ["p50", "p95", "p99", "control p95", "treatment p95"], INTERVALS
    )
    assert _series(_plot(root, "errors")) == dict.fromkeys(
        ["all", "control", "treatment"], INTERVALS
    )


def test_drift_lines_thresholds_and_alerts(root: Node) -> None:
    svg = _plot(root, "drift-length_shift")
    assert _series(svg) == {"v1": INTERVALS, "v2": INTERVALS}
    assert [t.attrs["data-value"] for t in svg.all("line", class_="threshold")] == ["0.2"]
    v2 = svg.one("g", class_="series", data_series="v2")
    assert len(v2.all("circle", class_="alert")) == DRIFT_ALERTS
    assert not svg.one("g", class_="series", data_series="v1").all("circle", class_="alert")
    canary = _plot(root, "canary")
    assert _series(canary) == {"v1": INTERVALS}
    assert [t.attrs["data-value"] for t in canary.all("line", class_="threshold")] == ["0.8"]


def test_experiment_whiskers_per_variant(root: Node) -> None:
    name = "<script>alert(1)</script>"
    ctr = _plot(root, "experiment-ctr", data_experiment=name)
    assert [g.attrs["data-label"] for g in ctr.all("g", class_="row")] == ["control", "treatment"]
    assert len(ctr.all("line", class_="whisker")) == 2
    assert len(ctr.all("circle", class_="estimate")) == 2
    assert "31% [28%, 34%]" in ctr.full_text()
    mrr = _plot(root, "experiment-mrr", data_experiment=name)
    assert len(mrr.all("line", class_="whisker")) == 1  # treatment has no MRR yet
    assert "no data" in mrr.one("g", class_="row", data_label="treatment").full_text()
    recall = _plot(root, "experiment-recall", data_experiment=name)
    assert len(recall.all("line", class_="whisker")) == 1
    errors = _plot(root, "experiment-error-rate", data_experiment=name)
    assert len(errors.all("line", class_="whisker")) == 2
    latency = _plot(root, "experiment-latency", data_experiment=name)
    assert len(latency.all("line", class_="range")) == 2 and not latency.all(class_="whisker")
    shadow = _plot(root, "experiment-shadow", data_experiment=name)
    assert len(shadow.all("circle", class_="estimate")) == 3
    article = root.one("article", data_experiment=name)
    verdict = article.one("p", class_="verdict").full_text()
    assert "keep" in verdict and "p = 0.27" in verdict and "not significant" in verdict
    # the experiment without feedback has latency and errors, and says what it lacks
    quiet = root.one("article", data_experiment="no-feedback-yet")
    assert {s.attrs["data-plot"] for s in quiet.all("svg")} == {
        "experiment-error-rate", "experiment-latency", "experiment-shadow"
    }  # fmt: skip
    assert (
        "No data yet for: Click-through rate, Mean reciprocal rank, Recall@k" in quiet.full_text()
    )


def test_runs_from_real_run_logs(root: Node) -> None:
    bars = _plot(root, "runs").all("g", class_="bar")
    assert [b.attrs["data-status"] for b in bars] == ["finished"] * 3
    segments = [
        {s.attrs["data-category"]: float(s.attrs["data-value"]) for s in b.all(class_="segment")}
        for b in bars
    ]
    assert segments == [
        {"inserted": 3, "quarantined": 1},
        {"unchanged": 3, "quarantined": 1},
        {"inserted": 1, "updated": 1, "unchanged": 2, "quarantined": 1},
    ]
    assert set(segments[0]) <= set(RUN_COUNTS)
    assert _series(_plot(root, "run-rate")) == {"items": 3}
    published = root.one("section", id="runs").all("table")[-1]
    assert "published versions" in published.one("caption").full_text()
    rows = published.one("tbody").all("tr")
    assert len(rows) == 2  # the unchanged run published nothing new
    assert "all-minilm-l6-v2-hash-fp32" in rows[0].full_text()


def test_models(root: Node) -> None:
    stsb = _plot(root, "models-stsb")
    labels = [g.attrs["data-label"] for g in stsb.all("g", class_="row")]
    assert labels == ["m-onnx-fp32-aaaa", "m-onnx-int8-bbbb"]  # the unevaluated one has no score
    assert len(stsb.all("line", class_="mid")) == 2  # the gate's minimum
    text = root.one("section", id="models").full_text()
    assert "candidate" in text and "not evaluated" in text and "failed" in text


def test_offline_and_escaped(page: str, root: Node) -> None:
    _, refs = parse(page)
    assert refs and all(value.startswith("#") for _, _, value in refs)  # in-page links only
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.IGNORECASE)
    assert not root.all("script") and not root.all("link") and not root.all("img")
    assert "@import" not in page and "url(" not in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(page) < 400_000


def test_window_and_unreadable_lines(store: Path) -> None:
    recent = load_report_data(store, since_hours=24, now=NOW)
    assert len(recent.history) == 2 * INTERVALS  # the lines of two days ago are left out
    everything = load_report_data(store, now=NOW)
    assert len(everything.history) == 2 * INTERVALS + 4
    assert any("2 line(s)" in note for note in everything.notes)
    assert [r.counts["read"] for r in everything.runs] == [4, 4, 5]
    assert load_report_data(store, since_hours=24, now=NOW + 30 * 86400).runs == []


def test_empty_store_says_what_to_run(tmp_path: Path) -> None:
    root, _ = parse(render_report(load_report_data(tmp_path / "nothing")))
    assert not root.all("svg")
    texts = [p.full_text() for p in root.all("p", class_="empty")]
    assert len(texts) == 5
    assert any("embedops serve" in t for t in texts)
    assert any("embedops experiments create" in t for t in texts)
    assert any("embedops embed" in t for t in texts)
    assert any("embedops models add" in t for t in texts)


def test_experiments_load_through_the_experiments_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "experiments.json").write_text('{"experiments": {"rank-test": {}}}')
    module = types.ModuleType("embedops.experiments.report")
    calls: list[tuple[Path, str]] = []

    def fake_report(store: Path, name: str) -> dict[str, object]:
        calls.append((store, name))
        return experiment_report(name)

    module.experiment_report = fake_report  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "embedops.experiments.report", module)
    data = load_report_data(tmp_path)
    assert calls == [(tmp_path, "rank-test")]
    assert [r["experiment"] for r in data.experiments] == ["rank-test"]
    # without the module the report has no experiments, and says why
    monkeypatch.setitem(sys.modules, "embedops.experiments.report", None)
    data = load_report_data(tmp_path)
    assert data.experiments == [] and any("cannot report" in n for n in data.notes)


def test_odd_values_do_not_break_the_page(tmp_path: Path) -> None:
    """Lines and reports from other versions or half-written: wrong types are left out."""
    path = tmp_path / ".monitoring" / "history.jsonl"
    path.parent.mkdir(parents=True)
    odd = [
        {"time": "2026-12-04T11:00:00Z", "requests": "many", "by_variant": [], "drift": None},
        {"time": "2026-12-04T11:01:00", "requests": 10, "window_s": 0, "latency_ms": "fast",
         "by_variant": {"a": None}, "drift": {"v1": None, "v2": {"length_shift": "x"}},
         "canary": {"v1": {"spearman": None, "passed": "?"}}},
        {"time": "2026-12-04T11:02:00Z", "requests": 10, "errors": 1, "latency_ms": {"p95": 5},
         "drift": {"v1": {"centroid_shift": 0.5, "alerts": "centroid_shift"}}},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in odd) + "\n[1, 2]\n")
    data = load_report_data(tmp_path, now=NOW)
    assert len(data.history) == 3
    data.experiments = [
        {"experiment": "odd", "variants": "none"},
        {"experiment": 7, "variants": [{"label": None, "ctr": {"value": "high"}}, "x"],
         "test": None, "decision": None, "shadow": {"mean_cosine": float("nan")}},
    ]  # fmt: skip
    root, _ = parse(render_report(data))
    latency = _plot(root, "latency")
    assert _series(latency) == {"p95": 1}
    centroid = _plot(root, "drift-centroid_shift")
    assert len(centroid.all("circle", class_="alert")) == 1
    assert [a.attrs["data-experiment"] for a in root.all("article")] == ["odd", "7"]
