"""``embed_with_retry``: transient errors retried, poison texts isolated by halving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from embedops import embed_with_retry
from embedops.errors import MemoryPressure
from tests.fakes import FakeEmbedder


class Flaky(FakeEmbedder):
    """Fails with OSError the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset")
        return super().embed(texts)


def test_transient_errors_are_retried_then_succeed() -> None:
    flaky = Flaky(failures=2)
    vectors, errors = embed_with_retry(flaky, ["a", "b", "c"], backoff=0.001)
    assert errors == {} and len(flaky.calls) == 1  # two failures, then one whole batch
    np.testing.assert_array_equal(vectors, FakeEmbedder().embed(["a", "b", "c"]))


def test_a_poison_text_fails_alone_after_splitting() -> None:
    fake = FakeEmbedder(fail_on="poison")
    texts = [f"text {i}" for i in range(16)]
    texts[11] = "poison pill"
    vectors, errors = embed_with_retry(fake, texts, backoff=0.001)
    assert list(errors) == [11] and "cannot embed this text" in errors[11]
    assert not vectors[11].any()
    good = [i for i in range(16) if i != 11]
    np.testing.assert_allclose(vectors[good], FakeEmbedder().embed([texts[i] for i in good]))
    assert sorted(fake.texts_embedded) == sorted(texts[i] for i in good)  # each once


def test_memory_errors_halve_down_to_one_text() -> None:
    vectors, errors = embed_with_retry(FakeEmbedder(memory_limit=3), [str(i) for i in range(10)])
    assert errors == {} and vectors.shape == (10, 8)
    with pytest.raises(MemoryPressure, match="lower the budget"):
        embed_with_retry(FakeEmbedder(memory_limit=0), ["a", "b"], budget_hint="lower the budget")
