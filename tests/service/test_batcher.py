"""The batcher alone: order of results, batches of similar lengths, the bounded queue."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from embedops.service.batcher import Batcher
from embedops.service.errors import Overloaded
from tests.fakes import FakeEmbedder


def test_vectors_come_back_per_request_in_order_and_batches_group_lengths() -> None:
    fake = FakeEmbedder(dim=8, max_tokens=512)

    async def scenario() -> list[np.ndarray]:  # type: ignore[type-arg]
        batcher = Batcher(fake, workers=1, batch_tokens=64, max_wait=0.05)
        batcher.start()
        requests = [
            (["a b", "a b c d e f g h i j k l m n o p"], [4, 18]),
            (["x y z"], [5]),
            (["long " * 15, "tiny"], [17, 3]),
        ]
        results = await asyncio.gather(*(batcher.embed(t, n) for t, n in requests))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    texts = ["a b", "a b c d e f g h i j k l m n o p", "x y z", "long " * 15, "tiny"]
    expected = fake.embed(texts)
    np.testing.assert_allclose(np.concatenate(results), expected)
    # The oldest text ("a b", 4 tokens) goes with the other short ones; the long ones after.
    assert sorted(fake.calls[0]) == sorted(["a b", "tiny", "x y z"])
    assert sorted(fake.calls[1]) == sorted(["a b c d e f g h i j k l m n o p", "long " * 15])


def test_a_full_queue_refuses_instead_of_growing() -> None:
    async def scenario() -> None:
        batcher = Batcher(FakeEmbedder(), max_wait=0.2, max_queued=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.embed(["a", "b", "c"], [3, 3, 3]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.embed(["d"], [3])
        assert refused.value.headers == {"retry-after": "1"}
        assert (await first).shape == (3, 8)
        await batcher.stop()

    asyncio.run(scenario())
