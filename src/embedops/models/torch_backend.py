"""The reference backend: sentence-transformers on PyTorch, CPU."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.errors import ModelLoadError
from embedops.models.base import ModelSpec
from embedops.models.lazy import LazyBackend

logger = logging.getLogger(__name__)


class SentenceTransformerBackend(LazyBackend):
    """Embeds with ``SentenceTransformer.encode(normalize_embeddings=True)``.

    The model loads on the first ``embed`` call, so a run that finds every row unchanged never
    pays for it.
    """

    def __init__(self, spec: ModelSpec, *, threads: int | None = None) -> None:
        super().__init__(spec)
        self._threads = threads
        self._model: Any = None
        # The Hugging Face tokenizer inside encode() is not safe to call from two threads
        # ("Already borrowed"); torch parallelises inside each call instead.
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ModelLoadError(
                "the torch backend needs sentence-transformers; run: make setup"
            ) from exc
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if self._threads:
            import torch

            torch.set_num_threads(self._threads)  # process-wide: torch has one pool
        logger.info("loading model %s from %s", self._spec.name, self._spec.path)
        try:
            self._model = SentenceTransformer(str(self._spec.path), device="cpu")
        except Exception as exc:  # torch/transformers raise many types for a bad directory
            raise ModelLoadError(
                f"cannot load model from {self._spec.path} ({type(exc).__name__}: {exc}); "
                "check that the directory is a complete sentence-transformers model"
            ) from exc
        self._model.max_seq_length = self._spec.max_tokens

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=len(texts),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
