"""``LazyBackend``: what every real backend shares (cheap construction, lazy thread-safe load,
token counting with the model's tokenizer, the empty-input case)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from embedops.models.base import ModelSpec
from embedops.models.tokens import TokenCounter


class LazyBackend:
    """Base of the backends. Subclasses implement ``_load()`` and ``_embed(texts)``.

    Constructing one is cheap (nothing is read); the tokenizer loads on the first count, the
    model on the first ``embed`` call (or ``load()``; for the static backend also
    ``count_tokens``), once, even when several threads ask at the same time.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def load(self) -> None:
        """Load the model now (idempotent, thread-safe)."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    @functools.cached_property
    def _tokens(self) -> TokenCounter:
        # Built on first count (the static backend counts with its own tokenizer instead).
        return TokenCounter(self._spec)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokens.count(texts)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts``: float32 ``(len(texts), dim)``, L2-normalised."""
        if not texts:
            return np.zeros((0, self._spec.dim), dtype=np.float32)
        self.load()
        return self._embed(list(texts))

    def _load(self) -> None:
        raise NotImplementedError

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        raise NotImplementedError
