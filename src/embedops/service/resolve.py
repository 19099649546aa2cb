"""Which model a request means: the one seam between requests and the model registry.

The service serves one model version. A request may name it by its name (any case, with or
without the ``sentence-transformers/`` owner), by the ``--model`` it was started with, by its
version (``all-minilm-l6-v2-onnx-fp32-53aa51172d14``), or by a registry alias
(``production``, ``candidate``; see ``embedops.registry``) that points at that version.
"""

from __future__ import annotations

import logging

from embedops.errors import EmbedopsError
from embedops.models.base import ModelSpec
from embedops.registry import ModelRegistry
from embedops.service.errors import ModelNotFound

logger = logging.getLogger(__name__)


def model_names(spec: ModelSpec, configured: str) -> set[str]:
    """The names, lower-cased, that mean the served model without asking the registry."""
    names = {spec.name, spec.version, configured, configured.rsplit("/", 1)[-1]}
    names |= {f"sentence-transformers/{spec.name}"}
    return {n.lower() for n in names}


def resolve_model_name(
    requested: str | None,
    spec: ModelSpec,
    configured: str,
    registry: ModelRegistry | None = None,
) -> ModelSpec:
    """The served model that ``requested`` names (``None``: the served one).

    Raises:
        ModelNotFound: ``requested`` names another model, or an alias of another version
            (404 ``model_not_found``).
    """
    if requested is None or requested.lower() in model_names(spec, configured):
        return spec
    record = None
    if registry is not None:
        try:
            record = registry.find(requested)
        except EmbedopsError as exc:  # an unreadable registry: the name is just unknown
            logger.warning("cannot read the model registry: %s", exc)
    if record is not None and record.version == spec.version:
        return spec
    points = f" (it names {record.version})" if record is not None else ""
    raise ModelNotFound(
        f"the model {requested!r}{points} is not served here; this service serves "
        f"{spec.name!r} (version {spec.version}); see GET /v1/models",
        param="model",
    )
