"""Fixtures that run the service for real: ``embedops serve`` in a subprocess on a free
loopback port, reached over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedops.service.auth import KeyStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``embedops serve`` in a subprocess; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, store: Path, *, backend: str = "hash", **settings: object) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDOPS_")}
        env |= {f"EMBEDOPS_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = store.parent / f"serve-{self.port}.log"
        self._log = self.log.open("wb")
        command = [sys.executable, "-m", "embedops", "--log-level", "INFO", "serve"]
        command += ["--port", str(self.port), "--store", str(store), "--backend", backend]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=self._log)
        self._wait_ready(timeout=120 if backend != "hash" else 60)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not up in {timeout}s: {self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def key(self, scopes: str = "embed,search,write", **limits: int) -> str:
        token, _ = KeyStore(self.store / "keys.json").create(scopes=scopes.split(","), **limits)
        return token

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service with the hash backend and default settings, shared by the tests."""
    server = Server(tmp_path_factory.mktemp("svc") / "store")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token(server: Server) -> str:
    """A key with the embed, search and write scopes."""
    return server.key()


@pytest.fixture(scope="session")
def client(server: Server, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as c:
        yield c
