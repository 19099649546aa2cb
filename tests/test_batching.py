from __future__ import annotations

import random

from embedops.batching import token_batches


def test_every_row_once_and_budget_respected() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(1, 256) for _ in range(2000)]
    batches = token_batches(lengths, budget=4096, max_rows=512)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(2000))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 4096
        assert len(batch) <= 512


def test_sorted_batches_waste_little_padding() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(5, 200) for _ in range(4096)]
    batches = token_batches(lengths, budget=8192)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1


def test_row_longer_than_budget_gets_own_batch() -> None:
    assert token_batches([300, 10, 10], budget=100) == [[0], [1, 2]]


def test_max_rows() -> None:
    assert [len(b) for b in token_batches([1] * 10, budget=1000, max_rows=4)] == [4, 4, 2]


def test_rows_per_worker_gives_each_worker_a_batch() -> None:
    from embedops.batching import rows_per_worker

    assert rows_per_worker(128, 1024, 2) == 64
    assert rows_per_worker(5000, 1024, 2) == 1024
    assert rows_per_worker(1, 1024, 4) == 1
    assert rows_per_worker(7, 1024, 1) == 7
