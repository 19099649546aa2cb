"""Search, similar items, upserts and deletes in a collection."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Query, Request

from embedops.processor import query_text
from embedops.service.deps import SearchKey, ServicesDep, WriteKey
from embedops.service.errors import InvalidRequest
from embedops.service.schemas import (
    DeleteRequest,
    DeleteResponse,
    Hit,
    Quarantined,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
    Usage,
)
from embedops.store import check_collection_name

router = APIRouter(prefix="/v1/collections", tags=["collections"])


def _hits(pairs: list[tuple[str, float]]) -> list[Hit]:
    return [Hit(id=i, score=s) for i, s in pairs]


@router.post("/{name}/search", response_model=SearchResponse)
async def search(
    name: str, body: SearchRequest, request: Request, key: SearchKey, services: ServicesDep
) -> SearchResponse:
    """The ``k`` items closest to a text or a vector, among those whose stored fields equal
    ``filter``."""
    spec = services.resolve_model(body.model)
    check_collection_name(name)
    tokens = 0
    if body.query is not None:
        vectors, tokens = await services.embed(request, key, [query_text(body.query)])
        vector = vectors[0]
    else:
        vector = body.vector
    processor = services.processor
    hits = await services.in_thread(
        lambda: processor.search_vector(name, vector, k=body.k, filters=body.filter)
    )
    return SearchResponse(
        data=_hits(hits), model=spec.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
    )


@router.get("/{name}/items/{item_id}/similar", response_model=SearchResponse)
async def similar(
    name: str,
    item_id: str,
    key: SearchKey,
    services: ServicesDep,
    k: int = Query(default=10, ge=1, le=10_000),
) -> SearchResponse:
    """The ``k`` items closest to a stored item, without the item itself."""
    processor = services.processor
    hits = await services.in_thread(lambda: processor.most_similar(name, item_id=item_id, k=k))
    return SearchResponse(
        data=_hits(hits),
        model=services.embedder.spec.name,
        usage=Usage(prompt_tokens=0, total_tokens=0),
    )


@router.put("/{name}/items", response_model=UpsertResponse)
async def upsert(
    name: str, body: UpsertRequest, key: WriteKey, services: ServicesDep
) -> UpsertResponse:
    """Add or replace items as ``embedops embed`` does: unchanged items (same id and content
    hash) are skipped, bad ones are quarantined and listed with their reasons. Writes to one
    collection wait for each other. The tokens embedded are charged to the key once the write
    is done (down to zero left); a key with no tokens left is refused before it starts."""
    check_collection_name(name)
    most = services.settings.max_input_items
    if len(body.items) > most:
        raise InvalidRequest(
            f"{len(body.items)} items are more than {most}; send them in several requests",
            param="items",
        )
    await services.limits.check_tokens(key)
    processor = services.processor
    report = await services.writers.run(
        name,
        lambda: processor.upsert(
            name,
            body.items,
            id_field=body.id_field,
            text_field=body.text_field,
            template=body.template,
            keep=body.keep,
        ),
    )
    await services.limits.charge(key, report.tokens)
    services.metrics.tokens.labels(key.id, processor.embedder.spec.version).inc(report.tokens)
    quarantine: list[Quarantined] = []
    if report.quarantine_path:
        for line in Path(report.quarantine_path).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            quarantine.append(
                Quarantined(
                    index=item["row"] - 1,
                    id=item["id"],
                    reason=item["reason"],
                    detail=item["detail"],
                )
            )
    return UpsertResponse(
        collection=name,
        model=report.model_version,
        read=report.read,
        embedded=report.embedded,
        unchanged=report.unchanged,
        quarantined=report.quarantined,
        quarantine=quarantine,
        usage=Usage(prompt_tokens=report.tokens, total_tokens=report.tokens),
    )


@router.delete("/{name}/items", response_model=DeleteResponse)
async def delete(
    name: str, body: DeleteRequest, key: WriteKey, services: ServicesDep
) -> DeleteResponse:
    """Delete items by id; ids that are not stored are ignored (``deleted`` counts the rest)."""
    processor = services.processor
    deleted = await services.writers.run(name, lambda: processor.delete(name, body.ids))
    return DeleteResponse(collection=name, deleted=deleted)
