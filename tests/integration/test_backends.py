"""Every backend against its quality gate, on STS-B dev (the reference is sentence-transformers)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from embedops import EmbeddingProcessor
from embedops.models.base import ModelSpec
from embedops.models.loader import BACKENDS, load_embedder
from embedops.quality import GATES, evaluate, read_stsb
from tests.conftest import shared_file

pytestmark = [pytest.mark.integration, pytest.mark.quality]


class Memo:
    """Caches the reference's vectors so each backend is compared without re-embedding it."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.vectors: dict[str, NDArray[np.float32]] = {}

    @property
    def spec(self) -> ModelSpec:
        return self.inner.spec  # type: ignore[no-any-return]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)  # type: ignore[no-any-return]

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def reference(real_backend):  # type: ignore[no-untyped-def]
    return Memo(real_backend)


@pytest.mark.parametrize(
    ("backend", "gate"), [("onnx", "fp32"), ("onnx-int8", "int8"), ("static", "static")]
)
def test_backend_meets_its_quality_gate(backend: str, gate: str, reference) -> None:  # type: ignore[no-untyped-def]
    model = load_embedder("all-MiniLM-L6-v2", backend)
    scores = evaluate(
        model,
        stsb=shared_file("stsb-dev.tsv"),
        reference=None if backend == "static" else reference,
    )
    assert GATES[gate].failures(scores) == [], scores
    assert backend in scores.model_version


def test_default_backend_passes_the_fp32_gate(reference) -> None:  # type: ignore[no-untyped-def]
    processor = EmbeddingProcessor()
    assert BACKENDS[processor.backend].precision == "fp32"
    scores = evaluate(processor.embedder, stsb=shared_file("stsb-dev.tsv"), reference=reference)
    assert GATES["fp32"].failures(scores) == [], scores


def test_each_backend_has_its_own_model_version() -> None:
    versions = {load_embedder("all-MiniLM-L6-v2", b).spec.version for b in BACKENDS}
    assert versions == {
        "all-minilm-l6-v2-torch-fp32-53aa51172d14",
        "all-minilm-l6-v2-onnx-fp32-53aa51172d14",
        "all-minilm-l6-v2-onnx-int8-53aa51172d14",
        "all-minilm-l6-v2-static-pca256-53aa51172d14",
        "all-minilm-l6-v2-hash-fp32-53aa51172d14",  # the service's fake backend, no weights
    }


