"""Per-key requests and tokens per minute, with OpenAI's headers on every keyed response."""

from __future__ import annotations

import httpx

from tests.service.conftest import Server, auth

BODY = {"input": "hello world", "model": "all-MiniLM-L6-v2"}
HEADERS = [
    f"x-ratelimit-{kind}-{what}"
    for what in ("requests", "tokens")
    for kind in ("limit", "remaining", "reset")
]


def test_requests_per_minute_per_key(server: Server) -> None:
    slow, other = server.key("embed", rpm=3), server.key("embed", rpm=3)
    answers = [
        httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(slow)) for _ in range(4)
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0", "0"]
    for r in answers:
        assert all(h in r.headers for h in HEADERS)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
    refused = answers[-1]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Another key has its own budget.
    assert httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(other)).is_success


def test_tokens_per_minute_per_key(server: Server) -> None:
    key = server.key("embed", tpm=10)
    first = httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(key))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "10"
    assert first.headers["x-ratelimit-remaining-tokens"] == "6"  # "hello world" is 4 tokens
    second = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"input": "one two three four five six", "model": "all-MiniLM-L6-v2"},
        headers=auth(key),
    )
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]
    assert int(second.headers["retry-after"]) >= 1


def test_errors_after_authentication_carry_the_headers(server: Server) -> None:
    key = server.key("embed")
    r = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"input": [], "model": "all-MiniLM-L6-v2"},
        headers=auth(key),
    )
    assert r.status_code == 400
    assert r.headers["x-ratelimit-limit-requests"] == "600"  # the default


def test_writes_are_charged_the_tokens_they_embed(server: Server) -> None:
    key = server.key("write", tpm=12)
    url = f"{server.url}/v1/collections/charged/items"
    items = [{"id": "1", "text": "hello world"}, {"id": "2", "text": "red shoe"}]
    first = httpx.put(url, json={"items": items}, headers=auth(key))
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["total_tokens"] == 8  # 4 tokens each, [CLS] and [SEP] included
    assert first.headers["x-ratelimit-remaining-tokens"] == "4"
    # Unchanged items embed nothing and cost nothing.
    again = httpx.put(url, json={"items": items}, headers=auth(key))
    assert again.json()["usage"]["total_tokens"] == 0
    assert again.headers["x-ratelimit-remaining-tokens"] == "4"
    # A write over what is left is done (the cost is known only after it), then the key is dry.
    more = [{"id": "3", "text": "one two three four five six"}]
    third = httpx.put(url, json={"items": more}, headers=auth(key))
    assert third.status_code == 200
    assert third.headers["x-ratelimit-remaining-tokens"] == "0"
    refused = httpx.put(url, json={"items": [{"id": "4", "text": "x"}]}, headers=auth(key))
    assert refused.status_code == 429
    assert "tokens per minute" in refused.json()["error"]["message"]
