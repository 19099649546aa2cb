from __future__ import annotations

import numpy as np

from embedops.quality import GATES, QualityScores, knn_accuracy, spearman


def test_knn_accuracy_on_separable_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32) * 10
    labels = np.repeat(np.arange(4), 30)
    vectors = centres[labels] + rng.standard_normal((120, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert knn_accuracy(vectors, labels, k=5) == 1.0
    shuffled = rng.permutation(labels)
    assert knn_accuracy(vectors, shuffled, k=5) < 0.5


def test_knn_tie_goes_to_nearer_class() -> None:
    # point 0's two neighbours: 1 (class 1, nearer) and 2 (class 2)
    vectors = np.array([[1, 0], [0.99, 0.14], [0.9, -0.43]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([1, 1, 2])
    # 0: tie, nearer is class 1 (right); 1: tie, nearer is 0 (right); 2: both class 1 (wrong)
    assert knn_accuracy(vectors, labels, k=2) == 2 / 3


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_gates() -> None:
    good = QualityScores("v", stsb_spearman=86.71, cosine_min=0.99995, cosine_mean=0.99999)
    assert GATES["fp32"].failures(good) == []
    off = QualityScores("v", stsb_spearman=86.4, cosine_min=0.999)
    assert GATES["fp32"].failures(off) == [
        "STS-B Spearman 86.4000 is not >= 86.5",
        "min cosine to reference 0.9990 is not >= 0.9999",
    ]
    assert GATES["int8"].failures(QualityScores("v", stsb_spearman=86.0)) == [
        "mean cosine to reference not measured"
    ]
    assert GATES["static"].failures(QualityScores("v", stsb_spearman=79.2)) == []
