"""/v1/embeddings and /v1/models over real HTTP, with the hash backend."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from embedops import EmbeddingProcessor, Settings
from tests.service.conftest import Server

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference() -> EmbeddingProcessor:
    return EmbeddingProcessor(settings=Settings(backend="hash"))


def test_a_list_of_texts_gives_vectors_in_order_and_real_token_counts(
    client: httpx.Client, reference: EmbeddingProcessor
) -> None:
    texts = ["a red running shoe", "hello world", "quantum chromodynamics"]
    r = client.post("/v1/embeddings", json={"input": texts, "model": MODEL})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, reference.embed(texts), atol=1e-6)
    tokens = sum(reference.embedder.count_tokens(texts))
    assert tokens == 6 + 4 + 8  # [CLS] and [SEP] included
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_one_string_base64_and_dimensions(
    client: httpx.Client, reference: EmbeddingProcessor
) -> None:
    r = client.post(
        "/v1/embeddings",
        json={"input": "hello world", "model": MODEL, "encoding_format": "base64", "dimensions": 8},
    )
    assert r.status_code == 200, r.text
    vector = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    full = reference.embed(["hello world"])[0][:8]
    np.testing.assert_allclose(vector, full / np.linalg.norm(full), atol=1e-6)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_token_ids_are_accepted(client: httpx.Client, reference: EmbeddingProcessor) -> None:
    ids = [7592, 2088]  # "hello world" in the model's vocabulary
    r = client.post("/v1/embeddings", json={"input": [ids], "model": MODEL})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == 2
    got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(got, reference.embed(["hello world"])[0], atol=1e-6)


def test_the_model_can_be_named_by_version(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == MODEL and card["object"] == "model" and card["dimensions"] == 384
    r = client.post("/v1/embeddings", json={"input": "x y", "model": card["version"]})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"input": "a", "model": "text-embedding-3-small"}, 404, "model_not_found", "not served"),
        ({"input": [], "model": MODEL}, 400, None, "empty"),
        ({"input": "", "model": MODEL}, 400, None, "empty"),
        ({"input": ["ok", "  "], "model": MODEL}, 400, None, "input[1] is empty"),
        ({"input": ["a"] * 2049, "model": MODEL}, 400, None, "more than 2048"),
        ({"input": ["a", 3], "model": MODEL}, 400, None, "must be a string"),
        ({"input": [[1, 99999999]], "model": MODEL}, 400, None, "outside the model's vocab"),
        ({"input": "a", "model": MODEL, "dimensions": 385}, 400, None, "more than the model"),
        ({"input": "a", "model": MODEL, "encoding_format": "int8"}, 400, None, "encoding_format"),
        ({"model": MODEL}, 400, None, "input"),
    ],
)
def test_bad_requests_say_what_to_change(
    client: httpx.Client, body: dict[str, object], status: int, code: str | None, words: str
) -> None:
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert words in error["message"]


def test_long_texts_are_truncated_by_default(client: httpx.Client) -> None:
    r = client.post("/v1/embeddings", json={"input": "word " * 400, "model": MODEL})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 256  # the model's limit


def test_unknown_routes_answer_in_openai_shape(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


def test_openapi_docs_are_served(server: Server) -> None:
    assert httpx.get(f"{server.url}/docs").status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/embeddings" in spec["paths"]


def test_a_registry_alias_names_the_served_version_or_is_not_found(
    client: httpx.Client, server: Server
) -> None:
    from embedops.registry import ModelRegistry

    registry = ModelRegistry(store=server.store)
    served = registry.add(MODEL, backend="hash")
    registry.set_alias("candidate", served.version)
    r = client.post("/v1/embeddings", json={"input": "x", "model": "candidate"})
    assert r.status_code == 200, r.text
    other = registry.add(MODEL, backend="torch")  # registered, not served here
    registry.set_alias("shadow", other.version)
    refused = client.post("/v1/embeddings", json={"input": "x", "model": "shadow"})
    assert refused.status_code == 404
    assert other.version in refused.json()["error"]["message"]
