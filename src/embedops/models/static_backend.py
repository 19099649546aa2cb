"""The ``static`` backend: a model2vec static model distilled locally from the same weights.

A static model looks each token up in a table (no transformer at run time): about two orders
of magnitude faster, at lower quality (STS-B dev 79 against 86.7).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.errors import ModelLoadError
from embedops.models.artifacts import ensure_artefact, library_versions
from embedops.models.base import ModelSpec
from embedops.models.lazy import LazyBackend
from embedops.models.tokenizer_process import TokenizerProcess, flatten
from embedops.models.tokens import CutTokenizer, read_tokenizer

logger = logging.getLogger(__name__)
# One text's token ids: a list when tokenised here, an int32 array from the tokenizer process.
Ids = list[int] | NDArray[np.int32]

PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
RECIPE = f"model2vec distill, PCA {PCA_DIMS}, SIF {SIF_COEFFICIENT}"
# Ids kept between count_tokens and embed, counted in ids (a few pipeline windows; about
# 36 MB as Python lists). Texts counted but never embedded (found in the run's vector cache)
# leave first-in, first-out.
MEMO_SIZE = 1_000_000
# Counts of at least this many texts go to the tokenizer process (a pipeline window; the
# round trip costs about 1 ms).
PROCESS_MIN_TEXTS = 256


def distill_static(spec: ModelSpec, folder: Path, filename: str) -> dict[str, Any]:
    """Distil a model2vec model from ``spec.path`` into ``folder/filename`` (needs torch)."""
    from model2vec.distill import distill

    model = distill(
        model_name=str(spec.path),
        pca_dims=PCA_DIMS,
        sif_coefficient=SIF_COEFFICIENT,
        device="cpu",
    )
    model.save_pretrained(str(folder / filename))
    return {
        "distillation": {"pca_dims": PCA_DIMS, "sif_coefficient": SIF_COEFFICIENT},
        "libraries": library_versions("model2vec", "skeletoken", "torch", "transformers"),
    }


class StaticBackend(LazyBackend):
    """Embeds with a model2vec model built once and cached by model version.

    The model is loaded with model2vec; embedding runs here, vectorised: token ids from
    ``FastWordPiece`` (the same ids as the model's tokenizer), then one sparse (texts x
    vocabulary) count matrix times the token table for the whole batch. It follows model2vec's
    ``encode`` (the text cut to ``max_tokens`` x the median token length in characters, then
    to ``max_tokens`` tokens, ``[UNK]`` dropped, the mean of the token vectors) in float32
    instead of the stored float16.
    """

    filename = "model"

    def __init__(self, spec: ModelSpec, *, cache_dir: Path) -> None:
        super().__init__(spec)
        self._cache_dir = cache_dir
        self._table: NDArray[np.float32] = np.zeros((0, spec.dim), dtype=np.float32)
        self._cut: CutTokenizer | None = None
        self._max_chars = 0
        self.model_path: Path | None = None  # the model2vec folder, once loaded
        self._memo: dict[str, Ids] = {}  # ids counted and not embedded yet
        self._memo_ids = 0  # ids held in the memo
        self._memo_lock = threading.Lock()
        self.memo_size = MEMO_SIZE  # 0: keep no ids (a worker process; see processes.py)
        # Tokenise counted windows in a process of its own (only with a memo, on 2+ cores).
        self.tokenizer_process = (os.cpu_count() or 1) > 1
        self._process: TokenizerProcess | None = None
        self._process_lock = threading.Lock()

    def _load(self) -> None:
        """Distil (once) and load the static model."""
        try:
            from model2vec import StaticModel
        except ImportError as exc:
            raise ModelLoadError("the static backend needs model2vec; run: make setup") from exc
        path = ensure_artefact(
            self._cache_dir,
            self._spec,
            self.filename,
            lambda folder: distill_static(self._spec, folder, self.filename),
            recipe=RECIPE,
        )
        model = StaticModel.from_pretrained(str(path))
        self.model_path = path
        self._table = token_table(model)
        self._max_chars = self._spec.max_tokens * int(model.median_token_length)
        self._cut = CutTokenizer(read_tokenizer(path / "tokenizer.json"), self._max_chars)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as this model splits them (a static model adds no special tokens;
        a text past the character cut counts as over the limit). Loads the model (its
        tokenizer comes with the distilled model).

        The ids are kept for the ``embed`` that usually follows (the pipeline counts a window,
        then embeds it), so that each text is tokenised once. Large counts are tokenised in
        the tokenizer process, on another core, once it has started.
        """
        self.load()
        texts = list(texts)
        ids = self._process_ids(texts) or self._tokenize(texts)
        over = self._spec.max_tokens + 1
        if self.memo_size > 0:
            self._remember(texts, ids)
        return [
            len(i) if len(t) <= self._max_chars else max(len(i), over)
            for t, i in zip(texts, ids, strict=True)
        ]

    def close(self) -> None:
        """End the tokenizer process, if one was started (idempotent)."""
        with self._process_lock:
            if self._process is not None:
                self._process.close()
                self._process = None

    def _process_ids(self, texts: list[str]) -> Sequence[Ids] | None:
        """Ids from the tokenizer process (started on the first large count), or ``None``
        while it starts, is busy, or after it failed."""
        if not self.tokenizer_process or self.memo_size <= 0 or len(texts) < PROCESS_MIN_TEXTS:
            return None
        with self._process_lock:
            if self._process is None:
                assert self.model_path is not None
                try:
                    self._process = TokenizerProcess(
                        self.model_path / "tokenizer.json", self._max_chars
                    )
                except (OSError, ValueError, TypeError) as exc:  # what Popen raises
                    logger.warning("cannot start the tokenizer process (%s); tokenising here", exc)
                    self.tokenizer_process = False
                    return None
            process = self._process
        return process.ids(texts)

    def _remember(self, texts: list[str], ids: Sequence[Ids]) -> None:
        with self._memo_lock:
            memo = self._memo
            for text, found in zip(texts, ids, strict=True):
                old = memo.pop(text, None)
                self._memo_ids += len(found) - (len(old) if old is not None else 0)
                memo[text] = found
            while self._memo_ids > self.memo_size and memo:
                oldest = next(iter(memo))
                self._memo_ids -= len(memo.pop(oldest))

    def _tokenize(self, texts: list[str]) -> Sequence[Ids]:
        """Ids of each text after the character cut, before the token cut."""
        assert self._cut is not None
        return self._cut(texts)

    def _ids(self, texts: list[str]) -> list[Ids]:
        with self._memo_lock:
            memo = [self._memo.pop(t, None) for t in texts]
            self._memo_ids -= sum(len(found) for found in memo if found is not None)
        missing = [t for t, found in zip(texts, memo, strict=True) if found is None]
        fresh = iter(self._tokenize(missing) if missing else [])
        ids = [found if found is not None else next(fresh) for found in memo]
        limit = self._spec.max_tokens
        return [i if len(i) <= limit else i[:limit] for i in ids]

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        from scipy.sparse import csr_matrix

        ids = self._ids(texts)
        flat, bounds = flatten(ids)
        # One sparse (texts x vocabulary) count matrix times the table sums each text's token
        # vectors without gathering them (a gather of every token's row is 40x slower).
        counts = csr_matrix(
            (np.ones(flat.size, dtype=np.float32), flat, bounds),
            shape=(len(ids), self._table.shape[0]),
        )
        sums = np.asarray(counts @ self._table, dtype=np.float32)
        # The mean and the sum point the same way; normalising the sum gives the mean's
        # direction. Texts with no known token stay zero.
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        vectors: NDArray[np.float32] = np.divide(
            sums, norms, out=np.zeros_like(sums), where=norms > 0
        )
        return vectors


def token_table(model: Any) -> NDArray[np.float32]:
    """One float32 row per token id: model2vec's vector (through its token mapping), times
    its weight, and zero for ``[UNK]`` (model2vec drops unknown tokens)."""
    table = np.asarray(model.embedding, dtype=np.float32)
    if model.token_mapping is not None:
        table = table[np.asarray(model.token_mapping)]
    if model.weights is not None:
        table = table * np.asarray(model.weights, dtype=np.float32)[:, None]
    table = np.array(table, dtype=np.float32)
    if model.unk_token_id is not None:
        table[model.unk_token_id] = 0.0
    return table
