"""The naive peer of ``serve_bench``: a FastAPI endpoint that calls sentence-transformers'
``encode`` once per request (no batching across requests), as people often write it.

Run: ``EMBEDOPS_NAIVE_MODEL=/path/to/model uvicorn benchmarks.naive_app:app``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

_model: dict[str, Any] = {}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from sentence_transformers import SentenceTransformer

    _model["st"] = SentenceTransformer(os.environ["EMBEDOPS_NAIVE_MODEL"], device="cpu")
    _model["st"].encode(["warm up"])
    yield


app = FastAPI(lifespan=_lifespan)


@app.post("/v1/embeddings")
def embed(body: dict[str, Any]) -> dict[str, Any]:
    """One ``encode`` call per request (FastAPI runs it in its thread pool)."""
    vector = _model["st"].encode([body["input"]], normalize_embeddings=True)[0]
    packed = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": packed}]}
