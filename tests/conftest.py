from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedops import EmbeddingProcessor
from tests.fakes import FakeEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared data lies beside the repository root")
    return path


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def processor(tmp_path: Path, fake: FakeEmbedder) -> Iterator[EmbeddingProcessor]:
    with EmbeddingProcessor(store=tmp_path / "store", embedder=fake) as p:
        yield p


@pytest.fixture(scope="session")
def real_backend():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 sentence-transformers backend, loaded once per session."""
    from embedops.models.loader import load_embedder

    backend = load_embedder("all-MiniLM-L6-v2", "torch")
    backend.load()  # type: ignore[attr-defined]
    return backend
