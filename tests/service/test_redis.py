"""Two service instances share one key's budget through a real Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import Server, auth, free_port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_two_instances_share_one_keys_budget(tmp_path: Path, redis_url: str) -> None:
    store = tmp_path / "store"
    a = Server(store, redis_url=redis_url)
    b = Server(store, redis_url=redis_url)
    try:
        key = a.key("embed", rpm=4)
        body = {"input": "hello", "model": "all-MiniLM-L6-v2"}
        answers = [
            httpx.post(f"{s.url}/v1/embeddings", json=body, headers=auth(key), timeout=30)
            for s in (a, b, a, b, a, b)
        ]
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 429, 429]
        remaining = [r.headers["x-ratelimit-remaining-requests"] for r in answers[:4]]
        assert remaining == ["3", "2", "1", "0"]
    finally:
        a.stop()
        b.stop()
