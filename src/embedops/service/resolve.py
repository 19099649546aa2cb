"""Which model a request means: the one seam where a model registry with aliases plugs in.

Today the service serves one model; a request may name it by its name (any case, with or
without the ``sentence-transformers/`` owner), by the ``--model`` it was started with, or by
its version (``all-minilm-l6-v2-onnx-fp32-53aa51172d14``). When the registry exists, its
aliases resolve here.
"""

from __future__ import annotations

from embedops.models.base import ModelSpec
from embedops.service.errors import ModelNotFound


def model_names(spec: ModelSpec, configured: str) -> set[str]:
    """The names, lower-cased, that mean the served model."""
    names = {spec.name, spec.version, configured, configured.rsplit("/", 1)[-1]}
    names |= {f"sentence-transformers/{spec.name}"}
    return {n.lower() for n in names}


def resolve_model_name(requested: str | None, spec: ModelSpec, configured: str) -> ModelSpec:
    """The served model that ``requested`` names (``None``: the served one).

    Raises:
        ModelNotFound: ``requested`` names another model (404 ``model_not_found``).
    """
    if requested is None or requested.lower() in model_names(spec, configured):
        return spec
    raise ModelNotFound(
        f"the model {requested!r} does not exist or is not served here; this service serves "
        f"{spec.name!r} (version {spec.version}); see GET /v1/models",
        param="model",
    )