def test_static_backend_gives_model2vec_vectors() -> None:
    """The vectorised static path equals model2vec's own ``encode`` (float32 against its
    float16 sums), on real sentences, a text past the length limit and texts with no token."""
    from model2vec import StaticModel

    from embedops.models.static_backend import StaticBackend

    backend = load_embedder("all-MiniLM-L6-v2", "static")
    assert isinstance(backend, StaticBackend)
    a, b, _ = read_stsb(shared_file("stsb-dev.tsv"))
    texts = [*a[:500], " ".join(b[:200]), "Café [SEP] naïve", "", "\x00\x07"]
    ours = backend.embed(texts)
    model = StaticModel.from_pretrained(str(backend.model_path))
    theirs = model.encode(texts, max_length=backend.spec.max_tokens, use_multiprocessing=False)
    theirs = np.asarray(theirs, dtype=np.float32)
    assert ours.shape == (len(texts), 256)
    cosine = (ours[:-2] * theirs[:-2]).sum(axis=1) / np.linalg.norm(theirs[:-2], axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    assert not ours[-2:].any()  # nothing to embed: a zero vector, as model2vec gives


def test_static_counts_then_embeds_each_text_once() -> None:
    """The pipeline counts a window, then embeds it: the second call reuses the first's ids
    and gives the same vectors as a cold ``embed``; a text past the cut counts as too long."""
    backend = load_embedder("all-MiniLM-L6-v2", "static")
    a, _, _ = read_stsb(shared_file("stsb-dev.tsv"))
    long_text = " ".join(a[:400])
    texts = [*dict.fromkeys(a[:300]), long_text]
    cold = backend.embed(texts)
    counts = backend.count_tokens(texts)
    assert counts[0] == len(backend._cut([a[0]])[0])  # type: ignore[attr-defined]
    assert counts[-1] > backend.spec.max_tokens
    assert len(backend._memo) >= len(texts)  # type: ignore[attr-defined]
    warm = backend.embed(texts)
    assert not backend._memo  # type: ignore[attr-defined]
    np.testing.assert_array_equal(warm, cold)


def test_static_counts_in_the_tokenizer_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the tokenizer process ready, a window's counts come from it and its embed gives
    the vectors of a cold ``embed``; a run through it adds up; closing the processor ends it."""
    from embedops.models.static_backend import StaticBackend

    with EmbeddingProcessor(store=tmp_path / "store", backend="static") as processor:
        backend = processor.embedder
        assert isinstance(backend, StaticBackend)
        a, b, _ = read_stsb(shared_file("stsb-dev.tsv"))
        texts = list(dict.fromkeys(a + b))[:600]
        cold = backend.embed(texts)
        counts = backend.count_tokens(texts)  # starts the process; counted here meanwhile
        child = backend._process
        assert child is not None and child.wait_ready(30)
        assert backend.count_tokens(texts) == counts
        assert all(isinstance(ids, np.ndarray) for ids in backend._memo.values())
        np.testing.assert_array_equal(backend.embed(texts), cold)
        source = tmp_path / "s.jsonl"
        rows = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)]
        source.write_text("\n".join(rows) + "\n")
        report = processor.process(source, collection="c", id_field="id", text_field="text")
        assert (report.read, report.embedded, report.quarantined) == (600, 600, 0)
        stored = processor.vectors("c", ["0", "599"])
        np.testing.assert_allclose(stored, processor.embed([texts[0], texts[599]]), atol=1e-6)
    assert child.state == "closed" and child._child.poll() is not None


def test_worker_processes_give_the_same_vectors_and_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``processes=2``: two spawned processes, each with the static model, give the vectors
    and token counts of the in-process backend; a run through them adds up; close() stops them."""
    from embedops.config import Settings
    from embedops.models.processes import ProcessPoolEmbedder

    a, b, _ = read_stsb(shared_file("stsb-dev.tsv"))
    texts = list(dict.fromkeys(a + b))[:1001]  # odd: the halves differ in size
    alone = EmbeddingProcessor(backend="static")
    with EmbeddingProcessor(
        store=tmp_path / "store", backend="static", settings=Settings(processes=2)
    ) as pooled:
        embedder = pooled.embedder
        assert isinstance(embedder, ProcessPoolEmbedder)
        np.testing.assert_allclose(pooled.embed(texts), alone.embed(texts), atol=1e-6)
        assert embedder.count_tokens(texts) == alone.embedder.count_tokens(texts)
        source = tmp_path / "s.jsonl"
        rows = [json.dumps({"id": i, "text": t}) for i, t in enumerate(a[:50])]
        source.write_text("\n".join(rows) + "\n")
        report = pooled.process(source, collection="c", id_field="id", text_field="text")
        assert (report.read, report.embedded, report.quarantined) == (50, 50, 0)
        pool = embedder._pool  # type: ignore[attr-defined]
        assert pool is not None and len(pool._processes) == 2  # type: ignore[attr-defined]
    assert embedder._pool is None  # type: ignore[attr-defined]


def test_a_worker_that_cannot_load_reports_why(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker's own error reaches the caller (not just "the process pool is broken")."""
    from embedops.errors import ModelLoadError
    from embedops.models.processes import ProcessPoolEmbedder
    from tests.fakes import FakeEmbedder

    missing = tmp_path / "no-such-model"
    pool = ProcessPoolEmbedder(
        FakeEmbedder(),
        model=str(missing),
        backend="static",
        cache_dir=tmp_path,
        processes=1,
        threads=1,
    )
    try:
        with pytest.raises(ModelLoadError, match="no-such-model"):
            pool.embed(["a text"])
    finally:
        pool.close()
