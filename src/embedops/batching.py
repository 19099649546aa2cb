"""Token-budget batching: group texts of similar length so little compute goes to padding."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from embedops.models.base import Embedder


def token_batches(lengths: Sequence[int], budget: int, max_rows: int = 1024) -> list[list[int]]:
    """Split row indices into batches whose padded size fits a token budget.

    Rows are sorted by length (longest first), then cut so that
    ``len(batch) * longest_in_batch <= budget`` (a single row longer than the budget still
    gets a batch of its own) and no batch has more than ``max_rows`` rows.

    Args:
        lengths: token length of each row (already capped at the model's limit).
        budget: tokens per batch, padding included.
        max_rows: upper bound on rows per batch.

    Returns:
        Lists of indices into ``lengths``; every index appears exactly once.

    Example:
        >>> token_batches([3, 10, 4, 9], budget=20)
        [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current and ((len(current) + 1) * longest > budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        if not current:
            longest = max(1, lengths[i])
        current.append(i)
    if current:
        batches.append(current)
    return batches


def rows_per_worker(rows: int, max_rows: int, workers: int) -> int:
    """Cap batch rows so that ``rows`` give every worker at least one batch."""
    return max(1, min(max_rows, -(-rows // max(1, workers))))


def plan_batches(
    rows: int,
    lengths: Sequence[int] | None,
    budget: int | None,
    max_rows: int,
    workers: int,
) -> list[list[int]]:
    """Row indices of each inference batch, at most ``max_rows`` rows and every worker busy.

    ``budget=None`` skips length batching (static models, whose cost does not grow with
    padding): plain chunks in input order, and ``lengths`` may be ``None``. Otherwise
    ``lengths`` (token counts, already capped at the model's limit) are cut by
    ``token_batches``.
    """
    max_rows = rows_per_worker(rows, max_rows, workers)
    if budget is None:
        return [list(range(i, min(i + max_rows, rows))) for i in range(0, rows, max_rows)]
    assert lengths is not None and len(lengths) == rows
    return token_batches(lengths, budget, max_rows)


def embed_in_batches(
    embedder: Embedder,
    texts: Sequence[str],
    budget: int | None = 2048,
    max_rows: int = 1024,
    workers: int = 1,
) -> NDArray[np.float32]:
    """Embed any number of texts in token-budget batches; rows come back in input order.

    ``budget=None`` skips length batching (for static models, whose cost does not grow with
    padding): plain chunks of ``max_rows``. With ``workers > 1``, that many batches run at once
    in threads (the backends release the GIL while they compute; give each
    ``cores / workers`` threads of its own).
    """
    out = np.zeros((len(texts), embedder.spec.dim), dtype=np.float32)
    if not texts:
        return out
    lengths = None
    if budget is not None:
        limit = embedder.spec.max_tokens
        lengths = [min(n, limit) for n in embedder.count_tokens(texts)]
    batches = plan_batches(len(texts), lengths, budget, max_rows, workers)
    chunks = [[texts[i] for i in batch] for batch in batches]
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(embedder.embed, chunks))
    else:
        results = [embedder.embed(chunk) for chunk in chunks]
    for batch, vectors in zip(batches, results, strict=True):
        out[batch] = vectors
    return out
