"""Health (open), readiness (open) and Prometheus metrics (open, or admin key by setting)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from embedops.service.deps import ServicesDep, require

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The model is loaded and the store is reachable (503 otherwise)."""
    services = getattr(request.app.state, "services", None)
    body: dict[str, object] = {"model": services is not None, "store": False}
    if services is not None:
        # The lifespan connected to the store; here, only that its folder is still there and
        # writable (a LanceDB listing can take seconds on a busy machine).
        path = services.processor.store_path
        body["store"] = path.is_dir() and os.access(path, os.W_OK | os.X_OK)
        if not body["store"]:
            body["store_error"] = f"{path} is not a writable folder"
    ready = body["model"] is True and body["store"] is True
    body["status"] = "ready" if ready else "not ready"
    return JSONResponse(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus metrics; with ``metrics_auth`` on, only for a key with the admin scope."""
    if services.settings.metrics_auth:
        await require("admin")(request)
    services.monitor.before_scrape()
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
