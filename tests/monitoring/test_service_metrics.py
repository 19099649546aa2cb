"""Metrics of a real service after real requests: labels, exact counts, errors by type,
tokens per key, the cache, queue depth, and the history lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from embedops.monitoring.history import history_path, read_history
from tests.monitoring.conftest import delta, new_key, scrape, value, wait_for
from tests.service.conftest import Server, auth

MODEL = "all-MiniLM-L6-v2"
ROUTE = "/v1/embeddings"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A hash-backend service that writes a history line every second."""
    server = Server(tmp_path_factory.mktemp("mon") / "store", monitor_interval_s=1)
    yield server
    server.stop()


def _version(server: Server, token: str) -> str:
    models = httpx.get(f"{server.url}/v1/models", headers=auth(token), timeout=30).json()
    return str(models["data"][0]["version"])


def test_requests_latency_tokens_and_batches_are_labelled(server: Server) -> None:
    token, key_id = new_key(server)
    version = _version(server, token)
    before = scrape(server)
    labels = {"model_version": version, "variant": "default"}
    tokens = 0
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as client:
        for i in range(5):
            r = client.post(
                ROUTE, json={"model": MODEL, "input": [f"metrics text {i}", f"other {i}"]}
            )
            assert r.status_code == 200
            tokens += r.json()["usage"]["total_tokens"]
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    ok = {"route": ROUTE, "method": "POST", "status": "200", **labels}
    assert grew("embedops_requests_total", **ok) == 5
    assert grew("embedops_request_seconds_count", route=ROUTE, **labels) == 5
    assert grew("embedops_tokens_total", key=key_id, model_version=version) == tokens
    assert grew("embedops_batch_texts_sum", model_version=version) == 10
    assert grew("embedops_batch_tokens_sum", model_version=version) == tokens
    assert grew("embedops_cache_requests_total", model_version=version, result="miss") == 10
    assert grew("embedops_cache_requests_total", model_version=version, result="hit") == 0
    assert value(after, "embedops_queue_texts", model_version=version) == 0


def test_repeated_texts_come_from_the_cache(server: Server) -> None:
    token, _ = new_key(server)
    version = _version(server, token)
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as client:
        first = client.post(
            ROUTE, json={"model": MODEL, "input": ["cached once", "cached twice"]}
        ).json()
        before = scrape(server)
        again = client.post(
            ROUTE, json={"model": MODEL, "input": ["cached twice", "new text"]}
        ).json()
    after = scrape(server)
    hit = {"model_version": version, "result": "hit"}
    assert delta(before, after, "embedops_cache_requests_total", **hit) == 1
    # Only "new text" reached the model.
    assert delta(before, after, "embedops_batch_texts_sum", model_version=version) == 1
    assert again["data"][0]["embedding"] == first["data"][1]["embedding"]


def test_errors_are_counted_by_type(server: Server) -> None:
    token, _ = new_key(server)
    version = _version(server, token)
    before = scrape(server)
    url = f"{server.url}{ROUTE}"
    assert (
        httpx.post(url, json={"model": MODEL, "input": "x"}, headers=auth("eo-nope")).status_code
        == 401
    )
    bad_model = httpx.post(url, json={"model": "nope", "input": "x"}, headers=auth(token))
    assert bad_model.status_code == 404
    assert (
        httpx.post(url, json={"model": MODEL, "input": ""}, headers=auth(token)).status_code == 400
    )
    after = scrape(server)
    labels = {"route": ROUTE, "model_version": version, "variant": "default"}
    for kind in ("invalid_api_key", "model_not_found", "invalid_request_error"):
        assert delta(before, after, "embedops_errors_total", type=kind, **labels) == 1, kind
    refused = {"method": "POST", "status": "401", **labels}
    assert delta(before, after, "embedops_requests_total", **refused) == 1


def test_history_lines_match_the_contract(server: Server) -> None:
    token, _ = new_key(server)
    version = _version(server, token)
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as client:
        for i in range(3):
            assert (
                client.post(ROUTE, json={"model": MODEL, "input": f"history {i}"}).status_code
                == 200
            )
    path = history_path(server.store)
    wait_for(lambda: sum(line["texts"] for line in read_history(server.store)) >= 3)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert raw == read_history(server.store)
    for line in raw:
        assert set(line) >= {
            "time",
            "instance",
            "window_s",
            "requests",
            "errors",
            "texts",
            "tokens",
            "latency_ms",
            "texts_per_s",
            "by_variant",
        }
        assert line["instance"].endswith(f":{server.process.pid}")
        assert 0.5 <= line["window_s"] <= 10
        assert set(line["latency_ms"]) == {"p50", "p95", "p99"}
    busy = [line for line in raw if line["requests"]]
    assert sum(line["by_variant"]["default"]["requests"] for line in busy) == sum(
        line["requests"] for line in busy
    )
    assert {line["by_variant"]["default"]["model_version"] for line in busy} == {version}
    last = busy[-1]["latency_ms"]
    assert 0 < last["p50"] <= last["p95"] <= last["p99"]
    assert read_history(server.store, since=2**40) == []
