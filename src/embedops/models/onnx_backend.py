"""ONNX Runtime backends: ``onnx`` (fp32, fused graph) and ``onnx-int8`` (quantised).

Tokenisation uses the model's fast tokenizer (truncation at the model's limit, padding to the
longest text of the batch); mean pooling and L2 normalisation run in numpy, as
sentence-transformers does for all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.errors import ModelLoadError
from embedops.models.artifacts import ensure_artefact
from embedops.models.base import ModelSpec
from embedops.models.lazy import LazyBackend
from embedops.models.tokens import read_tokenizer

logger = logging.getLogger(__name__)


class OnnxBackend(LazyBackend):
    """Runs an exported model with ONNX Runtime on the CPU.

    The ONNX file is built on first ``load()`` (or ``embed``) and cached under ``cache_dir``
    by model version, which includes the weights' digest.

    Args:
        spec: the model version (backend ``onnx``, precision ``fp32`` or ``int8``).
        cache_dir: artefact cache root.
        build: writes the ONNX file into a folder; returns manifest fields.
        recipe: what ``build`` makes (a cached file built by another recipe is rebuilt).
        disabled_optimizers: ONNX Runtime graph optimisers not to run at load.
        threads: intra-op threads (default: all cores).
    """

    filename = "model.onnx"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        cache_dir: Path,
        build: Callable[[Path], dict[str, Any]],
        recipe: str,
        threads: int | None = None,
        disabled_optimizers: Sequence[str] = (),
    ) -> None:
        super().__init__(spec)
        self._cache_dir = cache_dir
        self._build = build
        self._recipe = recipe
        self._disabled_optimizers = list(disabled_optimizers)
        self._threads = threads or os.cpu_count() or 1
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()

    def _load(self) -> None:
        """Build (once) and open the ONNX model."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError("the onnx backends need onnxruntime; run: make setup") from exc
        path = ensure_artefact(
            self._cache_dir,
            self._spec,
            self.filename,
            self._build,
            recipe=self._recipe,
        )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=self._disabled_optimizers,
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(
                f"cannot open {path} ({exc}); delete {path.parent} to rebuild it"
            ) from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = read_tokenizer(self._spec.path / "tokenizer.json")
        tokenizer.enable_truncation(max_length=self._spec.max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        tokens = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        return mean_pool(tokens, mask)


def mean_pool(tokens: NDArray[np.float32], mask: NDArray[np.int64]) -> NDArray[np.float32]:
    """Mean of the token embeddings under the attention mask, L2-normalised."""
    weights = mask[:, :, None].astype(np.float32)
    summed = np.einsum("bsh,bsx->bh", tokens, weights)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)
