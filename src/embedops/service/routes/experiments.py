"""Experiments over HTTP: the admin endpoints (scope ``admin``) and ``POST /v1/feedback``.

``PUT /v1/experiments/{name}`` creates or replaces an experiment and runs it: the service
loads the new models before it answers (another running experiment must be stopped first),
and other service processes on the store follow within ``EMBEDOPS_EXPERIMENT_POLL_S``.
``DELETE`` stops it (the definition and log stay, for the report).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from embedops.errors import EmbedopsError, ModelLoadError
from embedops.experiments.definitions import Experiment
from embedops.experiments.manage import build_experiment
from embedops.experiments.report import experiment_report
from embedops.service.auth import ApiKey
from embedops.service.deps import ServicesDep, require
from embedops.service.errors import InvalidRequest, PermissionDenied, ServiceError
from embedops.service.state import Services

router = APIRouter(prefix="/v1", tags=["experiments"])
AdminKey = Annotated[ApiKey, Depends(require("admin"))]


class ExperimentNotFound(ServiceError):
    """No experiment of that name in the store."""

    status = 404
    type = "not_found_error"
    code = "experiment_not_found"


class RequestNotFound(ServiceError):
    """Feedback names a request no experiment log holds."""

    status = 404
    type = "not_found_error"
    code = "request_not_found"


class VariantBody(BaseModel):
    """One variant of ``PUT /v1/experiments/{name}``."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, description="Alias, version, model name or directory.")
    weight: float = Field(gt=0, description="Relative share of the traffic.")


class ExperimentBody(BaseModel):
    """``PUT /v1/experiments/{name}``: the variants (the first is the control) and options."""

    model_config = ConfigDict(extra="forbid")

    variants: list[VariantBody] = Field(min_length=1, max_length=16)
    sticky: Literal["key", "user"] = "key"
    shadow: str | None = Field(default=None, description="A candidate to run in the shadow.")
    shadow_rate: float | None = Field(default=None, ge=0, le=1)
    collection: str | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: what the caller did with a response."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, description="Its x-request-id.")
    clicked: list[str] = Field(default_factory=list, max_length=10_000)
    relevant: list[str] = Field(default_factory=list, max_length=10_000)


class FeedbackResponse(BaseModel):
    """The feedback was recorded."""

    accepted: bool = True


def _definition(experiment: Experiment, services: Services) -> dict[str, Any]:
    running = services.variants.experiment
    active = running is not None and running.name == experiment.name
    return experiment.to_dict() | {"active": active}


def _get(services: Services, name: str) -> Experiment:
    experiment = services.variants.store.find(name)
    if experiment is None:
        raise ExperimentNotFound(f"no experiment {name!r}; see GET /v1/experiments")
    return experiment


@router.get("/experiments")
async def list_experiments(key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """Every experiment of the store, and which one this service runs."""
    experiments = await services.in_thread(services.variants.store.list)
    running = services.variants.experiment
    return {
        "object": "list",
        "data": [_definition(e, services) for e in experiments],
        "active": running.name if running is not None else None,
    }


@router.get("/experiments/{name}")
async def get_experiment(name: str, key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """One experiment's definition."""
    return _definition(await services.in_thread(lambda: _get(services, name)), services)


@router.put("/experiments/{name}")
async def put_experiment(
    name: str, body: ExperimentBody, key: AdminKey, services: ServicesDep
) -> dict[str, Any]:
    """Create or replace experiment ``name`` and run it (its models load before the answer)."""
    variants = services.variants
    try:
        experiment = await services.in_thread(
            lambda: build_experiment(
                services.settings,
                name,
                [(v.label, v.model, v.weight) for v in body.variants],
                sticky=body.sticky,
                shadow=body.shadow,
                shadow_rate=body.shadow_rate,
                collection=body.collection,
            )
        )
    except ModelLoadError as exc:  # a model the request names that cannot be found
        raise InvalidRequest(str(exc), param="variants") from exc
    stored = await services.in_thread(lambda: variants.store.put(experiment, replace=True))
    try:
        await variants.refresh()
    except EmbedopsError:
        # It cannot be served: do not leave it running for other processes to fail on too.
        await services.in_thread(lambda: variants.store.finish(name))
        await variants.refresh()
        raise
    return _definition(stored, services)


@router.delete("/experiments/{name}")
async def stop_experiment(name: str, key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """Stop experiment ``name`` (its definition and log stay, for the report)."""
    variants = services.variants
    await services.in_thread(lambda: _get(services, name))
    stopped = await services.in_thread(lambda: variants.store.finish(name))
    await variants.refresh()
    return _definition(stopped, services)


@router.get("/experiments/{name}/report")
async def report(name: str, key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """The experiment's report (as ``embedops experiments report NAME --json``)."""
    variants = services.variants
    await services.in_thread(lambda: _get(services, name))
    log = variants.log
    if log is not None and variants.experiment is not None and variants.experiment.name == name:
        await services.in_thread(log.flush)
    return await services.in_thread(lambda: experiment_report(services.settings.store, name))


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(
    body: FeedbackRequest, request: Request, services: ServicesDep
) -> FeedbackResponse:
    """Clicked or relevant item ids for a request an experiment variant served (scope
    ``embed`` or ``search``); they feed the variant's click-through, MRR and recall@k."""
    key = await require(None)(request)
    if not (key.allows("embed") or key.allows("search")):
        raise PermissionDenied(
            f"the key {key.id} lacks the scope 'embed' or 'search' (it has "
            f"{', '.join(key.scopes)}); create a key with --scopes search"
        )
    found = await services.variants.feedback(body.request_id, body.clicked, body.relevant)
    if not found:
        raise RequestNotFound(
            f"no experiment logged request {body.request_id!r}; send the x-request-id of a "
            f"response served while an experiment ran",
            param="request_id",
        )
    return FeedbackResponse()
