"""``POST /v1/similarity``: cosine of pairs of texts, or of pairs of stored items."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from embedops.service.deps import ServicesDep, require
from embedops.service.errors import InvalidRequest
from embedops.service.schemas import Score, SimilarityRequest, SimilarityResponse, Usage

router = APIRouter(prefix="/v1", tags=["similarity"])


@router.post("/similarity", response_model=SimilarityResponse)
async def similarity(
    body: SimilarityRequest, request: Request, services: ServicesDep
) -> SimilarityResponse:
    """One cosine per pair: ``pairs`` of texts (scope ``embed``) or ``id_pairs`` of items
    stored in ``collection`` (scope ``search``)."""
    key = await require("search" if body.id_pairs is not None else "embed")(request)
    model = services.variants.choose(request, key, body.model, user=body.user)
    spec = model.spec
    most = services.settings.max_input_items
    pairs = body.pairs if body.pairs is not None else body.id_pairs or []
    if len(pairs) * 2 > most:
        raise InvalidRequest(
            f"{len(pairs)} pairs are more than {most // 2}; split them into several requests",
            param="pairs" if body.pairs is not None else "id_pairs",
        )
    wanted = list(dict.fromkeys(item for pair in pairs for item in pair))
    tokens = 0
    if body.pairs is not None:
        empty = [i for i, (a, b) in enumerate(body.pairs) if not a.strip() or not b.strip()]
        if empty:
            raise InvalidRequest(f"pairs[{empty[0]}] holds an empty text", param="pairs")
        vectors, tokens = await services.embed(request, key, wanted, param="pairs", model=model)
        services.variants.shadow_embed(request, model, wanted, vectors)
    else:
        collection = body.collection or ""
        vectors = await services.in_thread(lambda: model.processor.vectors(collection, wanted))
    row = {item: i for i, item in enumerate(wanted)}
    scores = [float(np.dot(vectors[row[a]], vectors[row[b]])) for a, b in pairs]
    return SimilarityResponse(
        data=[Score(index=i, score=s) for i, s in enumerate(scores)],
        model=spec.name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
