"""``POST /v1/embeddings`` and ``GET /v1/models``, as OpenAI's API has them."""

from __future__ import annotations

import base64
import json

import numpy as np
from fastapi import APIRouter, Request, Response
from numpy.typing import NDArray

from embedops.service.deps import AnyKey, EmbedKey, ServicesDep
from embedops.service.errors import InvalidRequest
from embedops.service.schemas import EmbeddingRequest, EmbeddingResponse, ModelCard, ModelList
from embedops.service.state import Services

router = APIRouter(prefix="/v1", tags=["OpenAI"])


def _texts(body: EmbeddingRequest, services: Services) -> tuple[list[str], list[int] | None]:
    """The request's texts, and their token counts when it sent token ids."""
    raw = body.input
    if isinstance(raw, str):
        texts: list[str] = [raw]
    elif raw and isinstance(raw[0], int):
        return _decode([raw], services)
    elif raw and isinstance(raw[0], list):
        return _decode(raw, services)
    else:
        texts = list(raw)  # type: ignore[arg-type]
    if not texts:
        raise InvalidRequest("'input' is empty; send a text or a list of texts", param="input")
    _check_count(len(texts), services)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        where = "'input'" if isinstance(raw, str) else f"input[{empty[0]}]"
        raise InvalidRequest(
            f"{where} is empty or whitespace only; send text to embed", param="input"
        )
    return texts, None


def _check_count(n: int, services: Services) -> None:
    most = services.settings.max_input_items
    if n > most:
        raise InvalidRequest(
            f"'input' has {n} items, more than {most}; split it into several requests",
            param="input",
        )


def _decode(ids: list[list[int]], services: Services) -> tuple[list[str], list[int]]:
    """Token ids back to text (the backends embed text), and the counts sent."""
    _check_count(len(ids), services)
    vocab = services.tokenizer.get_vocab_size()
    for i, row in enumerate(ids):
        if not row:
            raise InvalidRequest(f"input[{i}] is an empty list of token ids", param="input")
        bad = [t for t in row if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(
                f"input[{i}] holds token id {bad[0]}, outside the model's vocabulary "
                f"(0..{vocab - 1})",
                param="input",
            )
    texts = services.tokenizer.decode_batch(ids, skip_special_tokens=True)
    return [str(t) for t in texts], [len(row) for row in ids]


def _shape(vectors: NDArray[np.float32], dimensions: int | None) -> NDArray[np.float32]:
    if dimensions is None:
        return vectors
    dim = vectors.shape[1]
    if dimensions > dim:
        raise InvalidRequest(
            f"'dimensions' is {dimensions}, more than the model's {dim}", param="dimensions"
        )
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return np.asarray(cut / np.where(norms > 0, norms, 1.0), dtype=np.float32)


@router.post("/embeddings", response_model=EmbeddingResponse)
async def create_embeddings(
    body: EmbeddingRequest, request: Request, key: EmbedKey, services: ServicesDep
) -> Response:
    """Embed a text, a list of texts or token ids (OpenAI's request and response)."""
    model = services.variants.choose(request, key, body.model, user=body.user)
    spec = model.spec
    texts, counts = _texts(body, services)
    if body.dimensions is not None and body.dimensions > spec.dim:
        _shape(np.zeros((0, spec.dim), dtype=np.float32), body.dimensions)
    vectors, tokens = await services.embed(request, key, texts, counts=counts, model=model)
    services.variants.shadow_embed(request, model, texts, vectors)
    vectors = _shape(vectors, body.dimensions)
    if body.encoding_format == "base64":
        little = vectors.astype("<f4")
        data: list[object] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        data = vectors.tolist()
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(data)
        ],
        "model": spec.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    # Built by hand: validating thousands of floats through the response model costs more
    # than the embedding of a short text.
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@router.get("/models", response_model=ModelList)
async def list_models(key: AnyKey, services: ServicesDep) -> ModelList:
    """The served models (the service's, then a running experiment's), in OpenAI's list
    shape."""
    cards = [
        ModelCard(
            id=model.spec.name,
            created=int(services.started),
            version=model.version,
            dimensions=model.spec.dim,
            max_tokens=model.spec.max_tokens,
            backend=model.processor.backend,
        )
        for model in services.variants.served()
    ]
    return ModelList(data=cards)
