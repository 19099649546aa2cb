"""Experiment definitions: which model versions share the traffic, by what weights, sticky by
what, and which candidate runs in the shadow.

Definitions live in ``<store>/experiments.json``, changed under an exclusive lock
(``<store>/.experiments.lock``) and written whole to a temporary file that is then renamed,
as ``registry.json`` is, so the CLI, the admin endpoint and every service process read the same
definitions and never a half-written file. At most one experiment of a store is ``running``:
a service serves that one (see ``embedops.service.variants``).

Each variant names its model as ``--model`` does (an alias such as ``production``, a registered
version, a model name or directory) and is pinned to the version that reference meant when the
experiment was created, so moving ``production`` during an experiment does not change what a
variant serves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from embedops.errors import ConfigError, StoreError
from embedops.jsonfile import exclusive, write_atomic

logger = logging.getLogger(__name__)

EXPERIMENTS_FILE = "experiments.json"
LOCK_FILE = ".experiments.lock"
LOG_DIR = ".experiments"
FORMAT = 1
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
Status = Literal["running", "stopped", "promoted"]
Sticky = Literal["key", "user"]


def now() -> str:
    """The time now, ISO-8601 UTC to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str, what: str) -> str:
    """``name`` if it is a valid experiment or variant name (it names a file).

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid name; use lower-case letters, digits, '-' and '_', "
            f"starting with a letter or digit (at most 64)"
        )
    return name


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment.

    Args:
        label: the variant's name in headers, logs and reports (``a``, ``control``).
        model: the model reference as given (alias, version, name or directory).
        weight: its share of the traffic, relative to the other variants' weights.
        version: the model version ``model`` meant at creation (what is served).
        backend: the backend that runs it.
    """

    label: str
    model: str
    weight: float
    version: str
    backend: str


@dataclass(frozen=True)
class Shadow:
    """A candidate that embeds a share of live requests off the request path."""

    model: str
    version: str
    backend: str
    rate: float


@dataclass(frozen=True)
class Experiment:
    """A traffic split between model versions, with an optional shadow candidate.

    Args:
        name: the experiment's name (names its log file).
        variants: the arms; the first is the control the others are compared with.
        sticky: what keeps a caller on one variant: its API key (``key``) or the request's
            ``user`` field (``user``; requests without one fall back to the key).
        shadow: the candidate run in the shadow, if any.
        collection: the collection the experiment is about (promote switches it too).
        status: ``running``, ``stopped`` or ``promoted``.
        started: when it was created (ISO-8601 UTC).
        ended: when it was stopped or promoted.
        promoted: the label of the variant promoted, if any.
    """

    name: str
    variants: tuple[Variant, ...]
    sticky: Sticky = "key"
    shadow: Shadow | None = None
    collection: str | None = None
    status: Status = "running"
    started: str = field(default_factory=now)
    ended: str | None = None
    promoted: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "experiment name")
        if not self.variants:
            raise ConfigError(f"experiment {self.name!r} has no variants; give at least one")
        labels = [check_name(v.label, "variant label") for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"experiment {self.name!r} names a variant twice ({labels})")
        for v in self.variants:
            if not (math.isfinite(v.weight) and v.weight > 0):
                raise ConfigError(f"variant {v.label!r} has weight {v.weight}; give a number > 0")
        if self.sticky not in ("key", "user"):
            raise ConfigError(f"sticky must be 'key' or 'user', got {self.sticky!r}")
        if self.shadow is not None and not 0.0 <= self.shadow.rate <= 1.0:
            raise ConfigError(f"shadow rate must be between 0 and 1, got {self.shadow.rate}")
        if self.status not in ("running", "stopped", "promoted"):
            raise ConfigError(f"unknown experiment status {self.status!r}")

    def variant(self, label: str) -> Variant:
        """The variant called ``label``.

        Raises:
            ConfigError: no such variant (the message lists them).
        """
        for v in self.variants:
            if v.label == label:
                return v
        known = ", ".join(v.label for v in self.variants)
        raise ConfigError(f"experiment {self.name!r} has no variant {label!r} (it has {known})")

    def shares(self) -> dict[str, float]:
        """Each variant's share of the traffic (weights normalised to sum to 1)."""
        total = sum(v.weight for v in self.variants)
        return {v.label: v.weight / total for v in self.variants}

    def serving(self) -> tuple[object, ...]:
        """What decides the models a service loads for it (equal: nothing to reload)."""
        return (self.name, self.variants, self.sticky, self.shadow, self.status)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        """The definition ``to_dict`` wrote.

        Raises:
            ConfigError: a field is missing or invalid.
        """
        try:
            values = dict(data)
            values["variants"] = tuple(Variant(**v) for v in data["variants"])
            shadow = data.get("shadow")
            values["shadow"] = Shadow(**shadow) if shadow is not None else None
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"invalid experiment definition ({exc})") from exc


