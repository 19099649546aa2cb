"""Models: the ``Embedder`` protocol, model descriptions, and the backends that implement it."""

from embedops.config import DEFAULT_MODEL
from embedops.models.base import Embedder, ModelSpec
from embedops.models.loader import load_embedder
from embedops.models.registry import resolve_model

__all__ = ["DEFAULT_MODEL", "Embedder", "ModelSpec", "load_embedder", "resolve_model"]
