"""The real all-MiniLM-L6-v2 against sentence-transformers, on STS-B dev."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedops import EmbeddingProcessor
from embedops.quality import read_stsb
from tests.conftest import shared_file

pytestmark = [pytest.mark.integration, pytest.mark.quality]


@pytest.fixture(scope="module")
def stsb_vectors(real_backend):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    a, b, scores = read_stsb(shared_file("stsb-dev.tsv"))
    sentences = list(dict.fromkeys(a + b))
    processor = EmbeddingProcessor(embedder=real_backend)
    ours = processor.embed(sentences)
    reference = SentenceTransformer(str(real_backend.spec.path), device="cpu").encode(
        sentences, normalize_embeddings=True, convert_to_numpy=True
    )
    index = {s: i for i, s in enumerate(sentences)}
    return ours, reference, index, (a, b, scores)


def test_matches_sentence_transformers(stsb_vectors) -> None:  # type: ignore[no-untyped-def]
    ours, reference, _, _ = stsb_vectors
    assert ours.dtype == np.float32 and ours.shape[1] == 384
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= 0.9999, cosine.min()


def test_stsb_dev_spearman(stsb_vectors) -> None:  # type: ignore[no-untyped-def]
    ours, _, index, (a, b, scores) = stsb_vectors
    cos = [float(ours[index[x]] @ ours[index[y]]) for x, y in zip(a, b, strict=True)]
    spearman = 100 * spearmanr(cos, scores).statistic
    assert abs(spearman - 86.7) <= 0.2, spearman


def test_similarity_and_search_with_real_model(tmp_path: Path, real_backend) -> None:  # type: ignore[no-untyped-def]
    examples = Path(__file__).resolve().parents[2] / "examples" / "products.csv"
    with EmbeddingProcessor(store=tmp_path / "s", embedder=real_backend) as p:
        report = p.process(
            examples,
            collection="products",
            id_field="sku",
            template="{title}. {description}",
            keep=["category", "price"],
        )
        assert (report.read, report.embedded, report.quarantined) == (42, 42, 0)
        assert p.similarity("a red running shoe", "crimson jogging sneaker") > p.similarity(
            "a red running shoe", "espresso machine with a steam wand"
        )
        top = [i for i, _ in p.search("products", "wireless noise cancelling headphones", k=2)]
        assert set(top) == {"SKU-0001", "SKU-0041"}
        similar = [i for i, _ in p.most_similar("products", item_id="SKU-0042", k=3)]
        assert "SKU-0042" not in similar
        assert {"SKU-0007", "SKU-0008"} <= set(similar)
