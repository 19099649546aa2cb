"""Several model versions served at once: the running experiment's variants, the shadow
candidate, and which variant serves each request.

With no experiment the service serves its one model as variant ``default`` and nothing else
changes. With one, each variant's model version has a processor and a ``Batcher`` of its own
(a version already served is shared: a variant on the service's own model uses its batcher),
and a request is served by the variant its caller hashes to (``experiments.assignment``),
sticky per API key or per ``user``, unless it names a variant's version in ``model``.

Which experiment runs: ``EMBEDOPS_EXPERIMENT`` (``auto``, the default: the store's running
experiment; ``off``: none; a name: that one while it runs). The service re-reads
``<store>/experiments.json`` when it changes (checked every ``EMBEDOPS_EXPERIMENT_POLL_S``),
and at once when the admin endpoint changes it: new models load in threads while the old ones
serve, then the set is swapped; models no longer used finish what they hold and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from embedops.config import Settings
from embedops.errors import ConfigError, EmbedopsError
from embedops.experiments.assignment import assign
from embedops.experiments.definitions import Experiment, ExperimentStore, Shadow, Variant
from embedops.experiments.log import (
    ExperimentLog,
    RequestRow,
    add_feedback_to_file,
    key_hash,
)
from embedops.experiments.manage import open_variant
from embedops.experiments.metrics import ExperimentMetrics
from embedops.experiments.shadow import ShadowRunner
from embedops.models.base import ModelSpec
from embedops.processor import EmbeddingProcessor
from embedops.registry import ModelRegistry
from embedops.service.auth import ApiKey
from embedops.service.batcher import Batcher
from embedops.service.errors import ModelNotFound
from embedops.service.metrics import ServiceMetrics
from embedops.service.resolve import model_names, resolve_model_name

logger = logging.getLogger(__name__)
DEFAULT = "default"
# Seconds a model no longer served stays loaded after a swap, for requests already assigned.
RETIRE_AFTER_S = 5.0


@dataclass(frozen=True)
class ServedModel:
    """One model version the service serves: its processor, backend and batcher."""

    processor: EmbeddingProcessor
    batcher: Batcher

    @property
    def spec(self) -> ModelSpec:
        return self.processor.embedder.spec

    @property
    def version(self) -> str:
        return self.spec.version


def make_batcher(
    processor: EmbeddingProcessor, settings: Settings, metrics: ServiceMetrics
) -> Batcher:
    """A batcher for ``processor``'s backend, configured as the service's own."""
    return Batcher(
        processor.embedder,
        workers=processor.workers,
        batch_tokens=processor.batch_tokens,
        max_rows=256 if processor.batch_tokens is not None else 1024,
        max_wait=settings.max_batch_wait_ms / 1000,
        max_queued=settings.queue_size,
        on_batch=metrics.observe_batch,
    )


async def _warm(processor: EmbeddingProcessor) -> None:
    embedder = processor.embedder
    load = getattr(embedder, "load", None)
    if load is not None:
        await run_in_threadpool(load)
    await run_in_threadpool(embedder.embed, ["warm up"])


class Variants:
    """The service's models, the running experiment, its log and its shadow.

    Args:
        settings: the service's settings.
        default: the service's own model (owned by the app, never closed here).
        metrics: the service's metrics (experiment metrics join its registry).
    """

    def __init__(
        self, *, settings: Settings, default: ServedModel, metrics: ServiceMetrics
    ) -> None:
        self.settings = settings
        self.default = default
        self.metrics = metrics
        self.experiment_metrics = ExperimentMetrics(metrics.registry)
        self.store = ExperimentStore(settings.store)
        self.experiment: Experiment | None = None
        self.log: ExperimentLog | None = None
        self.shadow: ShadowRunner | None = None
        self._models: dict[str, ServedModel] = {}  # by version, the default's excluded
        self._labels: dict[str, ServedModel] = {}
        self._lock = asyncio.Lock()
        self._stamp: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # Lifetime

    async def start(self) -> None:
        """Serve the experiment the settings pick, and follow changes to the definitions.

        Raises:
            ConfigError: ``EMBEDOPS_EXPERIMENT`` names an experiment the store lacks.
        """
        choice = self.settings.experiment
        if choice not in ("auto", "off") and self.store.find(choice) is None:
            raise ConfigError(
                f"EMBEDOPS_EXPERIMENT={choice} names no experiment in {self.store.path}; "
                f"create it with: embedops experiments create {choice}, or set it to auto"
            )
        await self.refresh()
        if self.settings.experiment_poll_s > 0 and choice != "off":
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        """Stop following changes; stop the shadow, the log and the experiment's models."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            await self._swap(None, {}, {}, None, None)
        for task in list(self._retiring):
            task.cancel()  # retire now: the service is stopping
        await asyncio.gather(*self._retiring)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.experiment_poll_s)
            if self.store.stamp() == self._stamp:
                continue
            try:
                await self.refresh()
            except EmbedopsError as exc:
                logger.error("experiments changed, but cannot serve them: %s", exc)
            except Exception:  # a failed reload must not end the polling: the old set serves
                logger.exception("experiments changed; reloading them failed")

    def wanted(self) -> Experiment | None:
        """The experiment the settings and the store say to serve now."""
        choice = self.settings.experiment
        if choice == "off":
            return None
        if choice == "auto":
            return self.store.running()
        experiment = self.store.find(choice)
        return experiment if experiment is not None and experiment.status == "running" else None

    async def refresh(self) -> Experiment | None:
        """Read the definitions and serve what they say (loading new models first).

        Raises:
            ModelLoadError, ConfigError: a model cannot be loaded; the previous set serves on.
        """
        async with self._lock:
            self._stamp = self.store.stamp()
            wanted = await run_in_threadpool(self.wanted)
            current = self.experiment
            if wanted is not None and current is not None and wanted.serving() == current.serving():
                self.experiment = wanted
                return wanted
            await self._load(wanted)
            return wanted

    async def _load(self, wanted: Experiment | None) -> None:
        if wanted is None:
            await self._swap(None, {}, {}, None, None)
            logger.info("no experiment: serving %s", self.default.version)
            return
        opened: list[ServedModel] = []
        models: dict[str, ServedModel] = {}
        candidate: EmbeddingProcessor | None = None
        try:
            for variant in wanted.variants:
                if variant.version == self.default.version or variant.version in models:
                    continue
                known = self._models.get(variant.version)
                if known is None:
                    known = await self._open(variant)
                    opened.append(known)
                models[variant.version] = known
            if wanted.shadow is not None:
                candidate = await run_in_threadpool(open_variant, self.settings, wanted.shadow)
                await _warm(candidate)
        except BaseException:
            for model in opened:
                await model.batcher.stop()
                model.processor.close()
            if candidate is not None:
                candidate.close()
            raise
        labels = {
            v.label: self.default if v.version == self.default.version else models[v.version]
            for v in wanted.variants
        }
        same = self.experiment is not None and self.experiment.name == wanted.name
        if same and self.log is not None:
            log = self.log
        else:
            log = await run_in_threadpool(ExperimentLog, self.store.log_path(wanted.name))
        shadow = None
        if wanted.shadow is not None and candidate is not None:
            shadow = self._shadow(wanted.name, wanted.shadow, candidate, log)
        await self._swap(wanted, models, labels, log, shadow)
        logger.info(
            "experiment %s: %s%s",
            wanted.name,
            ", ".join(f"{v.label}={v.version} ({v.weight:g})" for v in wanted.variants),
            f"; shadow {wanted.shadow.version} at {wanted.shadow.rate:g}" if wanted.shadow else "",
        )

    def _shadow(
        self, name: str, shadow: Shadow, candidate: EmbeddingProcessor, log: ExperimentLog
    ) -> ShadowRunner:
        runner = ShadowRunner(
            experiment=name,
            candidate=candidate,
            rate=shadow.rate,
            queue_size=self.settings.shadow_queue,
            log=log,
            metrics=self.experiment_metrics,
        )
        runner.start()
        return runner

    async def _open(self, variant: Variant) -> ServedModel:
        processor = await run_in_threadpool(open_variant, self.settings, variant)
        try:
            await _warm(processor)
        except BaseException:
            processor.close()
            raise
        batcher = make_batcher(processor, self.settings, self.metrics)
        batcher.start()
        logger.info("variant %s: model %s loaded", variant.label, variant.version)
        return ServedModel(processor=processor, batcher=batcher)

    async def _swap(
        self,
        experiment: Experiment | None,
        models: dict[str, ServedModel],
        labels: dict[str, ServedModel],
        log: ExperimentLog | None,
        shadow: ShadowRunner | None,
    ) -> None:
        """Serve the new set, then retire what it no longer uses: models after
        ``RETIRE_AFTER_S`` seconds (a request assigned one just before the swap still reaches
        its batcher), the shadow and the log at once (requests never wait on them)."""
        old_models, old_log, old_shadow = self._models, self.log, self.shadow
        self.experiment, self._models, self._labels = experiment, models, labels
        self.log, self.shadow = log, shadow
        if old_shadow is not None and old_shadow is not shadow:
            await run_in_threadpool(old_shadow.stop)
        if old_log is not None and old_log is not log:
            await run_in_threadpool(old_log.close)
        retired = [m for v, m in old_models.items() if models.get(v) is not m]
        if retired:
            task = asyncio.get_running_loop().create_task(self._retire(retired, RETIRE_AFTER_S))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, models: list[ServedModel], delay: float) -> None:
        """Stop ``models`` after ``delay`` seconds (cancelled: at once)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(delay)
        for model in models:
            await model.batcher.stop()
            model.processor.close()
        logger.info("unloaded %s", ", ".join(m.version for m in models))

    # Requests

    def served(self) -> list[ServedModel]:
        """Every model version served now (the default first)."""
        return [self.default, *self._models.values()]

    def choose(
        self, request: Request, key: ApiKey, requested: str | None, *, user: str | None = None
    ) -> ServedModel:
        """The model that serves ``request``, recorded on ``request.state`` (``variant``,
        ``model_version``, ``experiment``) for the headers and the log.

        Raises:
            ModelNotFound: ``requested`` names a model not served here.
        """
        experiment = self.experiment
        if experiment is None:
            registry = ModelRegistry(store=self.settings.store)
            resolve_model_name(requested, self.default.spec, self.settings.model, registry)
            label, model = DEFAULT, self.default
        else:
            label = (
                self._named(experiment, requested)
                or assign(
                    experiment, user if experiment.sticky == "user" and user else key.id
                ).label
            )
            model = self._labels[label]
            self.experiment_metrics.requests.labels(experiment.name, label).inc()
        request.state.variant = label
        request.state.model_version = model.version
        request.state.experiment = experiment.name if experiment is not None else None
        return model

    def _named(self, experiment: Experiment, requested: str | None) -> str | None:
        """The variant ``requested`` names (``None``: it names the service's model, so the
        request is assigned)."""
        if requested is None:
            return None
        wanted = requested.lower()
        for v in experiment.variants:
            if v.version.lower() == wanted:
                return v.label
        if wanted in model_names(self.default.spec, self.settings.model):
            return None
        try:
            record = ModelRegistry(store=self.settings.store).find(requested)
        except EmbedopsError as exc:
            logger.warning("cannot read the model registry: %s", exc)
            record = None
        for v in experiment.variants:
            if record is not None and record.version == v.version:
                return v.label
            if wanted in model_names(self._labels[v.label].spec, v.model):
                return v.label
        served = ", ".join(f"{v.label}: {v.version}" for v in experiment.variants)
        raise ModelNotFound(
            f"the model {requested!r} is not served here; experiment {experiment.name} serves "
            f"{served}; see GET /v1/models",
            param="model",
        )

    def record(self, state: Mapping[str, Any], route: str, status: int, seconds: float) -> None:
        """Log a finished request that a variant of the running experiment served."""
        log, experiment = self.log, self.experiment
        name = state.get("experiment")
        if log is None or experiment is None or name != experiment.name:
            return
        key = state.get("key")
        returned = state.get("returned")
        log.add(
            RequestRow(
                request_id=str(state.get("request_id")),
                time=time.time(),
                variant=str(state.get("variant")),
                model_version=str(state.get("model_version")),
                route=route,
                key_hash=key_hash(key.id) if isinstance(key, ApiKey) else None,
                latency_ms=seconds * 1000,
                status=status,
                returned=list(returned) if returned is not None else None,
            )
        )

    def shadow_embed(
        self,
        request: Request,
        model: ServedModel,
        texts: Sequence[str],
        vectors: NDArray[np.float32],
    ) -> None:
        """Offer an embedding request to the shadow candidate (never waits)."""
        if self.shadow is not None and getattr(request.state, "experiment", None) is not None:
            request_id = getattr(request.state, "request_id", None)
            self.shadow.offer_embed(request_id, model.spec, texts, vectors)

    def shadow_search(
        self,
        request: Request,
        model: ServedModel,
        query: str,
        vector: NDArray[np.float32],
        *,
        collection: str,
        k: int,
        filters: Mapping[str, Any],
        returned: Sequence[str],
    ) -> None:
        """Offer a search by text to the shadow candidate (never waits)."""
        if self.shadow is not None and getattr(request.state, "experiment", None) is not None:
            self.shadow.offer_search(
                getattr(request.state, "request_id", None),
                model.spec,
                query,
                vector,
                collection=collection,
                k=k,
                filters=filters,
                returned=returned,
            )

    async def feedback(self, request_id: str, clicked: list[str], relevant: list[str]) -> bool:
        """Record feedback for ``request_id`` in the log that holds it (the running
        experiment's, else a past one's). Returns whether the request was found."""
        return await run_in_threadpool(self._feedback, request_id, clicked, relevant)

    def _feedback(self, request_id: str, clicked: list[str], relevant: list[str]) -> bool:
        log = self.log
        if log is not None:
            if log.add_feedback(request_id, clicked, relevant):
                return True
            # Another service process may have served it and not committed yet.
            time.sleep(log.interval * 2)
            if log.add_feedback(request_id, clicked, relevant):
                return True
        for experiment in self.store.list():
            path = self.store.log_path(experiment.name)
            other = (log is None or path != log.path) and path.is_file()
            if other and add_feedback_to_file(path, request_id, clicked, relevant):
                return True
        return False
