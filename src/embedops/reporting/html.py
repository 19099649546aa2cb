"""The report page: one self-contained HTML file (inline CSS and SVG, no scripts, no fonts,
nothing fetched), so that it opens offline, from a mail attachment or a CI artefact.

Sections: headline numbers, traffic (throughput, latency, errors), drift and the quality
canary, experiments, runs and published versions, models. A section without data says which
command produces it.
"""

from __future__ import annotations

from embedops import __version__
from embedops.reporting import experiments, runs, traffic
from embedops.reporting.blocks import utc
from embedops.reporting.data import ReportData
from embedops.reporting.svg import esc

CSS = """
:root { --ink: #1d2733; --muted: #5b6878; --line: #d8dee6; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #fff; }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 32px; background: var(--panel); border-bottom: 1px solid var(--line); }
nav a { margin-right: 16px; color: #0b5cad; text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1200px; }
section { margin-top: 28px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--ink); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 16px; min-width: 140px; }
.card b { display: block; font-size: 20px; overflow-wrap: anywhere; }
.card span { color: var(--muted); font-size: 12px; text-transform: uppercase; }
figure.plot { margin: 16px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure.plot figcaption { color: var(--muted); font-size: 12px; max-width: 760px; }
svg.chart { max-width: 100%; height: auto; font-size: 11px; background: #fff; }
svg.chart text { fill: var(--ink); }
svg.chart .grid { stroke: #eef1f4; }
svg.chart .axis, svg.chart .tick-mark { stroke: #9aa5b1; }
svg.chart .tick, svg.chart .value { fill: var(--muted); }
svg.chart .axis-label { fill: var(--muted); font-size: 11px; }
details.fallback { font-size: 12px; }
details.fallback summary { cursor: pointer; color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
caption { text-align: left; color: var(--muted); padding-bottom: 2px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--panel); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { border-radius: 3px; padding: 0 6px; font-size: 12px; color: #fff; }
.badge.good { background: #1e8449; } .badge.bad { background: #c0392b; }
.badge.warn { background: #b9770e; } .badge.info { background: #2e6da4; }
.empty { color: var(--muted); font-style: italic; }
.notes { background: #fff7e6; border: 1px solid #f0d9a8; padding: 8px 12px; }
.meta { color: var(--muted); margin: 0; }
article.experiment { border-top: 1px solid var(--line); margin-top: 12px; }
footer { color: var(--muted); font-size: 12px; padding: 12px 32px; }
code { background: var(--panel); padding: 1px 4px; border-radius: 3px; }
"""

SECTIONS = (
    ("traffic", "Traffic and latency"),
    ("drift", "Drift and quality canary"),
    ("experiments", "Experiments"),
    ("runs", "Runs"),
    ("models", "Models"),
)


def _cards(data: ReportData) -> str:
    items = traffic.summary(data) + experiments.summary(data.experiments) + runs.summary(data)
    if not items:
        return ""
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><span>{esc(k)}</span><b>{esc(v)}</b></div>' for k, v in items)
        + "</div>"
    )


def render_report(data: ReportData) -> str:
    """The whole report of ``data`` as one HTML document."""
    window = (
        f"the last {data.since_hours:g} hours" if data.since_hours is not None else "all history"
    )
    bodies = {
        "traffic": traffic.traffic_section(data),
        "drift": traffic.drift_section(data),
        "experiments": experiments.experiments_section(data.experiments),
        "runs": runs.runs_section(data),
        "models": runs.models_section(data),
    }
    notes = (
        '<div class="notes"><b>Left out:</b><ul>'
        + "".join(f"<li>{esc(note)}</li>" for note in data.notes)
        + "</ul></div>"
        if data.notes
        else ""
    )
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in SECTIONS)
    sections = "".join(
        f'<section id="{key}"><h2>{esc(title)}</h2>{bodies[key]}</section>'
        for key, title in SECTIONS
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>embedops report: {esc(data.store)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>embedops report</h1><p>store <code>{esc(data.store)}</code> · "
        f"{esc(window)} · generated {esc(utc(data.generated))}</p>{_cards(data)}</header>"
        f"<nav>{nav}</nav><main>{notes}{sections}</main>"
        f"<footer>embedops {esc(__version__)} · times in UTC · open offline: nothing in this "
        "file is fetched from elsewhere</footer></body></html>\n"
    )
