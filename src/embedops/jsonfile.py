"""Small JSON documents in the store that several processes change: one exclusive lock file
per document, and a whole-file write to a temporary file renamed into place, so a reader never
sees half a document (the model registry, experiments, published versions)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedops.errors import StoreError


@contextmanager
def exclusive(lock: Path, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created with its folder if missing).

    Raises:
        StoreError: the folder or the lock file cannot be created; ``what`` names the
            document in the message (``"the model registry"``).
    """
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as exc:
        raise StoreError(
            f"cannot write {what} in {lock.parent} ({exc.strerror}); check the path and its "
            f"permissions"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_atomic(path: Path, data: Any, *, what: str, indent: int = 2) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file renamed into place (synced
    first, so a crash leaves the old document or the new one).

    Raises:
        StoreError: the write failed (disk full, permissions); the old document stays.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=indent) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        temp.replace(path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(
            f"cannot write {what} {path} ({exc.strerror}); check free space and permissions"
        ) from exc
