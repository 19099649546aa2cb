"""Choosing and building a backend for a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedops.config import DEFAULT_CACHE
from embedops.errors import ConfigError
from embedops.models.base import Embedder, ModelSpec
from embedops.models.registry import resolve_model


@dataclass(frozen=True)
class BackendInfo:
    """A backend name and how its vectors are versioned and built."""

    name: str
    engine: str
    precision: str
    factory: Callable[[ModelSpec, Path, int | None], Embedder]
    summary: str
    batch_tokens: int | None
    parallel_batches: bool = False


def _torch(spec: ModelSpec, cache_dir: Path, threads: int | None) -> Embedder:
    from embedops.models.torch_backend import SentenceTransformerBackend

    return SentenceTransformerBackend(spec, threads=threads)


def _onnx_builder(precision: str) -> Callable[[ModelSpec, Path, int | None], Embedder]:
    def factory(spec: ModelSpec, cache_dir: Path, threads: int | None) -> Embedder:
        from embedops.models.onnx_backend import OnnxBackend
        from embedops.models.onnx_export import (
            FP32_RECIPE,
            INT8_RECIPE,
            export_fp32,
            export_int8,
        )

        int8 = precision == "int8"
        export = export_int8 if int8 else export_fp32
        return OnnxBackend(
            spec,
            cache_dir=cache_dir,
            threads=threads,
            build=lambda folder: export(spec, folder, OnnxBackend.filename),
            recipe=INT8_RECIPE if int8 else FP32_RECIPE,
            # ORT's SkipLayerNormalization kernel was 17% of int8 time against 2% for
            # LayerNormalization + Add; without the fusion int8 ran 18-21% faster (1 thread,
            # STS-B and AG News) at the same quality (mean cosine 0.9942, STS-B 86.63).
            disabled_optimizers=("SkipLayerNormFusion",) if int8 else (),
        )

    return factory


def _hash(spec: ModelSpec, cache_dir: Path, threads: int | None) -> Embedder:
    from embedops.models.hash_backend import HashBackend

    return HashBackend(spec)


def _static(spec: ModelSpec, cache_dir: Path, threads: int | None) -> Embedder:
    from embedops.models.static_backend import PCA_DIMS, StaticBackend

    return StaticBackend(dataclasses.replace(spec, dim=PCA_DIMS), cache_dir=cache_dir)


# batch_tokens: the measured best token budget per batch on a 2-core CPU (activations of small
# batches stay in cache; 16k-token batches were 1.5-2x slower; int8 without SkipLayerNorm
# fusion: 512 tokens 14-19% faster than 2048); None: no length batching, for
# static models, whose cost does not grow with padding. parallel_batches: one batch per core
# with one thread each beat one batch on all cores (AG News: 1.1x fp32, 1.3x int8; equal on
# short texts).
BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in (
        BackendInfo(
            "torch",
            "torch",
            "fp32",
            _torch,
            "sentence-transformers (the reference)",
            batch_tokens=2048,
        ),
        BackendInfo(
            "onnx",
            "onnx",
            "fp32",
            _onnx_builder("fp32"),
            "ONNX Runtime, fp32",
            batch_tokens=1024,
            parallel_batches=True,
        ),
        BackendInfo(
            "onnx-int8",
            "onnx",
            "int8",
            _onnx_builder("int8"),
            "ONNX Runtime, int8 per-channel weights",
            batch_tokens=512,
            parallel_batches=True,
        ),
        BackendInfo(
            "static",
            "static",
            "pca256",
            _static,
            "model2vec static model, distilled",
            batch_tokens=None,
        ),
        BackendInfo(
            "hash",
            "hash",
            "fp32",
            _hash,
            "deterministic vectors from word hashes, no weights (tests)",
            batch_tokens=None,
        ),
    )
}


def backend_of(spec: ModelSpec) -> str | None:
    """The name of the backend that builds models like ``spec`` (``None``: not one of ours)."""
    for info in BACKENDS.values():
        if info.engine == spec.backend and info.precision == spec.precision:
            return info.name
    return None


def load_embedder(
    model: str,
    backend: str = "torch",
    *,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> Embedder:
    """Resolve ``model`` and build its ``backend`` (cheap: weights load on first use).

    Args:
        model: alias, local directory or cached Hugging Face id.
        backend: one of ``BACKENDS``.
        cache_dir: where built artefacts (ONNX files, static models) are cached.
        threads: inference threads (default: all cores).

    Raises:
        ConfigError: unknown backend (the message lists the known ones).
        ModelLoadError: the model cannot be found or is broken.
    """
    info = BACKENDS.get(backend)
    if info is None:
        raise ConfigError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    cache = cache_dir or DEFAULT_CACHE
    spec = resolve_model(model, backend=info.engine, precision=info.precision, cache_dir=cache)
    return info.factory(spec, cache, threads)
