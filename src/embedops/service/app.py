"""``create_app(settings)``: the FastAPI app of the embedding service.

The model loads in the app's lifespan (never at import); on shutdown (SIGTERM: uvicorn stops
accepting, lets in-flight requests finish, then runs the lifespan's end) the batcher embeds
what is queued and stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from embedops.config import Settings
from embedops.monitoring.service import ServiceMonitor, served_batchers
from embedops.processor import EmbeddingProcessor
from embedops.service.auth import KeyStore, keys_path
from embedops.service.errors import install_error_handlers
from embedops.service.limits import RateLimits
from embedops.service.metrics import ServiceMetrics
from embedops.service.observe import Observe
from embedops.service.routes import collections, embeddings, experiments, health, similarity
from embedops.service.state import Services
from embedops.service.variants import ServedModel, Variants, make_batcher

logger = logging.getLogger(__name__)


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
    app.add_middleware(Observe, monitor=monitor, services=lambda: _services(app))
    return app


def _services(app: FastAPI) -> Services | None:
    """The app's ``Services`` once the lifespan made them."""
    services: Services | None = getattr(app.state, "services", None)
    return services


def app_from_env() -> FastAPI:
    """The app with settings from ``EMBEDOPS_*`` (uvicorn's factory for several workers)."""
    return create_app(Settings())
