"""``create_app(settings)``: the FastAPI app of the embedding service.

The model loads in the app's lifespan (never at import); on shutdown (SIGTERM: uvicorn stops
accepting, lets in-flight requests finish, then runs the lifespan's end) the batcher embeds
what is queued and stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedops.config import Settings
from embedops.monitoring.service import ServiceMonitor, served_batchers
from embedops.processor import EmbeddingProcessor
from embedops.service.auth import KeyStore, keys_path
from embedops.service.errors import install_error_handlers
from embedops.service.limits import RateLimits
from embedops.service.metrics import ServiceMetrics
from embedops.service.request_ids import RequestIds
from embedops.service.routes import collections, embeddings, experiments, health, similarity
from embedops.service.state import Services
from embedops.service.variants import ServedModel, Variants, make_batcher

logger = logging.getLogger(__name__)


class _Observe:
    """ASGI middleware: rate-limit headers on every keyed response, and request metrics by
    route template, status, model version and variant (``ServiceMonitor.request``)."""

    def __init__(
        self, app: ASGIApp, monitor: ServiceMonitor, limits: Callable[[], RateLimits]
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                key = scope.get("state", {}).get("key")
                headers = list(message.get("headers", []))
                if key is not None and not any(
                    k == b"x-ratelimit-limit-requests" for k, _ in headers
                ):
                    limit = await self.limits().state(key)
                    headers += [(k.encode(), v.encode()) for k, v in limit.headers().items()]
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.monitor.request(path, scope["method"], status, seconds, scope.get("state", {}))


def create_app(settings: Settings) -> FastAPI:
    """The service's app for ``settings`` (cheap: the model loads when the app starts).

    Example:
        >>> import uvicorn  # doctest: +SKIP
        >>> uvicorn.run(create_app(Settings(backend="hash")), port=8000)
    """
    metrics = ServiceMetrics()
    monitor = ServiceMonitor(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        processor = EmbeddingProcessor(settings=settings)
        processor.open()
        embedder = processor.embedder
        load = getattr(embedder, "load", None)
        started = time.perf_counter()
        if load is not None:
            await run_in_threadpool(load)
        await run_in_threadpool(embedder.embed, ["warm up"])
        embedder.count_tokens(["warm up"])
        # Import LanceDB and connect now (seconds on a busy machine), not in the first request.
        await run_in_threadpool(processor.store.versions, "_warm_up")
        logger.info(
            "model %s loaded in %.1fs", embedder.spec.version, time.perf_counter() - started
        )
        batcher = make_batcher(processor, settings, metrics)
        batcher.start()
        variants = Variants(
            settings=settings,
            default=ServedModel(processor=processor, batcher=batcher),
            metrics=metrics,
        )
        app.state.services = Services(
            settings=settings,
            processor=processor,
            embedder=embedder,
            batcher=batcher,
            keys=KeyStore(keys_path(settings)),
            limits=RateLimits(settings),
            metrics=metrics,
            variants=variants,
            monitor=monitor,
        )
        await variants.start()
        monitor.start(lambda: served_batchers(app.state.services))
        try:
            yield
        finally:
            await monitor.stop()
            await variants.stop()
            await batcher.stop()
            processor.close()
            logger.info("service stopped")

    app = FastAPI(
        title="embedops",
        summary="OpenAI-compatible embeddings, similarity and search over embedops collections.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (embeddings, similarity, collections, health, experiments):
        app.include_router(module.router)
    app.add_middleware(_Observe, monitor=monitor, limits=lambda: app.state.services.limits)
    app.add_middleware(RequestIds, variants=lambda: _variants(app))
    return app


def _variants(app: FastAPI) -> Variants | None:
    """The app's ``Variants`` once the lifespan made them."""
    services: Services | None = getattr(app.state, "services", None)
    return services.variants if services is not None else None


def app_from_env() -> FastAPI:
    """The app with settings from ``EMBEDOPS_*`` (uvicorn's factory for several workers)."""
    return create_app(Settings())