class ExperimentStore:
    """The experiment definitions of one store.

    Example:
        >>> experiments = ExperimentStore(Path(".embedops"))  # doctest: +SKIP
        >>> experiments.create(experiment)
        >>> experiments.running()
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self.path = self.store / EXPERIMENTS_FILE

    def log_path(self, name: str) -> Path:
        """The SQLite log of experiment ``name``."""
        return self.store / LOG_DIR / f"{check_name(name, 'experiment name')}.sqlite"

    def stamp(self) -> int | None:
        """The file's modification time in ns (``None``: no file); a cheap change check."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _read(self) -> dict[str, Experiment]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format", FORMAT) > FORMAT:
                raise StoreError(
                    f"experiments file {self.path} has format {data['format']}, newer than "
                    f"this embedops reads ({FORMAT}); upgrade embedops"
                )
            return {n: Experiment.from_dict(e) for n, e in data["experiments"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as exc:
            raise StoreError(
                f"experiments file {self.path} cannot be read ({type(exc).__name__}: {exc}); "
                f"restore it from a backup, or move it away to start with no experiments"
            ) from exc

    def list(self) -> list[Experiment]:
        """Every experiment, in the order they were created."""
        return list(self._read().values())

    def find(self, name: str) -> Experiment | None:
        """The experiment called ``name``, or ``None``."""
        return self._read().get(name)

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``.

        Raises:
            ConfigError: there is none (the message lists those there are).
        """
        experiment = self.find(name)
        if experiment is None:
            known = ", ".join(self._read()) or "none"
            raise ConfigError(
                f"no experiment {name!r} in {self.path} (experiments: {known}); create it "
                f"with: embedops experiments create {name} --variant LABEL=MODEL:WEIGHT"
            )
        return experiment

    def running(self) -> Experiment | None:
        """The running experiment, if any."""
        return next((e for e in self._read().values() if e.status == "running"), None)

    @contextmanager
    def _edit(self) -> Iterator[dict[str, Experiment]]:
        """Read the definitions under an exclusive lock and write them back whole."""
        with exclusive(self.store / LOCK_FILE, what="experiments"):
            experiments = self._read()
            yield experiments
            data = {
                "format": FORMAT,
                "experiments": {n: e.to_dict() for n, e in experiments.items()},
            }
            write_atomic(self.path, data, what="the experiments file")

    def put(self, experiment: Experiment, *, replace: bool = False) -> Experiment:
        """Store ``experiment``; a running one must be the only running one.

        Args:
            experiment: the definition.
            replace: replace a running experiment of the same name (its start time is kept,
                so its log and report continue).

        Raises:
            ConfigError: the name is taken (and ``replace`` is off, or that experiment ended:
                its log belongs to its report), or another experiment is running.
        """
        with self._edit() as experiments:
            known = experiments.get(experiment.name)
            if known is not None and (not replace or known.status != "running"):
                raise ConfigError(
                    f"experiment {experiment.name!r} exists ({known.status}); choose another name"
                )
            if experiment.status == "running":
                other = next(
                    (
                        e
                        for e in experiments.values()
                        if e.status == "running" and e.name != experiment.name
                    ),
                    None,
                )
                if other is not None:
                    raise ConfigError(
                        f"experiment {other.name!r} is running; stop it first: embedops "
                        f"experiments stop {other.name}"
                    )
            if known is not None and known.status == "running" == experiment.status:
                experiment = dataclasses.replace(experiment, started=known.started)
            experiments[experiment.name] = experiment
        logger.info("experiment %s stored (%s)", experiment.name, experiment.status)
        return experiment

    def create(self, experiment: Experiment) -> Experiment:
        """Store a new experiment (see ``put``)."""
        return self.put(experiment)

    def finish(self, name: str, *, promoted: str | None = None) -> Experiment:
        """Mark ``name`` stopped (or promoted, naming the variant); its log stays for reports.

        Raises:
            ConfigError: no such experiment, or ``promoted`` names no variant of it.
        """
        with self._edit() as experiments:
            known = experiments.get(name)
            if known is None:
                raise ConfigError(f"no experiment {name!r} in {self.path}")
            if promoted is not None:
                known.variant(promoted)
            status: Status = "promoted" if promoted is not None else "stopped"
            changed = dataclasses.replace(
                known,
                status=status,
                ended=known.ended if known.status == status else now(),
                promoted=promoted if promoted is not None else known.promoted,
            )
            experiments[name] = changed
        logger.info("experiment %s %s", name, changed.status)
        return changed


def parse_variant(text: str) -> tuple[str, str, float]:
    """``LABEL=MODELREF:WEIGHT`` as ``(label, model, weight)`` (the weight after the last
    colon, so a model path may hold colons).

    Raises:
        ConfigError: not of that form.
    """
    label, eq, rest = text.partition("=")
    model, colon, weight = rest.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not eq or not colon or not model or not label or not math.isfinite(value):
        raise ConfigError(
            f"variant {text!r} is not LABEL=MODEL:WEIGHT (e.g. a=production:90); give a "
            f"label, a model reference and a weight"
        )
    return label.strip(), model.strip(), value


def variants_of(
    specs: Sequence[tuple[str, str, float]], pins: Sequence[tuple[str, str]]
) -> tuple[Variant, ...]:
    """Variants from ``(label, model, weight)`` and the ``(version, backend)`` each model
    reference resolved to."""
    return tuple(
        Variant(label=label, model=model, weight=weight, version=version, backend=backend)
        for (label, model, weight), (version, backend) in zip(specs, pins, strict=True)
    )
