"""Shadow mode: the candidate's work never delays the request (measured over HTTP with a
candidate made slow on purpose), its comparisons are recorded, and a full queue drops
samples instead of growing or blocking.

The service runs in this process (uvicorn in a thread, real HTTP on loopback) so that a slow
test backend can be registered in ``models.loader.BACKENDS``: ``slowhash`` is the hash
backend plus a sleep per batch. A version of ``model-a`` run by it has the same weights as
``model-a`` run by ``hash``, so the two are comparable and agree exactly (cosine 1)."""

from __future__ import annotations

import dataclasses
import logging
import re
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.experiments.definitions import ExperimentStore
from embedops.experiments.log import ExperimentLog, connect
from embedops.experiments.metrics import ExperimentMetrics
from embedops.experiments.report import experiment_report
from embedops.experiments.shadow import ShadowRunner, comparable
from embedops.models import loader
from embedops.models.base import ModelSpec
from embedops.models.hash_backend import HashBackend
from embedops.service.app import create_app
from embedops.service.auth import KeyStore
from tests.experiments.conftest import register, tiny_model
from tests.service.conftest import auth, free_port

logger = logging.getLogger(__name__)
DELAY = 0.2  # seconds the candidate sleeps per batch
REQUESTS = 40


class SlowHash(HashBackend):
    """The hash backend, ``DELAY`` seconds slower per batch."""

    def _embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        time.sleep(DELAY)
        return super()._embed(texts)


@pytest.fixture
def slow_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    info = dataclasses.replace(
        loader.BACKENDS["hash"],
        name="slowhash",
        engine="slowhash",
        factory=lambda spec, cache, threads: SlowHash(spec),
    )
    monkeypatch.setitem(loader.BACKENDS, "slowhash", info)


class InProcess:
    """The service app under uvicorn in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server not up"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def service(tmp_path: Path, slow_backend: None) -> Iterator[tuple[InProcess, Path, str, str]]:
    store = tmp_path / "store"
    model = tiny_model(tmp_path / "models", "model-a", 32)
    version = register(store, model)
    candidate = register(store, model, backend="slowhash")
    settings = Settings(store=store, backend="hash", experiment_poll_s=0, shadow_queue=4)
    server = InProcess(settings)
    yield server, store, version, candidate
    server.stop()


def _timings(client: httpx.Client, tag: str) -> list[float]:
    seconds = []
    for i in range(REQUESTS):
        started = time.perf_counter()
        reply = client.post(
            "/v1/embeddings", json={"input": f"red wool hat {tag} {i}", "model": "model-a"}
        )
        seconds.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-embedops-variant"] == "a"
    return seconds


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_shadow_adds_no_latency_and_records_agreement(
    service: tuple[InProcess, Path, str, str],
) -> None:
    server, store, version, candidate = service
    admin, _ = KeyStore(store / "keys.json").create(scopes=["admin"])
    variant = {"label": "a", "model": version, "weight": 1}
    with httpx.Client(base_url=server.url, headers=auth(admin), timeout=30) as client:
        client.put("/v1/experiments/base", json={"variants": [variant]}).raise_for_status()
        _timings(client, "warm")
        off = _timings(client, "off")
        client.delete("/v1/experiments/base").raise_for_status()
        body = {"variants": [variant], "shadow": candidate, "shadow_rate": 1.0}
        client.put("/v1/experiments/shadowed", json=body).raise_for_status()
        on = _timings(client, "on")

        p50_off, p50_on = statistics.median(off), statistics.median(on)
        logger.info("p50 without shadow %.1f ms, with %.1f ms", p50_off * 1e3, p50_on * 1e3)
        # The candidate sleeps DELAY per sample; had the request waited for it, p50 would grow
        # by DELAY. Allow a quarter of it for noise on a shared machine.
        assert p50_on - p50_off < DELAY / 4, (p50_off, p50_on)
        assert p50_on < DELAY, p50_on

        # Every request was offered to the shadow; a full queue dropped most of them.
        time.sleep(DELAY * 8)
        metrics = client.get("/metrics").text
        samples = _metric(metrics, "embedops_shadow_samples_total")
        dropped = _metric(metrics, "embedops_shadow_dropped_total")
        assert samples + dropped == REQUESTS
        assert samples >= 4 and dropped > 0

        # Searches: the candidate searches its own table; identical vectors agree fully.
        items = [
            {"id": str(i), "text": t} for i, t in enumerate(("red hat", "blue shirt", "red scarf"))
        ]
        client.put("/v1/collections/docs/items", json={"items": items}).raise_for_status()
        with EmbeddingProcessor(store=store, model=candidate, backend="slowhash") as p:
            p.upsert("docs", items)
        hits = client.post("/v1/collections/docs/search", json={"query": "red hat", "k": 3})
        hits.raise_for_status()
        request_id = hits.headers["x-request-id"]

    log = ExperimentStore(store).log_path("shadowed")
    row = None
    deadline = time.monotonic() + 10
    while row is None:
        assert time.monotonic() < deadline, "no shadow comparison of the search"
        time.sleep(0.1)
        db = connect(log)
        row = db.execute(
            "SELECT cosine, overlap, rank_correlation FROM shadow WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        db.close()
    assert row[0] == pytest.approx(1.0, abs=1e-5) and row[1:] == (1.0, 1.0)
    shadow = experiment_report(store, "shadowed")["shadow"]
    assert shadow["candidate"] == candidate
    assert shadow["samples"] == samples + 1
    assert shadow["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert shadow["topk_overlap"] == 1.0 and shadow["rank_correlation"] == 1.0


def _spec(name: str, dim: int, digest: str = "d") -> ModelSpec:
    return ModelSpec(name=name, path=Path("."), digest=digest, dim=dim, max_tokens=8, backend="x")


def test_comparable_needs_one_space() -> None:
    assert comparable(_spec("m", 8), _spec("m", 8, digest="other"))  # another precision
    assert comparable(_spec("m", 8), _spec("n", 8))  # same weights
    assert not comparable(_spec("m", 8, "d1"), _spec("n", 8, "d2"))  # other models
    assert not comparable(_spec("m", 8), _spec("m", 16))


def test_offer_never_blocks_and_counts_drops(
    tmp_path: Path, slow_backend: None, models: dict[str, Path]
) -> None:
    from prometheus_client import CollectorRegistry

    store = tmp_path / "store"
    candidate = register(store, models["a"], backend="slowhash")
    processor = EmbeddingProcessor(store=store, model=candidate, backend="slowhash")
    processor.open()
    log = ExperimentLog(store / "log.sqlite", interval=0.01)
    runner = ShadowRunner(
        experiment="x",
        candidate=processor,
        rate=1.0,
        queue_size=2,
        log=log,
        metrics=ExperimentMetrics(CollectorRegistry()),
    )
    runner.start()
    spec = processor.embedder.spec
    vectors = processor.embed(["a b"])
    started = time.perf_counter()
    queued = [runner.offer_embed(str(i), spec, ["a b"], vectors) for i in range(20)]
    assert time.perf_counter() - started < DELAY / 2  # 20 offers, no wait for the candidate
    assert 2 <= sum(queued) <= 3 and runner.dropped == 20 - sum(queued)
    time.sleep(DELAY * (sum(queued) + 2))
    assert runner.samples == sum(queued)
    runner.stop()
    log.close()
    db = connect(store / "log.sqlite")
    cosines = [c for (c,) in db.execute("SELECT cosine FROM shadow")]
    db.close()
    assert len(cosines) == sum(queued) and cosines[0] == pytest.approx(1.0, abs=1e-5)
