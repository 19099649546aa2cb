"""A tiny deterministic embedder for fast logic tests (never a default anywhere)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from embedops.models.base import ModelSpec


class FakeEmbedder:
    """Hash-seeded unit vectors; records every batch it is asked to embed.

    Args:
        dim: vector size.
        max_tokens: the model limit; tokens are whitespace words plus 2 special tokens.
        memory_limit: batches with more texts than this raise MemoryError.
        fail_on: texts containing this substring raise ValueError.
    """

    def __init__(
        self,
        dim: int = 8,
        max_tokens: int = 32,
        memory_limit: int | None = None,
        fail_on: str | None = None,
    ) -> None:
        self._spec = ModelSpec(
            name="fake",
            path=Path("."),
            digest="sha256:" + "0" * 64,
            dim=dim,
            max_tokens=max_tokens,
            backend="fake",
        )
        self.memory_limit = memory_limit
        self.fail_on = fail_on
        self.calls: list[list[str]] = []

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def texts_embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self.memory_limit is not None and len(texts) > self.memory_limit:
            raise MemoryError("fake: batch too large")
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise ValueError("fake: cannot embed this text")
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self._spec.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self._spec.dim)
