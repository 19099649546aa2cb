"""The model registry: model versions, their quality scores, and aliases that point at them.

A registered version is one model (alias, directory or Hugging Face id) run by one backend,
pinned by the sha256 of its weights: ``all-minilm-l6-v2-onnx-fp32-53aa51172d14``. It records
what made its vectors (dimensions, max tokens, pooling, normalisation, library versions) and,
once evaluated, its scores on STS-B dev and against the reference backend (torch), with the
verdict of its quality gate (``quality.GATES``, chosen by precision).

Aliases (``candidate``, ``production``) name versions, and ``--model production`` works
wherever ``--model`` does (``resolve_model_arg``). ``production`` moves only through
``ModelRegistry.promote``, which refuses a version that was not evaluated or failed its gate.
Weights that no longer match their registered digest are refused, never used.

The registry is one JSON file, ``<store>/registry.json``. Changes are made under an exclusive
lock (``<store>/.registry.lock``) and written whole to a temporary file that is then renamed,
so the CLI and a service in another process read the same registry and never a half-written
one. (``embedops.models.registry`` finds model files on disk; this module keeps versions.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from embedops.errors import ConfigError, ModelLoadError, QualityGateFailed, StoreError
from embedops.jsonfile import exclusive, write_atomic
from embedops.model_versions import (
    Alias,
    Evaluation,
    ModelVersion,
    gate_name,
    spec_metadata,
    version_record,
)
from embedops.models.artifacts import file_sha256
from embedops.models.base import Embedder, ModelSpec
from embedops.models.loader import load_embedder
from embedops.models.registry import WEIGHT_FILES, resolve_model
from embedops.quality import GATES, Gate, evaluate

__all__ = [
    "PRODUCTION",
    "Alias",
    "Evaluation",
    "ModelRegistry",
    "ModelVersion",
    "resolve_model_arg",
    "spec_metadata",
    "version_record",
]

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".registry.lock"
FORMAT = 1
PRODUCTION = "production"
PROTECTED_ALIASES = frozenset({PRODUCTION})  # set only by promote, which checks the gate
_ALIAS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Document:
    """The registry file's content while it is being changed."""

    versions: dict[str, ModelVersion]
    aliases: dict[str, Alias]


