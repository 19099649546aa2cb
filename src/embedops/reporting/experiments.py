"""The report's experiments section: per experiment, its variants' metrics with their 95%
intervals (CTR, MRR, recall@k, error rate, latency), the test, the suggested decision and the
shadow candidate's agreement. The input is the experiment report dict of
``embedops.experiments.report`` (its fields in ``docs/mlops.md``); fields that are missing
or not numbers show as "no data", never as an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from embedops.reporting.blocks import badge, empty, figure, table
from embedops.reporting.svg import Interval, esc, fmt, interval_chart

EXPERIMENT_COMMAND = (
    "embedops experiments create NAME --variant a=MODEL:0.9 --variant b=MODEL:0.1, "
    "then traffic through embedops serve and POST /v1/feedback"
)
# (key in the variant dict, plot name, title, axis label, shown as a percentage)
METRICS = (
    ("ctr", "experiment-ctr", "Click-through rate", "CTR, 95% interval", True),
    ("mrr", "experiment-mrr", "Mean reciprocal rank", "MRR, 95% interval", False),
    ("recall_at_k", "experiment-recall", "Recall@k", "recall, 95% interval", True),
    ("error_rate", "experiment-error-rate", "Error rate", "errors, 95% interval", True),
)
DECISION_KINDS = {"promote": "good", "stop": "bad", "keep": "info"}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _variants(report: dict[str, Any]) -> list[dict[str, Any]]:
    variants = report.get("variants")
    return [v for v in variants if isinstance(v, dict)] if isinstance(variants, list) else []


def metric_rows(variants: Sequence[dict[str, Any]], key: str) -> list[Interval]:
    """One row per variant for ``key``: the value and its interval, where there is one."""
    rows = []
    for variant in variants:
        metric = _dict(variant.get(key))
        rows.append(
            Interval(
                label=str(variant.get("label", "?")),
                value=_number(metric.get("value")),
                low=_number(metric.get("low")),
                high=_number(metric.get("high")),
            )
        )
    return rows


def latency_rows(variants: Sequence[dict[str, Any]]) -> list[Interval]:
    """One row per variant: the p50 dot, a bar from p50 to p99 and a tick at p95."""
    rows = []
    for variant in variants:
        latency = _dict(variant.get("latency_ms"))
        p50, p95, p99 = (_number(latency.get(p)) for p in ("p50", "p95", "p99"))
        note = None
        if p50 is not None:
            note = " / ".join(fmt(v) if v is not None else "–" for v in (p50, p95, p99)) + " ms"
        rows.append(
            Interval(
                label=str(variant.get("label", "?")),
                value=p50,
                low=p50,
                high=p99,
                mid=p95,
                note=note,
            )
        )
    return rows


def _interval_text(metric: object, *, percent: bool) -> str:
    values = _dict(metric)
    value = _number(values.get("value"))
    if value is None:
        return "–"
    low, high = _number(values.get("low")), _number(values.get("high"))
    text = fmt(value, percent=percent)
    if low is not None and high is not None:
        text += f" [{fmt(low, percent=percent)}, {fmt(high, percent=percent)}]"
    return text


def _variant_table(variants: Sequence[dict[str, Any]]) -> str:
    rows: list[list[object]] = []
    for v in variants:
        latency = _dict(v.get("latency_ms"))
        recall = _dict(v.get("recall_at_k"))
        k = recall.get("k")
        rows.append(
            [
                str(v.get("label", "?")),
                str(v.get("model_version", "")),
                _number(v.get("weight")),
                v.get("requests") if isinstance(v.get("requests"), int) else None,
                v.get("errors") if isinstance(v.get("errors"), int) else None,
                v.get("feedback") if isinstance(v.get("feedback"), int) else None,
                _interval_text(v.get("ctr"), percent=True),
                _interval_text(v.get("mrr"), percent=False),
                _interval_text(recall, percent=True) + (f" @{k}" if isinstance(k, int) else ""),
                _interval_text(v.get("error_rate"), percent=True),
                " / ".join(
                    fmt(n) if (n := _number(latency.get(p))) is not None else "–"
                    for p in ("p50", "p95", "p99")
                ),
            ]
        )
    headers = [
        "variant",
        "model version",
        "weight",
        "requests",
        "errors",
        "feedback",
        "CTR",
        "MRR",
        "recall@k",
        "error rate",
        "p50 / p95 / p99 ms",
    ]
    return table(headers, rows)


def _verdict(report: dict[str, Any]) -> str:
    test = _dict(report.get("test"))
    decision = str(report.get("decision", "keep"))
    p_value = _number(test.get("p_value"))
    p_text = "p not computed" if p_value is None else f"p = {p_value:.3g}"
    significant = "significant" if test.get("significant") else "not significant"
    return (
        '<p class="verdict">Suggested decision: '
        f"{badge(decision, DECISION_KINDS.get(decision, 'info'))} "
        f"{esc(report.get('reason', ''))}<br>Test on {esc(test.get('metric', 'ctr'))}: "
        f"{esc(test.get('method', '?'))}, {esc(p_text)}, {esc(significant)} at 5%.</p>"
    )


def _shadow(report: dict[str, Any], name: str) -> str:
    shadow = report.get("shadow")
    if not isinstance(shadow, dict):
        return ""
    keys = (
        ("mean_cosine", "mean cosine"),
        ("topk_overlap", "top-k overlap"),
        ("rank_correlation", "rank correlation"),
    )
    rows = [Interval(label=label, value=_number(shadow.get(key))) for key, label in keys]
    candidate = str(shadow.get("candidate", "?"))
    samples = shadow.get("samples")
    svg = interval_chart(
        name="experiment-shadow",
        title=f"Shadow agreement of {candidate}",
        rows=rows,
        x_label="agreement with production (1 = the same)",
        attrs={"data-experiment": name},
    )
    text = table(
        ["candidate", "samples", *[label for _, label in keys]],
        [[candidate, samples if isinstance(samples, int) else None, *[r.value for r in rows]]],
    )
    caption = f"Shadow candidate {candidate} on {samples} sampled live requests."
    return figure(svg, caption, text)


def experiment_block(report: dict[str, Any]) -> str:
    """One experiment: header, verdict, a chart per metric with data, tables."""
    name = str(report.get("experiment", "?"))
    variants = _variants(report)
    status = str(report.get("status", "?"))
    meta = [f"status {status}", f"started {report.get('started', '?')}"]
    if report.get("collection"):
        meta.append(f"collection {report['collection']}")
    parts = [
        f'<article class="experiment" data-experiment="{esc(name)}">'
        f'<h3>{esc(name)}</h3><p class="meta">{esc(" · ".join(meta))}</p>',
        _verdict(report),
    ]
    missing: list[str] = []
    for key, plot, title, axis, percent in METRICS:
        rows = metric_rows(variants, key)
        if all(r.value is None for r in rows):
            missing.append(title)
            continue
        svg = interval_chart(
            name=plot,
            title=f"{title}: {name}",
            rows=rows,
            x_label=axis,
            percent=percent,
            attrs={"data-experiment": name},
        )
        caption = f"{title} per variant; whiskers: 95% intervals."
        fallback = table(
            ["variant", title],
            [
                [r.label, _interval_text(_dict(v.get(key)), percent=percent)]
                for r, v in zip(rows, variants, strict=True)
            ],
        )
        parts.append(figure(svg, caption, fallback))
    latency = latency_rows(variants)
    if any(r.value is not None for r in latency):
        svg = interval_chart(
            name="experiment-latency",
            title=f"Latency: {name}",
            rows=latency,
            x_label="latency (ms)",
            kind="range",
            attrs={"data-experiment": name},
        )
        caption = "Latency per variant: dot p50, bar p50 to p99, tick p95."
        fallback = table(["variant", "p50 / p95 / p99"], [[r.label, r.note] for r in latency])
        parts.append(figure(svg, caption, fallback))
    else:
        missing.append("Latency")
    if missing:
        parts.append(
            f'<p class="empty">No data yet for: {esc(", ".join(missing))} '
            "(quality needs feedback: <code>POST /v1/feedback</code>).</p>"
        )
    parts += [_variant_table(variants), _shadow(report, name), "</article>"]
    return "".join(parts)


def experiments_section(reports: Sequence[dict[str, Any]]) -> str:
    """Every experiment's block, or how to start one."""
    if not reports:
        return empty("No experiments in this store.", EXPERIMENT_COMMAND)
    return "".join(experiment_block(report) for report in reports)


def summary(reports: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Headline: experiments running."""
    if not reports:
        return []
    running = sum(1 for r in reports if r.get("status") == "running")
    return [("experiments", f"{len(reports)} ({running} running)")]
