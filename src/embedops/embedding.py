"""``embed_with_retry``: embed a batch so that only the texts that really fail are lost.

The run loop, the Ray engine and the service all embed through it:

- a transient error (``OSError``, ``TimeoutError``: a worker process or a remote backend that
  hiccups) is retried with exponential backoff and jitter;
- ``MemoryError`` halves the batch, down to one text (then ``MemoryPressure``);
- any other error of the model (``ValueError``, ``RuntimeError``) splits the batch in halves
  down to single texts, so one poison text fails alone, with its error;
- a non-finite or zero vector (a static model that knows no token of the text) marks that
  text failed: stored, it would match nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from embedops.errors import MemoryPressure, ModelError
from embedops.models.base import Embedder

logger = logging.getLogger(__name__)

# Why a text whose vector is zero is quarantined (a static model knows none of its tokens).
ZERO_VECTOR = "the model returned a zero vector (it knows no token of the text)"
NON_FINITE = "the model returned a non-finite vector"
TRANSIENT = (OSError, TimeoutError)


def embed_with_retry(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    retries: int = 3,
    backoff: float = 0.1,
    budget_hint: str = "lower --batch-tokens",
) -> tuple[NDArray[np.float32], dict[int, str]]:
    """Embed ``texts``; return their vectors and ``index -> error`` for the texts that failed
    (their rows are zeros).

    Args:
        embedder: the backend.
        texts: one batch.
        retries: tries after the first for a transient error, with backoff and jitter.
        backoff: the first wait in seconds (doubled each try, times 0.5-1.5 at random).
        budget_hint: what to tell the user when one text alone runs out of memory.

    Raises:
        MemoryPressure: a single text runs out of memory.
        ModelError: the model returned an array of the wrong shape.
    """
    dim = embedder.spec.dim
    try:
        matrix = _with_retries(embedder, texts, retries, backoff)
    except MemoryError as exc:
        if len(texts) == 1:
            raise MemoryPressure(
                "out of memory embedding a single text even after halving the batch; "
                f"{budget_hint} or free memory"
            ) from exc
        logger.warning("MemoryError on a batch of %d texts; halving it", len(texts))
        return _halves(embedder, texts, retries, backoff, budget_hint)
    except (ValueError, RuntimeError, *TRANSIENT) as exc:
        if len(texts) == 1:
            return np.zeros((1, dim), dtype=np.float32), {0: f"{type(exc).__name__}: {exc}"}
        return _halves(embedder, texts, retries, backoff, budget_hint)
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape != (len(texts), dim):
        raise ModelError(
            f"the model returned an array of shape {matrix.shape} for {len(texts)} texts "
            f"(expected ({len(texts)}, {dim})); check the backend"
        )
    finite = np.asarray(np.isfinite(matrix).all(axis=1))
    zero = ~matrix.any(axis=1)
    bad = np.flatnonzero(~finite | zero)
    if not bad.size:
        return matrix, {}
    matrix = matrix.copy()
    matrix[bad] = 0.0
    return matrix, {int(i): NON_FINITE if not finite[i] else ZERO_VECTOR for i in bad}


def _with_retries(
    embedder: Embedder, texts: Sequence[str], retries: int, backoff: float
) -> NDArray[np.float32]:
    for attempt in range(retries + 1):
        try:
            return embedder.embed(texts)
        except TRANSIENT as exc:
            if attempt == retries:
                raise
            wait = backoff * 2**attempt * random.uniform(0.5, 1.5)
            logger.warning(
                "transient error embedding %d texts (%s); retrying in %.2f s",
                len(texts),
                exc,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def _halves(
    embedder: Embedder, texts: Sequence[str], retries: int, backoff: float, hint: str
) -> tuple[NDArray[np.float32], dict[int, str]]:
    mid = len(texts) // 2
    first, first_errors = embed_with_retry(
        embedder, texts[:mid], retries=retries, backoff=backoff, budget_hint=hint
    )
    second, second_errors = embed_with_retry(
        embedder, texts[mid:], retries=retries, backoff=backoff, budget_hint=hint
    )
    errors = first_errors | {mid + i: error for i, error in second_errors.items()}
    return np.concatenate([first, second]), errors