class ModelRegistry:
    """The model versions and aliases of one store.

    Args:
        store: the store directory; the registry is ``<store>/registry.json``.
        gates: quality gates by name (default ``quality.GATES``).

    Example:
        >>> registry = ModelRegistry(store=Path(".embedops"))  # doctest: +SKIP
        >>> v = registry.add("all-MiniLM-L6-v2", backend="onnx")
        >>> registry.evaluate(v.version, stsb=Path("stsb-dev.tsv"))
        >>> registry.promote(v.version)  # production -> v, if it passed its gate
    """

    def __init__(self, *, store: Path, gates: Mapping[str, Gate] | None = None) -> None:
        self.store = Path(store)
        self.path = self.store / REGISTRY_FILE
        self.gates = dict(GATES if gates is None else gates)

    # Reading

    def _read(self) -> _Document:
        if not self.path.is_file():
            return _Document(versions={}, aliases={})
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            versions = {v: ModelVersion.from_dict(r) for v, r in data["versions"].items()}
            aliases = {n: Alias(name=n, **a) for n, a in data["aliases"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"model registry {self.path} cannot be read ({type(exc).__name__}: {exc}); "
                f"restore it from a backup, or move it away to start an empty registry"
            ) from exc
        if data.get("format", FORMAT) > FORMAT:
            raise StoreError(
                f"model registry {self.path} has format {data['format']}, newer than this "
                f"embedops reads ({FORMAT}); upgrade embedops"
            )
        return _Document(versions=versions, aliases=aliases)

    def versions(self) -> list[ModelVersion]:
        """Every registered version, in the order they were added."""
        return list(self._read().versions.values())

    def aliases(self) -> dict[str, Alias]:
        """Every alias by name."""
        return self._read().aliases

    def find(self, ref: str) -> ModelVersion | None:
        """The version ``ref`` names (an alias or a version string), or ``None``."""
        doc = self._read()
        alias = doc.aliases.get(ref)
        return doc.versions.get(alias.version if alias is not None else ref)

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names (an alias or a version string).

        Raises:
            ConfigError: ``ref`` is neither; the message lists what is registered.
        """
        record = self.find(ref)
        if record is None:
            doc = self._read()
            known = ", ".join([*doc.aliases, *doc.versions]) or "none"
            raise ConfigError(
                f"model {ref!r} is not registered in {self.path} (aliases and versions: "
                f"{known}); add it with: embedops models add MODEL --backend BACKEND"
            )
        return record

    def gate_for(self, record: ModelVersion) -> Gate:
        """The quality gate ``record`` is held to (by its precision)."""
        name = gate_name(record.precision)
        gate = self.gates.get(name)
        if gate is None:
            raise ConfigError(f"no quality gate named {name!r}; gates: {', '.join(self.gates)}")
        return gate

    # Writing

    @contextmanager
    def _edit(self) -> Iterator[_Document]:
        """Read the registry under an exclusive lock and write it back whole (atomically)."""
        with exclusive(self.store / LOCK_FILE, what="the model registry"):
            doc = self._read()
            yield doc
            data = {
                "format": FORMAT,
                "versions": {v: r.to_dict() for v, r in doc.versions.items()},
                "aliases": {
                    a.name: {"version": a.version, "set_at": a.set_at} for a in doc.aliases.values()
                },
            }
            write_atomic(self.path, data, what="the model registry")

    def register(self, record: ModelVersion) -> ModelVersion:
        """Add ``record``; a version already registered is kept as it is (with its scores).

        Returns:
            The registered record.
        """
        with self._edit() as doc:
            known = doc.versions.get(record.version)
            if known is not None:
                logger.info("model version %s is already registered", record.version)
                return known
            doc.versions[record.version] = record
        logger.info("registered model version %s from %s", record.version, record.path)
        return record

    def add(
        self, model: str, *, backend: str = "onnx", cache_dir: Path | None = None
    ) -> ModelVersion:
        """Register ``model`` run by ``backend`` (cheap: its weights are hashed, not loaded).

        Args:
            model: alias, model directory or cached Hugging Face id.
            backend: one of ``models.loader.BACKENDS``.
            cache_dir: the artefact cache (where weight digests are remembered).

        Raises:
            ConfigError: unknown backend.
            ModelLoadError: the model cannot be found or its files are broken.
        """
        spec = load_embedder(model, backend, cache_dir=cache_dir).spec
        local = spec.path == Path(model).expanduser().resolve()
        return self.register(version_record(spec, model=model, local=local))

    def verify(self, record: ModelVersion, *, cache_dir: Path | None = None) -> None:
        """Check that ``record``'s weights are still those registered (hashed afresh).

        Raises:
            ModelLoadError: the files are missing, broken or changed; they must not be used.
        """
        spec = resolve_model(
            record.load_arg,
            backend=record.engine,
            precision=record.precision,
            cache_dir=cache_dir,
        )
        weights = next(spec.path / f for f in WEIGHT_FILES if (spec.path / f).is_file())
        digest = f"sha256:{file_sha256(weights)}"
        if digest != record.digest or spec.digest != record.digest:
            raise ModelLoadError(
                f"weights {weights} no longer match model version {record.version} (sha256 "
                f"{digest[7:19]}..., registered {record.digest[7:19]}...), so they are not "
                f"used; restore the original files, or register these with: embedops models "
                f"add {record.load_arg} --backend {record.backend}"
            )

    def load(
        self, ref: str, *, cache_dir: Path | None = None, threads: int | None = None
    ) -> Embedder:
        """The backend of the version ``ref`` names, after checking its weights' digest.

        Raises:
            ConfigError: ``ref`` is not registered.
            ModelLoadError: the weights changed since they were registered, or are broken.
        """
        record = self.get(ref)
        self.verify(record, cache_dir=cache_dir)
        embedder = load_embedder(
            record.load_arg, record.backend, cache_dir=cache_dir, threads=threads
        )
        if embedder.spec.version != record.version:
            raise ModelLoadError(
                f"model {record.load_arg} now loads as {embedder.spec.version}, not the "
                f"registered {record.version}; register it again with: embedops models add"
            )
        return embedder

    def evaluate(
        self,
        ref: str,
        *,
        stsb: Path,
        embedder: Embedder | None = None,
        reference: Embedder | None = None,
        cache_dir: Path | None = None,
    ) -> ModelVersion:
        """Score a version on STS-B dev and against the reference, hold it to its gate, and
        record the result.

        Args:
            ref: alias or version string.
            stsb: ``stsb-dev.tsv``.
            embedder: the version's backend, already built (default: loaded here, after
                checking its weights' digest). Its spec must be the registered version's.
            reference: the reference backend (default: the torch backend of the same weights).
                Not used when its vector size differs (static models).
            cache_dir: the artefact cache.

        Returns:
            The record with its ``evaluation``.

        Raises:
            ConfigError: ``ref`` is not registered, or ``embedder``/``reference`` are of other
                weights.
            ModelLoadError: the weights changed since they were registered, or are broken.
            InputError: the STS-B file cannot be read.
        """
        record = self.get(ref)
        gate = self.gate_for(record)
        owned: list[Embedder] = []
        if embedder is None:
            embedder = self.load(record.version, cache_dir=cache_dir)
            owned.append(embedder)
        elif embedder.spec.version != record.version:
            raise ConfigError(
                f"embedder is model version {embedder.spec.version}, not {record.version}"
            )
        try:
            if reference is None and record.backend == "torch":
                # The reference is the version itself: embed STS-B once, not twice.
                embedder = reference = _Remembering(embedder)
            elif reference is None:
                reference = load_embedder(record.load_arg, "torch", cache_dir=cache_dir)
                owned.append(reference)
            if reference.spec.digest != record.digest:
                raise ConfigError(
                    f"reference is {reference.spec.version}, of other weights than "
                    f"{record.version}; compare with the torch backend of the same model"
                )
            compared = reference if reference.spec.dim == record.dim else None
            logger.info("evaluating %s on %s", record.version, stsb)
            scores = evaluate(embedder, stsb=stsb, reference=compared)
        finally:
            for backend in owned:
                close = getattr(backend, "close", None)
                if close is not None:
                    close()
        evaluation = Evaluation(
            stsb_spearman=scores.stsb_spearman,
            cosine_min=scores.cosine_min,
            cosine_mean=scores.cosine_mean,
            reference=compared.spec.version if compared is not None else None,
            gate=gate,
            failures=tuple(gate.failures(scores)),
            data=str(stsb),
            evaluated_at=_now(),
        )
        with self._edit() as doc:
            record = dataclasses.replace(doc.versions[record.version], evaluation=evaluation)
            doc.versions[record.version] = record
        logger.info(
            "%s: gate %s %s", record.version, gate.name, "passed" if evaluation.passed else "failed"
        )
        return record

    def promote(
        self, ref: str, *, alias: str = PRODUCTION, cache_dir: Path | None = None
    ) -> ModelVersion:
        """Point ``alias`` at a version that was evaluated and passes its quality gate.

        The gate is checked again on the recorded scores (a gate made stricter since the
        evaluation holds), and the weights' digest is checked afresh.

        Raises:
            QualityGateFailed: the version was not evaluated or misses its gate (the message
                gives the scores and thresholds).
            ConfigError: ``ref`` is not registered, or ``alias`` is not a valid name.
            ModelLoadError: the weights changed since they were registered.
        """
        _check_alias_name(alias)
        record = self.check_gate(ref, purpose=f"promote {ref} to {alias}")
        self.verify(record, cache_dir=cache_dir)
        return self._set_alias(alias, record)

    def check_gate(self, ref: str, *, purpose: str) -> ModelVersion:
        """The version ``ref`` names, if it was evaluated and passes its quality gate (checked
        again on the recorded scores).

        Raises:
            QualityGateFailed: not evaluated, or the gate fails (the message gives the
                scores and thresholds); ``purpose`` says what was refused.
            ConfigError: ``ref`` is not registered.
        """
        record = self.get(ref)
        evaluation = record.evaluation
        if evaluation is None:
            raise QualityGateFailed(
                f"cannot {purpose}: {record.version} was not evaluated; run: "
                f"embedops models evaluate {record.version} --stsb stsb-dev.tsv"
            )
        gate = self.gate_for(record)
        failures = list(evaluation.failures)
        failures += [
            f for f in gate.failures(evaluation.scores(record.version)) if f not in failures
        ]
        if failures:
            raise QualityGateFailed(
                f"cannot {purpose}: quality gate failed: {'; '.join(failures)} "
                f"({evaluation.figures()}); use a version that passes"
            )
        return record

    def set_alias(self, name: str, ref: str) -> ModelVersion:
        """Point alias ``name`` at the version ``ref`` names (not ``production``: see promote).

        Raises:
            ConfigError: ``name`` is protected or not a valid name, or ``ref`` is unknown.
        """
        _check_alias_name(name)
        if name in PROTECTED_ALIASES:
            raise ConfigError(
                f"alias {name!r} is set only by promote, which checks the quality gate; run: "
                f"embedops models promote VERSION --alias {name}"
            )
        return self._set_alias(name, self.get(ref))

    def _set_alias(self, name: str, record: ModelVersion) -> ModelVersion:
        with self._edit() as doc:
            if name in doc.versions:
                raise ConfigError(f"alias {name!r} is a version string; choose another name")
            previous = doc.aliases.get(name)
            doc.aliases[name] = Alias(name=name, version=record.version, set_at=_now())
        logger.info(
            "alias %s -> %s (was %s)",
            name,
            record.version,
            previous.version if previous is not None else "unset",
        )
        return record


class _Remembering:
    """An embedder that keeps the vectors it made, by text (for scoring a model against
    itself)."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._vectors: dict[str, NDArray[np.float32]] = {}

    @property
    def spec(self) -> ModelSpec:
        return self._inner.spec

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._inner.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])


