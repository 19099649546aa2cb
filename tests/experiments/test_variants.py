"""``service.variants.Variants`` without HTTP: loading an experiment's models, swapping them
when the definitions change, and retiring the old ones without stranding a request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.experiments.definitions import ExperimentStore
from embedops.experiments.manage import build_experiment
from embedops.service import variants as variants_module
from embedops.service.auth import ApiKey
from embedops.service.batcher import Batcher
from embedops.service.errors import Overloaded
from embedops.service.metrics import ServiceMetrics
from embedops.service.variants import ServedModel, Variants
from tests.experiments.conftest import register
from tests.fakes import FakeEmbedder

KEY = ApiKey(
    id="key_1", name="", hash="h", hint="eo-", scopes=("embed",), rpm=None, tpm=None, created="now"
)


def _request() -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace())


def test_swap_retires_old_models_after_a_grace(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(variants_module, "RETIRE_AFTER_S", 0.3)
    store = tmp_path / "store"
    settings = Settings(store=store, backend="hash", experiment_poll_s=0)
    version = register(store, models["a"])
    experiments = ExperimentStore(store)

    async def scenario() -> None:
        processor = EmbeddingProcessor(store=store, embedder=FakeEmbedder(), settings=settings)
        default = ServedModel(processor=processor, batcher=Batcher(processor.embedder))
        default.batcher.start()
        variants = Variants(settings=settings, default=default, metrics=ServiceMetrics())
        await variants.start()
        assert variants.experiment is None
        request = _request()
        assert variants.choose(request, KEY, None) is default  # type: ignore[arg-type]
        assert (request.state.variant, request.state.model_version) == (
            "default",
            "fake-fake-fp32-000000000000",
        )

        experiments.create(build_experiment(settings, "one", [("a", version, 1.0)]))
        assert (await variants.refresh()) is not None
        request = _request()
        model = variants.choose(request, KEY, None)  # type: ignore[arg-type]
        assert request.state.variant == "a" and model.version == version
        assert [m.version for m in variants.served()] == [default.version, version]

        # Stopped while a request holds the model: it is still served within the grace.
        experiments.finish("one")
        await variants.refresh()
        assert variants.experiment is None and variants.served() == [default]
        vectors = await model.batcher.embed(["red hat"], [4])
        assert vectors.shape == (1, 32)
        await asyncio.sleep(0.6)  # retired: refused, never left hanging
        with pytest.raises(Overloaded, match="being unloaded"):
            await asyncio.wait_for(model.batcher.embed(["red hat"], [4]), 1)
        await variants.stop()
        await default.batcher.stop()

    asyncio.run(scenario())
