"""Creating and promoting experiments: what the CLI and the admin endpoint share.

A variant's model reference is pinned to a model version when the experiment is created
(``pin_model``); ``open_variant`` later loads exactly that version. ``promote_variant`` moves
the registry's ``production`` alias through ``ModelRegistry.promote`` (the quality gate: a
version not evaluated, or failing its gate, cannot become production) and, when the experiment
names a collection, switches the collection to the variant's table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from embedops.config import Settings
from embedops.errors import ModelLoadError
from embedops.experiments.definitions import (
    Experiment,
    ExperimentStore,
    Shadow,
    Sticky,
    Variant,
    variants_of,
)
from embedops.models.loader import load_embedder
from embedops.processor import EmbeddingProcessor
from embedops.registry import PRODUCTION, ModelRegistry, ModelVersion

logger = logging.getLogger(__name__)


def pin_model(settings: Settings, model: str) -> tuple[str, str]:
    """The ``(version, backend)`` that ``model`` names now: a registered version or alias
    gives its record's; anything else is resolved with ``settings.backend`` (its weights are
    hashed, not loaded).

    Raises:
        ModelLoadError: the model cannot be found or is broken.
        ConfigError: unknown backend.
    """
    registry = ModelRegistry(store=settings.store)
    record = registry.find(model) if registry.path.is_file() else None
    if record is not None:
        return record.version, record.backend
    spec = load_embedder(model, settings.backend, cache_dir=settings.cache_dir).spec
    return spec.version, settings.backend


def build_experiment(
    settings: Settings,
    name: str,
    variants: Sequence[tuple[str, str, float]],
    *,
    sticky: Sticky = "key",
    shadow: str | None = None,
    shadow_rate: float | None = None,
    collection: str | None = None,
) -> Experiment:
    """An experiment (not stored yet) with every model reference pinned to its version.

    Args:
        settings: the store, default backend and cache.
        name: the experiment's name.
        variants: ``(label, model reference, weight)`` each; the first is the control.
        sticky: ``key`` or ``user``.
        shadow: a model reference to run in the shadow.
        shadow_rate: the share of requests the shadow embeds (default ``settings.shadow_rate``).
        collection: the collection the experiment is about.

    Raises:
        ConfigError: an invalid name, label, weight or rate.
        ModelLoadError: a model cannot be found.
    """
    pins = [pin_model(settings, model) for _, model, _ in variants]
    candidate = None
    if shadow is not None:
        version, backend = pin_model(settings, shadow)
        rate = settings.shadow_rate if shadow_rate is None else shadow_rate
        candidate = Shadow(model=shadow, version=version, backend=backend, rate=rate)
    return Experiment(
        name=name,
        variants=variants_of(variants, pins),
        sticky=sticky,
        shadow=candidate,
        collection=collection,
    )


def open_model(settings: Settings, model: str, version: str, backend: str) -> EmbeddingProcessor:
    """A processor serving exactly ``version`` (opened; weights load on first use).

    Raises:
        ModelLoadError: the model now resolves to another version (its files changed since
            the experiment was created), or cannot be loaded.
    """
    registry = ModelRegistry(store=settings.store)
    registered = registry.path.is_file() and registry.find(version) is not None
    processor = EmbeddingProcessor(
        settings=settings, model=version if registered else model, backend=backend
    )
    processor.open()
    try:
        served = processor.embedder.spec.version
    except BaseException:
        processor.close()
        raise
    if served != version:
        processor.close()
        raise ModelLoadError(
            f"model {model!r} now loads as {served}, not {version} as when the experiment was "
            f"created; create the experiment again, or register the version with: embedops "
            f"models add"
        )
    return processor


def open_variant(settings: Settings, variant: Variant | Shadow) -> EmbeddingProcessor:
    """``open_model`` for a variant or a shadow candidate."""
    return open_model(settings, variant.model, variant.version, variant.backend)


def promote_variant(settings: Settings, name: str, label: str) -> ModelVersion:
    """Make variant ``label`` of experiment ``name`` production, through the quality gate.

    The gate is checked before anything changes; then the experiment's collection (if any)
    is switched to the variant's table, the ``production`` alias moved, and the experiment
    marked promoted.

    Raises:
        ConfigError: no such experiment or variant, or the version is not registered.
        QualityGateFailed: the version was not evaluated or fails its gate.
        ModelLoadError: its weights changed since they were registered.
        CollectionNotFound: the collection has no complete table for the version.
    """
    experiments = ExperimentStore(settings.store)
    experiment = experiments.get(name)
    variant = experiment.variant(label)
    registry = ModelRegistry(store=settings.store)
    registry.check_gate(variant.version, purpose=f"promote {variant.version} to {PRODUCTION}")
    if experiment.collection is not None:
        with open_variant(settings, variant) as processor:
            processor.promote(experiment.collection)
    record = registry.promote(variant.version, cache_dir=settings.cache_dir)
    experiments.finish(name, promoted=label)
    logger.info("experiment %s: %s (%s) promoted to production", name, label, record.version)
    return record