def _check_alias_name(name: str) -> None:
    if not _ALIAS_NAME.fullmatch(name):
        raise ConfigError(
            f"alias {name!r} is not a valid name; use lower-case letters, digits, '-' and '_', "
            f"starting with a letter (at most 64)"
        )


def resolve_model_arg(
    store: Path, model: str, backend: str | None, *, cache_dir: Path | None = None
) -> tuple[str, str] | None:
    """What to load for ``model`` when it is a registered version or an alias of ``store``.

    The weights are checked against their registered digest (hashed afresh: about 0.2 s for
    90 MB).

    Args:
        store: the store directory.
        model: the model argument (``production``, a version string, or anything else).
        backend: the backend asked for explicitly, or ``None``.
        cache_dir: the artefact cache.

    Returns:
        ``(model argument, backend name)`` to load, or ``None`` when ``model`` is not
        registered (it is then a model alias, directory or HF id as usual).

    Raises:
        ConfigError: ``backend`` contradicts the registered version's backend.
        ModelLoadError: the weights no longer match their digest, or are missing.
    """
    registry = ModelRegistry(store=store)
    if not registry.path.is_file():
        return None
    record = registry.find(model)
    if record is None:
        return None
    if backend is not None and backend != record.backend:
        raise ConfigError(
            f"model {model!r} is {record.version}, run by backend {record.backend!r}, but "
            f"backend {backend!r} was asked; leave the backend unset or name another version"
        )
    registry.verify(record, cache_dir=cache_dir)
    return record.load_arg, record.backend
