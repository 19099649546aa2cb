"""Render benchmarks/results/bench.json as the markdown tables of benchmarks/README.md.

python -m benchmarks.report [benchmarks/results/bench.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    names = list(next(iter(results["inputs"].values()))["results"])
    lines.append("| input | mean tokens | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for input_name, data in results["inputs"].items():
        cells = []
        for name in names:
            row = data["results"][name]
            share = "" if row["roofline_share"] is None else f", {row['roofline_share']:.0%} roof"
            cells.append(
                f"{row['texts_per_s']:,.0f} (x{row['ratio_to_peer']:.2f}; "
                f"median x{row['ratio_to_peer_median']:.2f}{share})"
            )
        lines.append(f"| {input_name} | {data['mean_tokens']:.0f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| backend | STS-B dev | cosine min | cosine mean | AG News 10-NN |")
    lines.append("|---|---|---|---|---|")
    for name, q in results["quality"].items():
        lines.append(
            f"| {name} | {q['stsb_spearman']} | {q['cosine_min']} | {q['cosine_mean']} | "
            f"{q['ag_news_knn']} |"
        )
    if "process" in results:
        lines.append("")
        lines.append("| | cold start (s) | peak RSS (MB) |")
        lines.append("|---|---|---|")
        for name, p in results["process"].items():
            lines.append(f"| {name} | {p['cold_start_s']} | {p['peak_rss_mb']} |")
    lines.append("")
    lines.append(
        "| backend | rows | raw texts/s | pipeline texts/s | pipeline / raw (median of rounds) "
        "| without cleaning / raw |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, p in results["pipeline"].items():
        bare = p.get("no_cleaning_share_of_raw")
        median = p.get("pipeline_share_median")
        lines.append(
            f"| {name} | {p.get('rows', '-')} | {p['raw_texts_per_s']} | "
            f"{p['pipeline_texts_per_s']} | {p['pipeline_share_of_raw']:.0%}"
            f"{'' if median is None else f' ({median:.0%})'} | "
            f"{'-' if bare is None else f'{bare:.0%}'} |"
        )
    lines.append("")
    first = next(iter(next(iter(results["threads"].values())).values()))
    labels = list(first)
    lines.append("| backend | input | " + " | ".join(labels) + " |")
    lines.append("|---|---|" + "---|" * len(labels))
    for name, by_input in results["threads"].items():
        for input_name, row in by_input.items():
            row_cells = " | ".join(str(row.get(label, "-")) for label in labels)
            lines.append(f"| {name} | {input_name} | {row_cells} |")
    machine = results["machine"]
    lines.append("")
    lines.append(
        f"Machine: {machine['cpu']}, {machine['cores']} cores; fp32 matmul at the model's FFN "
        f"shape {machine['fp32_matmul_gflops']} GFLOP/s (threads: GFLOP/s); model "
        f"{machine['model_mflops_per_token']} MFLOP per token. {results['date']}."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks/results/bench.json"
    sys.stdout.write(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
