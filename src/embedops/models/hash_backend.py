"""``HashBackend``: deterministic vectors from text hashes, for tests and service plumbing.

No weights are read: each lower-cased word of a text gets a unit vector seeded by its hash,
and a text's vector is the normalised sum of its words' vectors, so texts that share words
score higher than texts that do not (enough for search tests to mean something). Token counts
come from the model's own tokenizer (cheap), so usage and batching see real numbers.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
from numpy.typing import NDArray

from embedops.models.lazy import LazyBackend

_WORD = re.compile(r"\w+")


class HashBackend(LazyBackend):
    """Deterministic, L2-normalised vectors of ``spec.dim`` from word hashes (no model).

    Args:
        spec: the model whose name, dimension, token limit and tokenizer are borrowed.

    Example:
        >>> backend = HashBackend(spec)  # doctest: +SKIP
        >>> backend.embed(["a red shoe"]).shape
        (1, 384)
    """

    def _load(self) -> None:
        """Nothing to load: the vectors need no weights."""

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one backend per process; bounded)
    def _word(self, word: str) -> NDArray[np.float32]:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector = np.random.default_rng(seed).standard_normal(self._spec.dim)
        return np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self._spec.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower()) or [text]
            for word in words:
                out[i] += self._word(word)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.asarray(out / np.where(norms > 0, norms, 1.0), dtype=np.float32)
