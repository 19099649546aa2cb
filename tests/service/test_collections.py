"""Upserts, deletes, search, similar items and similarity over HTTP, with the hash backend."""

from __future__ import annotations

import fcntl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from embedops import EmbeddingProcessor, Settings
from tests.service.conftest import Server, auth

ITEMS = [
    {"id": "1", "text": "a red running shoe", "color": "red"},
    {"id": "2", "text": "blue running shoe", "color": "blue"},
    {"id": "3", "text": "   ", "color": "red"},
    {"id": "4", "text": "green <b>wool</b> hat", "color": "green"},
    {"id": "1", "text": "duplicate id", "color": "red"},
    {"id": "5", "text": 42},
]


def _put(client: httpx.Client, name: str, items: list[dict[str, object]]) -> httpx.Response:
    return client.put(f"/v1/collections/{name}/items", json={"items": items, "keep": ["color"]})


def test_upsert_quarantines_bad_items_with_reasons_and_skips_unchanged(
    client: httpx.Client,
) -> None:
    r = _put(client, "shop", ITEMS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["read"], body["embedded"], body["unchanged"], body["quarantined"]) == (6, 3, 0, 3)
    assert [(q["index"], q["id"], q["reason"]) for q in body["quarantine"]] == [
        (2, "3", "empty_text"),
        (4, "1", "duplicate_id"),
        (5, "5", "non_string_text"),
    ]
    again = _put(client, "shop", [*ITEMS[:2], {"id": "4", "text": "green hat", "color": "green"}])
    assert (again.json()["embedded"], again.json()["unchanged"]) == (1, 2)


def test_search_by_text_vector_and_filter(client: httpx.Client) -> None:
    _put(client, "find", ITEMS[:4])
    r = client.post("/v1/collections/find/search", json={"query": "red shoe", "k": 2})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["data"]] == ["1", "2"]
    assert r.json()["usage"]["prompt_tokens"] == 4
    filtered = client.post(
        "/v1/collections/find/search", json={"query": "red shoe", "filter": {"color": "blue"}}
    )
    assert [h["id"] for h in filtered.json()["data"]] == ["2"]
    quoted = client.post(
        "/v1/collections/find/search", json={"query": "x", "filter": {"color": "r' OR 1=1 --"}}
    )
    assert quoted.status_code == 200 and quoted.json()["data"] == []
    vector = EmbeddingProcessor(settings=Settings(backend="hash")).embed(["green wool hat"])[0]
    by_vector = client.post("/v1/collections/find/search", json={"vector": vector.tolist(), "k": 1})
    assert by_vector.json()["data"][0]["id"] == "4"
    assert by_vector.json()["data"][0]["score"] > 0.999
    bad = client.post("/v1/collections/find/search", json={"query": "x", "filter": {"size": 1}})
    assert bad.status_code == 400 and "size" in bad.json()["error"]["message"]
    wrong = client.post("/v1/collections/find/search", json={"vector": [0.1, 0.2]})
    assert wrong.status_code == 400 and "384" in wrong.json()["error"]["message"]
    both = client.post("/v1/collections/find/search", json={"query": "x", "vector": [0.1]})
    assert both.status_code == 400


def test_similar_items_and_similarity(client: httpx.Client) -> None:
    _put(client, "sim", ITEMS[:4])
    r = client.get("/v1/collections/sim/items/1/similar", params={"k": 2})
    assert r.status_code == 200
    assert [h["id"] for h in r.json()["data"]] == ["2", "4"]
    missing = client.get("/v1/collections/sim/items/nope/similar")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "item_not_found"
    gone = client.get("/v1/collections/absent/items/1/similar")
    assert gone.json()["error"]["code"] == "collection_not_found"
    texts = client.post(
        "/v1/similarity", json={"pairs": [["a red shoe", "a red shoe"], ["red", "quantum"]]}
    )
    scores = [d["score"] for d in texts.json()["data"]]
    assert abs(scores[0] - 1.0) < 1e-5 and scores[1] < 0.3
    ids = client.post("/v1/similarity", json={"collection": "sim", "id_pairs": [["1", "1"]]})
    assert abs(ids.json()["data"][0]["score"] - 1.0) < 1e-5


def test_delete(client: httpx.Client) -> None:
    _put(client, "del", ITEMS[:2])
    r = client.request("DELETE", "/v1/collections/del/items", json={"ids": ["1", "nope"]})
    assert r.status_code == 200 and r.json()["deleted"] == 1
    hits = client.post("/v1/collections/del/search", json={"query": "shoe", "k": 5})
    assert [h["id"] for h in hits.json()["data"]] == ["2"]


def test_concurrent_writes_to_one_collection_are_queued(client: httpx.Client) -> None:
    def write(n: int) -> httpx.Response:
        items = [{"id": f"{n}-{i}", "text": f"item {n} number {i}"} for i in range(20)]
        return client.put("/v1/collections/busy/items", json={"items": items})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(write, range(8)))
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert sum(r.json()["embedded"] for r in answers) == 160
    hits = client.post("/v1/collections/busy/search", json={"query": "item", "k": 500})
    ids = [h["id"] for h in hits.json()["data"]]
    assert len(ids) == len(set(ids)) == 160
    assert np.isfinite([h["score"] for h in hits.json()["data"]]).all()


def test_a_write_waits_for_a_lock_held_by_another_process(
    client: httpx.Client, server: Server
) -> None:
    version = client.get("/v1/models").json()["data"][0]["version"]
    _put(client, "held", ITEMS[:1])
    lock = (server.store / f".held--{version}.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # as `embedops embed` would hold it
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(_put, client, "held", ITEMS[1:2])
            time.sleep(0.6)
            assert not answer.done()
            fcntl.flock(lock, fcntl.LOCK_UN)
            assert answer.result(timeout=10).status_code == 200
            assert answer.result().json()["embedded"] == 1
    finally:
        lock.close()


def test_two_service_workers_write_one_collection(tmp_path: Path) -> None:
    server = Server(tmp_path / "store", service_workers=2)
    try:
        client = httpx.Client(base_url=server.url, headers=auth(server.key()), timeout=60)

        def write(n: int) -> httpx.Response:
            items = [{"id": f"{n}-{i}", "text": f"item {n} number {i}"} for i in range(10)]
            return client.put("/v1/collections/two/items", json={"items": items})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(write, range(6)))
        assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
        hits = client.post("/v1/collections/two/search", json={"query": "item", "k": 100})
        assert len({h["id"] for h in hits.json()["data"]}) == 60
        client.close()
    finally:
        assert server.stop() == 0
