from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks.bench import flops_per_text
from embedops.batching import embed_in_batches
from tests.fakes import FakeEmbedder


def test_flops_per_token_of_minilm() -> None:
    config = SimpleNamespace(hidden_size=384, intermediate_size=1536, num_hidden_layers=6)
    per_token = flops_per_text(config, 1)
    assert 21.2e6 < per_token < 21.3e6  # about 21 MFLOP per token
    assert flops_per_text(config, 26) > 26 * per_token  # attention grows with length


def test_embed_in_batches_keeps_order_with_workers() -> None:
    fake = FakeEmbedder()
    texts = [("word " * (i % 17 + 1)).strip() + str(i) for i in range(300)]
    one = embed_in_batches(fake, texts, budget=64)
    two = embed_in_batches(fake, texts, budget=64, workers=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[5], fake.embed([texts[5]])[0])
    assert max(len(c) for c in fake.calls) > 1
