"""Model version records: what made a model's vectors, and how good they are.

``ModelVersion`` (one model run by one backend, pinned by its weights' digest), its
``Evaluation`` (quality scores and the gate's verdict), ``Alias``, and ``spec_metadata`` (the
model spec as string pairs for a table's schema metadata). ``embedops.registry`` keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from embedops.errors import ConfigError
from embedops.models.artifacts import library_versions
from embedops.models.base import ModelSpec
from embedops.models.loader import BACKENDS, backend_of
from embedops.quality import Gate, QualityScores

POOLING = "mean"
NORMALIZATION = "l2"
# The quality gate of each precision (the static backend's precision names its PCA size).
GATE_OF_PRECISION = {"fp32": "fp32", "int8": "int8", "pca256": "static"}
# The libraries that shape each engine's vectors (tokenizers: every engine tokenises).
LIBRARIES = {
    "torch": ("sentence-transformers", "torch", "transformers", "tokenizers"),
    "onnx": ("onnxruntime", "onnx", "torch", "transformers", "tokenizers"),
    "static": ("model2vec", "skeletoken", "torch", "transformers", "tokenizers"),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """A version's quality scores and its gate's verdict.

    Attributes:
        stsb_spearman: STS-B dev Spearman x100.
        cosine_min: smallest cosine to the reference's vectors (``None``: not compared).
        cosine_mean: mean cosine to the reference's vectors.
        reference: the reference's model version (the torch backend of the same weights).
        gate: the gate the scores were held to.
        failures: what the scores missed; empty when the gate passed.
        data: the STS-B file scored on.
        evaluated_at: ISO time, UTC.
    """

    stsb_spearman: float | None
    cosine_min: float | None
    cosine_mean: float | None
    reference: str | None
    gate: Gate
    failures: tuple[str, ...]
    data: str
    evaluated_at: str

    @property
    def passed(self) -> bool:
        """Whether the scores met the gate."""
        return not self.failures

    def scores(self, version: str) -> QualityScores:
        """The scores as ``quality.QualityScores`` (what ``Gate.failures`` reads)."""
        return QualityScores(
            model_version=version,
            stsb_spearman=self.stsb_spearman,
            cosine_min=self.cosine_min,
            cosine_mean=self.cosine_mean,
        )

    def figures(self) -> str:
        """Scores and thresholds on one line, e.g. for a refused promotion."""
        limits = ", ".join(
            f"{k}={v}" for k, v in asdict(self.gate).items() if k != "name" and v is not None
        )
        return (
            f"STS-B Spearman {self.stsb_spearman}, cosine to reference min {self.cosine_min} "
            f"mean {self.cosine_mean}; gate {self.gate.name}: {limits}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = list(self.failures)
        out["passed"] = self.passed
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        values = {k: v for k, v in data.items() if k != "passed"}
        values["gate"] = Gate(**values["gate"])
        values["failures"] = tuple(values["failures"])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """A registered model version: what made its vectors, and how good they are.

    Attributes:
        version: ``<name>-<backend>-<precision>-<sha256[:12]>``, as in table names.
        name: the model's display name.
        model: the model argument it was added from (alias, directory or HF id).
        path: the model directory it resolved to.
        local: it was added from a directory, and loads from ``path``; otherwise it loads
            from ``model`` (a package alias or HF id, which the loader checks further).
        digest: ``sha256:<hex>`` of the weights file.
        backend: one of ``models.loader.BACKENDS``.
        engine: the engine that runs it (``torch``, ``onnx``, ``static``).
        precision: ``fp32``, ``int8`` or ``pca256``.
        dim: vector size.
        max_tokens: longer inputs are truncated.
        pooling: how token vectors become one vector.
        normalization: vectors are unit length in this norm.
        libraries: versions of the libraries that shape its vectors, when it was added.
        added_at: ISO time, UTC.
        evaluation: its quality scores, once evaluated.
    """

    version: str
    name: str
    model: str
    path: str
    local: bool
    digest: str
    backend: str
    engine: str
    precision: str
    dim: int
    max_tokens: int
    pooling: str = POOLING
    normalization: str = NORMALIZATION
    libraries: dict[str, str] = field(default_factory=dict)
    added_at: str = field(default_factory=_now)
    evaluation: Evaluation | None = None

    @property
    def load_arg(self) -> str:
        """The model argument to load it with."""
        return self.path if self.local else self.model

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["evaluation"] = self.evaluation.to_dict() if self.evaluation else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersion:
        values = dict(data)
        evaluation = values.pop("evaluation", None)
        return cls(**values, evaluation=Evaluation.from_dict(evaluation) if evaluation else None)


@dataclass(frozen=True, kw_only=True)
class Alias:
    """An alias, the version it points at, and when it was set."""

    name: str
    version: str
    set_at: str


def version_record(spec: ModelSpec, *, model: str, local: bool) -> ModelVersion:
    """Describe the model version of ``spec`` (the spec of a backend, as built by the loader).

    Raises:
        ConfigError: ``spec`` names no backend of ``models.loader.BACKENDS``.
    """
    backend = backend_of(spec)
    if backend is None:
        raise ConfigError(
            f"model version {spec.version} runs on engine {spec.backend!r} at precision "
            f"{spec.precision!r}, which no backend builds; known backends: {', '.join(BACKENDS)}"
        )
    return ModelVersion(
        version=spec.version,
        name=spec.name,
        model=model,
        path=str(spec.path),
        local=local,
        digest=spec.digest,
        backend=backend,
        engine=spec.backend,
        precision=spec.precision,
        dim=spec.dim,
        max_tokens=spec.max_tokens,
        libraries=library_versions("embedops", *LIBRARIES.get(spec.backend, ())),
    )


def spec_metadata(spec: ModelSpec, backend: str) -> dict[str, str]:
    """The model spec as string pairs for a table's schema metadata, so that a table says by
    itself what made its vectors.

    The path is left out: it names a place on one machine, not the model; the digest does.

    Args:
        spec: the spec of the backend that embeds into the table.
        backend: its name in ``models.loader.BACKENDS``.
    """
    engine = BACKENDS[backend].engine if backend in BACKENDS else spec.backend
    return {
        "model_version": spec.version,
        "model_name": spec.name,
        "digest": spec.digest,
        "backend": backend,
        "engine": engine,
        "precision": spec.precision,
        "dim": str(spec.dim),
        "max_tokens": str(spec.max_tokens),
        "pooling": POOLING,
        "normalization": NORMALIZATION,
        "libraries": json.dumps(
            library_versions("embedops", *LIBRARIES.get(engine, ())), sort_keys=True
        ),
    }


def gate_name(precision: str) -> str:
    """The name of the quality gate for ``precision`` (``pca256``: the static gate).

    Raises:
        ConfigError: no gate for this precision.
    """
    name = GATE_OF_PRECISION.get(precision)
    if name is None:
        raise ConfigError(
            f"no quality gate for precision {precision!r}; known: {', '.join(GATE_OF_PRECISION)}"
        )
    return name
