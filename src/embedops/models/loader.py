"""Choosing and building a backend for a model."""

from __future__ import annotations

from collections.abc import Callable

from embedops.errors import ConfigError
from embedops.models.base import Embedder, ModelSpec
from embedops.models.registry import resolve_model


def _torch(spec: ModelSpec) -> Embedder:
    from embedops.models.torch_backend import SentenceTransformerBackend

    return SentenceTransformerBackend(spec)


BACKENDS: dict[str, Callable[[ModelSpec], Embedder]] = {"torch": _torch}


def load_embedder(model: str, backend: str = "torch") -> Embedder:
    """Resolve ``model`` and build its ``backend`` (cheap: weights load on first use).

    Raises:
        ConfigError: unknown backend (the message lists the known ones).
        ModelLoadError: the model cannot be found or is broken.
    """
    factory = BACKENDS.get(backend)
    if factory is None:
        raise ConfigError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    return factory(resolve_model(model, backend=backend))
