"""API keys: random tokens shown once, stored only as their SHA-256, each with scopes and
optional per-key requests and tokens per minute.

The keys live in one JSON file (``keys.json`` in the store folder, or ``settings.keys_file``),
shared by the CLI (``embedops keys``) and the service, which re-reads it when it changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops.config import Settings
from embedops.errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

SCOPES = ("embed", "search", "write", "admin")
TOKEN_PREFIX = "eo-"
KEYS_FILE = "keys.json"


def keys_path(settings: Settings) -> Path:
    """Where the keys file is: ``settings.keys_file``, else ``keys.json`` in the store."""
    return settings.keys_file or settings.store / KEYS_FILE


def hash_token(token: str) -> str:
    """The stored form of a key: ``sha256:<hex>`` (the key itself is never stored)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key, as stored (no secret).

    Attributes:
        id: public identifier (``key_<hex>``), used in logs, metrics and ``keys revoke``.
        name: a label for people.
        hash: ``sha256:<hex>`` of the token.
        hint: the token's first characters (``eo-AbCd``), to tell keys apart.
        scopes: what the key may do; ``admin`` allows everything.
        rpm: requests per minute (``None``: the service default).
        tpm: tokens per minute (``None``: the service default).
        created: ISO time of creation.
        revoked: ISO time of revocation, or ``None``.
    """

    id: str
    name: str
    hash: str
    hint: str
    scopes: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    created: str
    revoked: str | None = None

    def allows(self, scope: str) -> bool:
        """Whether the key has ``scope`` (``admin`` has every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    def public(self) -> dict[str, Any]:
        """The key's fields without its hash."""
        data = asdict(self)
        data.pop("hash")
        data["scopes"] = list(self.scopes)
        return data


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """``scopes`` without repeats, or a ``ConfigError`` naming an unknown one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ConfigError(
            f"unknown or no scopes {unknown or list(scopes)}; "
            f"use one or more of {', '.join(SCOPES)}"
        )
    return tuple(dict.fromkeys(scopes))


class KeyStore:
    """The keys file: create, list, revoke, and look a token up (thread-safe; re-reads the
    file when another process changed it).

    Args:
        path: the JSON file (created on the first ``create``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._keys: dict[str, ApiKey] = {}  # by hash
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def create(
        self,
        *,
        scopes: Sequence[str],
        name: str = "",
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[str, ApiKey]:
        """Make a new key.

        Returns:
            The token (shown once: only its hash is kept) and the stored key.

        Raises:
            ConfigError: unknown scopes, or rpm/tpm below 1.
            StoreError: the keys file cannot be written.
        """
        checked = check_scopes(scopes)
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise ConfigError(f"{label} must be at least 1, got {value}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            name=name,
            hash=hash_token(token),
            hint=token[: len(TOKEN_PREFIX) + 4],
            scopes=checked,
            rpm=rpm,
            tpm=tpm,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._edit() as keys:
            keys.append(key)
        logger.info("created API key %s with scopes %s", key.id, ",".join(checked))
        return token, key

    def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self._read()

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (it stays listed, marked revoked).

        Raises:
            ConfigError: no key has that id.
        """
        with self._edit() as keys:
            for i, key in enumerate(keys):
                if key.id == key_id:
                    if key.revoked is None:
                        keys[i] = replace(key, revoked=datetime.now(UTC).isoformat("T", "seconds"))
                    logger.info("revoked API key %s", key_id)
                    return keys[i]
        raise ConfigError(f"no API key with id {key_id!r}; `embedops keys list` shows the ids")

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key whose token is ``token``, or ``None`` (unknown or revoked)."""
        self._refresh()
        key = self._keys.get(hash_token(token))
        return key if key is not None and key.revoked is None else None

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            keys = self._read()
            self._keys = {k.hash: k for k in keys}
            self._stamp = stamp

    def _read(self) -> list[ApiKey]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read the API keys file {self.path} ({exc})") from exc
        try:
            rows = json.loads(text)["keys"]
            return [ApiKey(**{**row, "scopes": tuple(row["scopes"])}) for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"the API keys file {self.path} is not valid ({exc}); restore it or remove it "
                "and create the keys again"
            ) from exc

    @contextmanager
    def _edit(self) -> Iterator[list[ApiKey]]:
        """The keys to change in place, written back atomically under a file lock."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.path.with_name(f".{self.path.name}.lock").open("w")
        except OSError as exc:
            raise StoreError(f"cannot write the API keys file {self.path} ({exc})") from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            data = {"keys": [{**asdict(k), "scopes": list(k.scopes)} for k in keys]}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2)
                os.replace(tmp, self.path)
            except OSError as exc:
                raise StoreError(f"cannot write the API keys file {self.path} ({exc})") from exc
