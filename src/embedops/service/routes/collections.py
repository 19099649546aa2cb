"""Search, similar items, upserts and deletes in a collection."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from fastapi import APIRouter, Query, Request

from embedops.errors import CollectionNotFound
from embedops.pipeline import RunReport
from embedops.processor import EmbeddingProcessor, query_text
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
    ``filter``. In an experiment, the query is embedded and searched by the request's variant,
    in that variant's table of the collection."""
    model = services.variants.choose(request, key, body.model, user=body.user)
    spec = model.spec
    check_collection_name(name)
    tokens = 0
    text = None
    if body.query is not None:
        text = query_text(body.query)
        vectors, tokens = await services.embed(request, key, [text], model=model)
        vector = vectors[0]
    else:
        vector = body.vector
    processor = model.processor
    hits = await services.in_thread(
        lambda: processor.search_vector(name, vector, k=body.k, filters=body.filter)
    )
    request.state.returned = [item for item, _ in hits]
    if text is not None:
        services.variants.shadow_search(
            request,
            model,
            text,
            vectors[0],
            collection=name,
            k=body.k,
            filters=body.filter,
            returned=request.state.returned,
        )
    return SearchResponse(
        data=_hits(hits), model=spec.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
    )


@router.get("/{name}/items/{item_id}/similar", response_model=SearchResponse)
async def similar(
    name: str,
    item_id: str,
    request: Request,
    key: SearchKey,
    services: ServicesDep,
    k: int = Query(default=10, ge=1, le=10_000),
) -> SearchResponse:
    """The ``k`` items closest to a stored item, without the item itself (in an experiment,
    in the table of the caller's variant)."""
    model = services.variants.choose(request, key, None)
    processor = model.processor
    hits = await services.in_thread(lambda: processor.most_similar(name, item_id=item_id, k=k))
    request.state.returned = [item for item, _ in hits]
    return SearchResponse(
        data=_hits(hits),
        model=model.spec.name,
        usage=Usage(prompt_tokens=0, total_tokens=0),
    )


@router.put("/{name}/items", response_model=UpsertResponse)
async def upsert(
    name: str, body: UpsertRequest, key: WriteKey, services: ServicesDep
) -> UpsertResponse:
    """Add or replace items as ``embedops embed`` does: unchanged items (same id and content
    hash) are skipped, bad ones are quarantined and listed with their reasons. Writes to one
    collection wait for each other. The tokens embedded are charged to the key once the write
    is done (down to zero left); a key with no tokens left is refused before it starts. While
    an experiment runs, the items are written to the table of every served model version (the
    service's, then each variant's), so that every variant searches the same items; the
    counts are the service's model's, the tokens those of every write."""
    check_collection_name(name)
    most = services.settings.max_input_items
    if len(body.items) > most:
        raise InvalidRequest(
            f"{len(body.items)} items are more than {most}; send them in several requests",
            param="items",
        )
    await services.limits.check_tokens(key)
    processors = [model.processor for model in services.variants.served()]

    def write(processor: EmbeddingProcessor) -> RunReport:
        return processor.upsert(
            name,
            body.items,
            id_field=body.id_field,
            text_field=body.text_field,
            template=body.template,
            keep=body.keep,
        )

    def work() -> list[RunReport]:
        return [write(processor) for processor in processors]

    reports = await services.writers.run(name, work)
    report, tokens = reports[0], sum(r.tokens for r in reports)
    await services.limits.charge(key, tokens)
    for written in reports:
        services.metrics.tokens.labels(key.id, written.model_version).inc(written.tokens)
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
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )


@router.delete("/{name}/items", response_model=DeleteResponse)
async def delete(
    name: str, body: DeleteRequest, key: WriteKey, services: ServicesDep
) -> DeleteResponse:
    """Delete items by id; ids that are not stored are ignored (``deleted`` counts the rest,
    in the service's model's table). While an experiment runs, the items are deleted from
    every served model version's table that exists."""
    processor, *others = [model.processor for model in services.variants.served()]

    def work() -> int:
        deleted = processor.delete(name, body.ids)
        for other in others:
            # A variant with no table of the collection has nothing to delete.
            with contextlib.suppress(CollectionNotFound):
                other.delete(name, body.ids)
        return deleted

    deleted = await services.writers.run(name, work)
    return DeleteResponse(collection=name, deleted=deleted)
