"""Quality gate: score a model on STS-B dev and AG News, and compare it with a reference.

``evaluate`` is the one function the benchmark, CI and (later) the model registry call.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedops.batching import embed_in_batches
from embedops.errors import InputError
from embedops.models.base import Embedder

STSB_REFERENCE = 86.7  # all-MiniLM-L6-v2 with sentence-transformers, Spearman x100


@dataclass(frozen=True)
class QualityScores:
    """Scores of one model version. ``None`` where not measured."""

    model_version: str
    stsb_spearman: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    ag_news_knn: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """Thresholds a model version must meet (``None``: not checked)."""

    name: str
    stsb_min: float | None = None
    stsb_max: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None

    def failures(self, scores: QualityScores) -> list[str]:
        """What the scores miss; empty when the gate passes."""
        out: list[str] = []
        checks = [
            ("STS-B Spearman", scores.stsb_spearman, self.stsb_min, ">="),
            ("STS-B Spearman", scores.stsb_spearman, self.stsb_max, "<="),
            ("min cosine to reference", scores.cosine_min, self.cosine_min, ">="),
            ("mean cosine to reference", scores.cosine_mean, self.cosine_mean, ">="),
        ]
        for label, value, bound, op in checks:
            if bound is None:
                continue
            if value is None:
                out.append(f"{label} not measured")
            elif (op == ">=" and value < bound) or (op == "<=" and value > bound):
                out.append(f"{label} {value:.4f} is not {op} {bound}")
        return out


GATES: dict[str, Gate] = {
    "fp32": Gate(
        "fp32", stsb_min=STSB_REFERENCE - 0.2, stsb_max=STSB_REFERENCE + 0.2, cosine_min=0.9999
    ),
    "int8": Gate("int8", stsb_min=85.7, cosine_mean=0.99),
    "static": Gate("static", stsb_min=79.0),
}


def read_stsb(path: Path) -> tuple[list[str], list[str], list[float]]:
    """STS-B dev pairs: (sentences 1, sentences 2, human scores 0-5)."""
    if not path.is_file():
        raise InputError(f"{path}: STS-B file not found")
    a: list[str] = []
    b: list[str] = []
    scores: list[float] = []
    with path.open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            scores.append(float(row[4]))
            a.append(row[5])
            b.append(row[6])
    return a, b, scores


def read_ag_news(path: Path) -> tuple[list[str], NDArray[np.int64]]:
    """AG News texts as ``"{title}. {description}"`` and their class labels."""
    if not path.is_file():
        raise InputError(f"{path}: AG News file not found")
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for label, title, description in csv.reader(fh):
            texts.append(f"{title}. {description}")
            labels.append(int(label))
    return texts, np.asarray(labels, dtype=np.int64)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def knn_accuracy(vectors: NDArray[np.float32], labels: NDArray[np.int64], k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour accuracy by cosine (majority vote; a tie goes to the
    class of the nearer neighbour)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, neighbours, axis=1).argsort(axis=1)[:, ::-1]
    neighbours = np.take_along_axis(neighbours, order, axis=1)
    correct = 0
    for i, row in enumerate(labels[neighbours]):
        counts = np.bincount(row)
        best = counts.max()
        winner = next(lab for lab in row if counts[lab] == best)
        correct += int(winner == labels[i])
    return correct / len(labels)


def evaluate(
    model: Embedder,
    *,
    stsb: Path | None = None,
    ag_news: Path | None = None,
    reference: Embedder | None = None,
) -> QualityScores:
    """Score ``model``: STS-B dev Spearman, cosine to ``reference``, AG News 10-NN accuracy.

    Args:
        model: the backend to score.
        stsb: ``stsb-dev.tsv``; the cosine comparison runs on its sentences.
        ag_news: ``ag_news_test.csv`` (7,600 rows: slow on the torch backend, about a minute).
        reference: the backend to compare vectors with (usually sentence-transformers).
    """
    result: dict[str, Any] = {"model_version": model.spec.version}
    if stsb is not None:
        a, b, scores = read_stsb(stsb)
        sentences = list(dict.fromkeys(a + b))
        index = {s: i for i, s in enumerate(sentences)}
        vectors = embed_in_batches(model, sentences)
        cos = [float(vectors[index[x]] @ vectors[index[y]]) for x, y in zip(a, b, strict=True)]
        result["stsb_spearman"] = round(100 * spearman(cos, scores), 3)
        if reference is not None:
            ref = embed_in_batches(reference, sentences)
            agreement = np.sum(vectors * ref, axis=1)
            result["cosine_min"] = round(float(agreement.min()), 6)
            result["cosine_mean"] = round(float(agreement.mean()), 6)
    if ag_news is not None:
        texts, labels = read_ag_news(ag_news)
        result["ag_news_knn"] = round(knn_accuracy(embed_in_batches(model, texts), labels), 4)
    return QualityScores(**result)
