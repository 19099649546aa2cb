"""embedops: turn records into embeddings and keep them useful in production."""

from embedops.cleaning import CleanOptions, FieldSpec, Reason
from embedops.config import Settings
from embedops.embedding import embed_with_retry
from embedops.errors import (
    CollectionNotFound,
    ConfigError,
    EmbedopsError,
    InputError,
    InvalidFormat,
    ItemNotFound,
    MemoryPressure,
    MissingField,
    ModelError,
    ModelLoadError,
    SourceNotFound,
    StoreError,
)
from embedops.models.base import Embedder, ModelSpec
from embedops.pipeline import RunReport
from embedops.processor import EmbeddingProcessor

__version__ = "0.1.0"

__all__ = [
    "CleanOptions",
    "CollectionNotFound",
    "ConfigError",
    "Embedder",
    "EmbeddingProcessor",
    "EmbedopsError",
    "FieldSpec",
    "InputError",
    "InvalidFormat",
    "ItemNotFound",
    "MemoryPressure",
    "MissingField",
    "ModelError",
    "ModelLoadError",
    "ModelSpec",
    "Reason",
    "RunReport",
    "Settings",
    "SourceNotFound",
    "StoreError",
    "__version__",
    "embed_with_retry",
]
