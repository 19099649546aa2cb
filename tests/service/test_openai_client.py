"""The official openai client against the service with the real model (integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedops import EmbeddingProcessor, Settings
from tests.service.conftest import Server

pytestmark = pytest.mark.integration

TEXTS = [
    "A man is playing a guitar on stage.",
    "The stock market fell sharply on Tuesday after the announcement.",
    "zebra",
]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("real") / "store", backend="onnx")
    yield server
    server.stop()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


def test_openai_client_float_base64_and_dimensions(real_server: Server, tmp_path: Path) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{real_server.url}/v1", api_key=real_server.key("embed"))
    reference = EmbeddingProcessor(settings=Settings(store=tmp_path, backend="onnx"))
    expected = reference.embed(TEXTS)

    floats = client.embeddings.create(
        model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float"
    )
    got = np.array([d.embedding for d in floats.data], dtype=np.float32)
    assert got.shape == (3, 384)
    assert _cosines(got, expected).min() >= 0.9999
    assert floats.usage.prompt_tokens == sum(reference.embedder.count_tokens(TEXTS))

    # The client asks for base64 when no format is named, and decodes it itself.
    packed = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)
    got = np.array([d.embedding for d in packed.data], dtype=np.float32)
    assert _cosines(got, expected).min() >= 0.9999

    short = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], dimensions=64)
    vector = np.array(short.data[0].embedding, dtype=np.float32)
    assert vector.shape == (64,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert _cosines(vector[None], expected[:1, :64]).min() >= 0.9999

    models = client.models.list()
    assert [m.id for m in models.data] == ["all-MiniLM-L6-v2"]


def test_openai_client_sees_openai_errors(real_server: Server) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{real_server.url}/v1", api_key="eo-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x")
    good = openai.OpenAI(
        base_url=f"{real_server.url}/v1", api_key=real_server.key("embed"), max_retries=0
    )
    with pytest.raises(openai.NotFoundError) as caught:
        good.embeddings.create(model="text-embedding-3-large", input="x")
    assert caught.value.code == "model_not_found"
