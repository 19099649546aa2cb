"""The ``Embedder`` protocol every backend implements, and ``ModelSpec``, a model's description."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ModelSpec:
    """A model on disk, described well enough to tell two versions apart.

    Attributes:
        name: display name, e.g. ``all-MiniLM-L6-v2``.
        path: the model directory (sentence-transformers layout).
        digest: ``sha256:<hex>`` of the weights file.
        dim: embedding dimension.
        max_tokens: the longest input in tokens; longer texts are truncated.
        backend: inference backend, e.g. ``torch``.
        precision: ``fp32`` and so on.
    """

    name: str
    path: Path
    digest: str
    dim: int
    max_tokens: int
    backend: str = "torch"
    precision: str = "fp32"

    @property
    def version(self) -> str:
        """The model version: name, backend, precision and weights digest.

        Vectors of two versions are never mixed in one table.
        """
        slug = re.sub(r"[^a-z0-9.]+", "-", self.name.lower()).strip("-")
        short = self.digest.split(":", 1)[-1][:12]
        return f"{slug}-{self.backend}-{self.precision}-{short}"


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from a model backend.

    ``embed`` returns float32 vectors of shape ``(len(texts), dim)``, L2-normalised.
    ``count_tokens`` gives each text's length in tokens *before* truncation, special tokens
    included; the pipeline uses it to batch by token budget and to count truncated texts.
    """

    @property
    def spec(self) -> ModelSpec: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]: ...
