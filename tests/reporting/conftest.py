"""Inputs of the report tests (a monitoring history, experiment reports, model versions) and a
small reader of the rendered HTML built on the standard library's ``html.parser``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()
INTERVALS = 60  # monitoring lines per instance in the history fixture
DRIFT_ALERTS = 5  # the newest intervals where v2's length shift is over its threshold


@dataclass
class Node:
    """An element of the parsed page."""

    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants with ``tag`` (any: ``None``) and these attributes (``class_`` for class,
        matched as one of the classes; ``data_plot`` for data-plot)."""
        found: list[Node] = []
        for child in self.children:
            if (tag is None or child.tag == tag) and _matches(child, attrs):
                found.append(child)
            found.extend(child.all(tag, **attrs))
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]

    def child(self, tag: str) -> Node:
        """The one direct child ``tag``."""
        found = [c for c in self.children if c.tag == tag]
        assert len(found) == 1, f"{len(found)} <{tag}> children"
        return found[0]

    def full_text(self) -> str:
        return "".join(self.text) + "".join(c.full_text() for c in self.children)


def _matches(node: Node, attrs: dict[str, str]) -> bool:
    for key, value in attrs.items():
        name = "class" if key == "class_" else key.replace("_", "-")
        if name == "class":
            if value not in node.attrs.get("class", "").split():
                return False
        elif node.attrs.get(name) != value:
            return False
    return True


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value) of src/href

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.refs += [(tag, k, v) for k, v in values.items() if k in ("src", "href", "xlink:href")]
        node = Node(tag, values)
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def parse(page: str) -> tuple[Node, list[tuple[str, str, str]]]:
    """The page's element tree (tags must nest) and its src/href references."""
    builder = _Builder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root, builder.refs


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def history_line(moment: float, instance: str, index: int) -> dict[str, Any]:
    """One monitoring line: instance ``a`` serves 120 requests a minute, ``b`` 180; variant
    ``control`` (v1) 90% of them, ``treatment`` (v2) 10%."""
    requests = 120 if instance == "a" else 180
    control, treatment = requests * 9 // 10, requests // 10
    latency = {"p50": 10.0 + index % 5, "p95": 30.0, "p99": 50.0}
    v2_shift = 0.3 if index >= INTERVALS - DRIFT_ALERTS else 0.05
    return {
        "time": _iso(moment),
        "instance": f"host:{instance}",
        "window_s": 60.0,
        "requests": requests,
        "errors": 3,
        "texts": requests * 2,
        "tokens": requests * 40,
        "latency_ms": latency,
        "texts_per_s": requests * 2 / 60,
        "by_variant": {
            "control": {"model_version": "v1", "requests": control, "errors": 2,
                        "latency_ms": latency},
            "treatment": {"model_version": "v2", "requests": treatment, "errors": 1,
                          "latency_ms": {"p50": 12.0, "p95": 35.0, "p99": 60.0}},
        },
        "drift": {
            "v1": {"length_shift": 0.05, "unknown_token_rate": 0.01, "centroid_shift": 0.02,
                   "norm_mean": 1.0, "norm_std": 0.01, "alerts": []},
            "v2": {"length_shift": v2_shift, "unknown_token_rate": 0.02, "centroid_shift": 0.03,
                   "norm_mean": 1.0, "norm_std": 0.02,
                   "alerts": ["length_shift"] if v2_shift > 0.2 else []},
        },
        "canary": {"v1": {"spearman": 0.82, "threshold": 0.8, "passed": True}},
    }  # fmt: skip


def write_history(store: Path, *, old: int = 0, broken: int = 0) -> Path:
    """``INTERVALS`` minutes of history from two instances ending at ``NOW``, plus ``old``
    lines from two days before and ``broken`` lines that are not valid."""
    path = store / ".monitoring" / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    start = NOW - INTERVALS * 60
    for index in range(INTERVALS):
        for instance in ("a", "b"):
            lines.append(json.dumps(history_line(start + index * 60 + 5, instance, index)))
    lines += [json.dumps(history_line(NOW - 48 * 3600 + i * 60, "a", 0)) for i in range(old)]
    lines += ['{"time": "2026-12-04T11:00:00+00:00", "requ', '{"no_time": 1}'][:broken]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": value, "low": low, "high": high}


def experiment_report(name: str = "<script>alert(1)</script>") -> dict[str, Any]:
    """An experiment report as ``embedops experiments report --json`` prints it: ``control``
    has every quality metric, ``treatment`` only CTR (no MRR, no recall)."""
    return {
        "experiment": name,
        "status": "running",
        "started": "2026-12-04T10:00:00+00:00",
        "collection": "items",
        "variants": [
            {"label": "control", "model_version": "v1", "weight": 0.9, "requests": 9000,
             "errors": 18, "error_rate": interval(0.002, 0.0013, 0.0032),
             "latency_ms": {"p50": 11.0, "p95": 30.0, "p99": 50.0}, "feedback": 800,
             "ctr": interval(0.31, 0.28, 0.34), "mrr": interval(0.42, 0.39, 0.45),
             "recall_at_k": {"value": 0.6, "low": 0.55, "high": 0.65, "k": 10}},
            {"label": "treatment", "model_version": "v2", "weight": 0.1, "requests": 1000,
             "errors": 4, "error_rate": interval(0.004, 0.0016, 0.0102),
             "latency_ms": {"p50": 12.0, "p95": 35.0, "p99": 60.0}, "feedback": 90,
             "ctr": interval(0.36, 0.27, 0.46), "mrr": None, "recall_at_k": None},
        ],
        "test": {"metric": "ctr", "method": "two-proportion z-test", "p_value": 0.27,
                 "significant": False},
        "decision": "keep",
        "reason": "not enough evidence yet",
        "shadow": {"candidate": "v3", "samples": 120, "mean_cosine": 0.93,
                   "topk_overlap": 0.81, "rank_correlation": 0.77},
    }  # fmt: skip
