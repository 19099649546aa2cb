"""Dynamic batching, the bounded queue, input limits by setting, keyed metrics, SIGTERM."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import Server, auth

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service that waits 300 ms for batches, queues 8 texts, refuses long texts, takes
    10 items per request and keys its metrics."""
    server = Server(
        tmp_path_factory.mktemp("strict") / "store",
        max_batch_wait_ms=300,
        queue_size=8,
        truncate="false",
        max_input_items=10,
        metrics_auth="true",
    )
    yield server
    server.stop()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def test_concurrent_requests_share_batches_and_a_full_queue_answers_503(strict: Server) -> None:
    token = strict.key("embed,admin")
    client = httpx.Client(base_url=strict.url, headers=auth(token), timeout=30)

    def one(i: int) -> httpx.Response:
        return client.post("/v1/embeddings", json={"input": f"text {i}", "model": MODEL})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    metrics = client.get("/metrics").text
    # 6 requests in at most 2 batches: each waited for the others (warm-up not counted).
    assert _metric(metrics, "embedops_batch_texts_sum") == 6
    assert _metric(metrics, "embedops_batch_texts_count") <= 2
    assert 'embedops_tokens_total{key="key_' in metrics

    eight = client.post("/v1/embeddings", json={"input": ["a"] * 8, "model": MODEL})
    assert eight.status_code == 200
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            client.post, "/v1/embeddings", json={"input": ["b"] * 8, "model": MODEL}
        )
        time.sleep(0.1)  # the first 8 texts wait in the queue for 300 ms
        second = client.post("/v1/embeddings", json={"input": "c", "model": MODEL})
        assert second.status_code == 503
        assert second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "overloaded"
        assert first.result().status_code == 200
    client.close()


def test_limits_by_setting(strict: Server) -> None:
    client = httpx.Client(base_url=strict.url, headers=auth(strict.key("embed")), timeout=30)
    long = client.post("/v1/embeddings", json={"input": ["ok", "word " * 300], "model": MODEL})
    assert long.status_code == 400
    assert (
        "input[1] has 302 tokens, over the model's limit of 256" in long.json()["error"]["message"]
    )
    many = client.post("/v1/embeddings", json={"input": ["a"] * 11, "model": MODEL})
    assert many.status_code == 400 and "more than 10" in many.json()["error"]["message"]
    assert httpx.get(f"{strict.url}/metrics").status_code == 401
    assert client.get("/metrics").status_code == 403  # no admin scope
    client.close()


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    server = Server(tmp_path / "store", max_batch_wait_ms=1500)
    token = server.key("embed")
    answer: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answer.append(
            httpx.post(
                f"{server.url}/v1/embeddings",
                json={"input": "in flight", "model": MODEL},
                headers=auth(token),
                timeout=30,
            )
        )
    )
    thread.start()
    time.sleep(0.5)  # the request now waits in the batcher (1.5 s)
    started = time.monotonic()
    code = server.stop()
    thread.join(10)
    assert answer and answer[0].status_code == 200, server.output()
    assert len(answer[0].json()["data"][0]["embedding"]) == 384
    assert code == 0, server.output()
    assert time.monotonic() - started < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
