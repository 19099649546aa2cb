"""Published versions of collections: what readers see, its history, rollback, promotion.

A run commits to its table as it goes (a resume after a crash builds on those commits), but
readers must not see a run half done. So each collection has a *published* version: a table
(one per model version) and a LanceDB version number of it, moved only when a run completes,
a rollback publishes an earlier one again, or a model version is promoted (blue/green).
Readers (``search``, ``similar``, ``vectors``, the service) check the table out at that
version. Each published version is also a LanceDB tag (``published-<n>``), so that cleanup of
old versions never removes one that history can roll back to.

The catalog of a collection is ``<store>/.collections/<collection>.json``, rewritten whole
(temporary file, then rename) under a lock file, so readers never see half a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops.errors import ConfigError, StoreError
from embedops.jsonfile import exclusive, write_atomic

FORMAT = 1


@dataclass(frozen=True)
class Published:
    """One published version of a collection.

    Attributes:
        number: its place in the collection's history (1, 2, ...).
        table: the LanceDB table (``<collection>--<model version>``).
        model_version: the model version that made its vectors.
        version: the LanceDB version of the table.
        published_at: when (UTC, ISO 8601).
        action: ``run``, ``rollback`` or ``promote``.
        note: e.g. ``rollback to 3``.
        report: the run report of a ``run``.
    """

    number: int
    table: str
    model_version: str
    version: int
    published_at: str
    action: str
    note: str = ""
    report: dict[str, Any] | None = None


@dataclass
class _Document:
    published: int | None = None  # the number of the published entry
    history: list[Published] = field(default_factory=list)
    built: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> last complete run


class Catalog:
    """The published versions of the collections of one store."""

    def __init__(self, store: Path) -> None:
        self.folder = Path(store) / ".collections"

    def _path(self, collection: str) -> Path:
        return self.folder / f"{collection}.json"

    def _read(self, collection: str) -> _Document:
        path = self._path(collection)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _Document()
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot read the catalog {path} ({exc}); restore it from a backup, or delete "
                "it to start the collection's history anew (its tables stay)"
            ) from exc
        if raw.get("format") != FORMAT:
            raise StoreError(f"{path} has format {raw.get('format')!r}; upgrade embedops")
        return _Document(
            published=raw.get("published"),
            history=[Published(**entry) for entry in raw.get("history", [])],
            built=raw.get("built", {}),
        )

    @contextmanager
    def _edit(self, collection: str) -> Iterator[_Document]:
        with exclusive(self.folder / f".{collection}.lock", what="published versions"):
            document = self._read(collection)
            yield document
            data = {
                "format": FORMAT,
                "published": document.published,
                "history": [asdict(entry) for entry in document.history],
                "built": document.built,
            }
            write_atomic(self._path(collection), data, what="the published versions", indent=1)

    def published(self, collection: str) -> Published | None:
        """The version readers of ``collection`` see (``None``: nothing published yet)."""
        document = self._read(collection)
        if document.published is None:
            return None
        return document.history[document.published - 1]

    def history(self, collection: str) -> list[Published]:
        """Every version ever published, oldest first."""
        return self._read(collection).history

    def built(self, collection: str, table: str) -> dict[str, Any] | None:
        """The last complete run into ``table``: ``{"version", "at", "report"}``."""
        return self._read(collection).built.get(table)

    def entry(self, collection: str, number: int) -> Published:
        """History entry ``number``; a ``ConfigError`` listing the numbers there are."""
        history = self.history(collection)
        if isinstance(number, bool) or not 1 <= number <= len(history):
            known = ", ".join(str(e.number) for e in history[-20:]) or "none yet"
            raise ConfigError(
                f"collection {collection!r} has no published version {number}; versions: "
                f"{known} (see: embedops history {collection})"
            )
        return history[number - 1]

    def record_built(
        self, collection: str, table: str, version: int, report: dict[str, Any]
    ) -> None:
        """Remember the last complete run into ``table`` (what ``promote`` publishes)."""
        with self._edit(collection) as document:
            document.built[table] = {"version": version, "at": _now(), "report": report}

    def publish(
        self,
        collection: str,
        *,
        table: str,
        model_version: str,
        version: int,
        action: str,
        note: str = "",
        report: dict[str, Any] | None = None,
    ) -> Published:
        """Make ``table`` at ``version`` what readers of ``collection`` see (atomic)."""
        with self._edit(collection) as document:
            entry = Published(
                number=len(document.history) + 1,
                table=table,
                model_version=model_version,
                version=version,
                published_at=_now(),
                action=action,
                note=note,
                report=report,
            )
            document.history.append(entry)
            document.published = entry.number
        return entry


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
