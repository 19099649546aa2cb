"""Request and response models of the service (OpenAI's shapes for embeddings and models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool | None


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``, as OpenAI's API takes it."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text, a list of texts, or token ids (one list, or a list of lists)."
    )
    model: str = Field(description="The served model's name or version (see /v1/models).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        default=None, ge=1, description="Keep the first N dimensions, then re-normalise."
    )
    user: str | None = Field(default=None, max_length=256, description="Your end user's id.")


class Embedding(BaseModel):
    """One vector of an embeddings response."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Tokens a request used (each text's count, capped at the model's limit)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """``POST /v1/embeddings`` response."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    """One model of ``GET /v1/models`` (OpenAI's fields, then embedops' own)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "embedops"
    version: str
    dimensions: int
    max_tokens: int
    backend: str


class ModelList(BaseModel):
    """``GET /v1/models`` response."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class SimilarityRequest(BaseModel):
    """``POST /v1/similarity``: pairs of texts, or pairs of stored item ids of a collection."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    pairs: list[tuple[str, str]] | None = Field(default=None, min_length=1)
    collection: str | None = None
    id_pairs: list[tuple[str, str]] | None = Field(default=None, min_length=1)
    user: str | None = Field(
        default=None, max_length=256, description="Your end user's id (experiment stickiness)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SimilarityRequest:
        if (self.pairs is None) == (self.id_pairs is None):
            raise ValueError("give exactly one of 'pairs' (texts) and 'id_pairs' (stored ids)")
        if self.id_pairs is not None and not self.collection:
            raise ValueError("'id_pairs' needs 'collection', the collection that holds the ids")
        return self


class Score(BaseModel):
    """The cosine of one pair."""

    index: int
    score: float


class SimilarityResponse(BaseModel):
    """``POST /v1/similarity`` response: one score per pair, in order."""

    object: Literal["list"] = "list"
    data: list[Score]
    model: str
    usage: Usage


class SearchRequest(BaseModel):
    """``POST /v1/collections/{name}/search``: a text or a vector, ``k``, a metadata filter."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    query: str | None = Field(default=None, min_length=1)
    vector: list[float] | None = Field(default=None, min_length=1)
    k: int = Field(default=10, ge=1, le=10_000)
    filter: dict[str, Scalar] = Field(
        default_factory=dict, description="Equality on stored fields: {field: value}."
    )
    user: str | None = Field(
        default=None, max_length=256, description="Your end user's id (experiment stickiness)."
    )

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.query is None) == (self.vector is None):
            raise ValueError("give exactly one of 'query' (a text) and 'vector'")
        return self


class Hit(BaseModel):
    """One search result."""

    id: str
    score: float


class SearchResponse(BaseModel):
    """Search and similar-items response, best first."""

    object: Literal["list"] = "list"
    data: list[Hit]
    model: str
    usage: Usage


class UpsertRequest(BaseModel):
    """``PUT /v1/collections/{name}/items``: records as ``embedops embed`` reads them."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(min_length=1)
    id_field: str = "id"
    text_field: str = "text"
    template: str | None = None
    keep: list[str] = Field(default_factory=list)


class Quarantined(BaseModel):
    """An item that was not stored, and why."""

    index: int
    id: str | None
    reason: str
    detail: str


class UpsertResponse(BaseModel):
    """What an upsert did: ``read == embedded + unchanged + quarantined``."""

    object: Literal["upsert"] = "upsert"
    collection: str
    model: str
    read: int
    embedded: int
    unchanged: int
    quarantined: int
    quarantine: list[Quarantined]
    usage: Usage


class DeleteRequest(BaseModel):
    """``DELETE /v1/collections/{name}/items``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1)


class DeleteResponse(BaseModel):
    """How many of the ids were stored and are now deleted."""

    object: Literal["delete"] = "delete"
    collection: str
    deleted: int
