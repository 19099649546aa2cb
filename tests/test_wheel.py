"""The wheel works alone: built from this checkout, installed in a fresh venv outside it, and
run from an unrelated folder (``embedops embed``, ``embedops serve``, ``embedops bench``).

Slow (a few minutes: the wheel, a venv with torch, the ONNX export of the default model), so
marked ``integration``. torch is installed first and alone, as ``make setup`` does: any other
spec lets pip pick a multi-GB CUDA build.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    work: Path  # an empty folder outside the checkout, the commands' working directory
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "embedops"), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(command: list[str], *, timeout: float, cwd: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]} {result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(ROOT)
    # Build from a copy of the checkout's files (tracked or not ignored): a build/ folder left
    # in the checkout by an earlier build could leak stale modules into the wheel.
    tree = base / "tree"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    dist = base / "dist"
    _check(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(tree)],
        timeout=300,
    )
    (wheel,) = dist.glob("embedops-*.whl")
    venv = base / "venv"
    _check([sys.executable, "-m", "venv", str(venv)], timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _check([*pip, TORCH], timeout=600)
    _check([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], timeout=600)
    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDOPS_", "PYTHON"))}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "XDG_CACHE_HOME": str(base / "cache"),  # model artefacts built afresh, not the dev cache
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    return Installed(wheel=wheel, bin=venv / "bin", work=work, env=env)


def test_the_wheel_holds_the_package_and_its_files(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    for name in (
        "embedops/py.typed",
        "embedops/bench.py",
        "embedops/cli.py",
        "embedops/service/app.py",
        "embedops/service/routes/health.py",
    ):
        assert name in names
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/"))]
    tracked = subprocess.run(
        ["git", "ls-files", "src/embedops"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [t for t in tracked if t.removeprefix("src/") not in names]
    assert not missing, f"files of the package left out of the wheel: {missing}"
    located = subprocess.run(
        [str(installed.bin / "python"), "-c", "import embedops; print(embedops.__file__)"],
        cwd=installed.work,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "site-packages" in located and not Path(located).is_relative_to(ROOT)


def test_embed_and_search_with_the_default_model(installed: Installed) -> None:
    rows = [
        {"id": "1", "text": "The central bank raised interest rates."},
        {"id": "2", "text": "A cat sleeps on the warm windowsill."},
        {"id": "3", "text": "Stocks fell after the rate decision."},
    ]
    source = installed.work / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = installed.run(
        "embed",
        str(source),
        "-c",
        "items",
        "--id-field",
        "id",
        "--text-field",
        "text",
        "--json",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["embedded"] == 3 and report["quarantined"] == 0
    assert report["model_version"].startswith("all-minilm-l6-v2-onnx-fp32-")
    result = installed.run("search", "items", "interest rates and shares", "-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert {hit["id"] for hit in json.loads(result.stdout)} == {"1", "3"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(installed: Installed) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    log = (installed.work / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(installed.bin / "embedops"), "serve", "--port", str(port)],
        cwd=installed.work,
        env=installed.env,
        stdout=log,
        stderr=log,
    )
    yield f"http://127.0.0.1:{port}", process
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


def test_serve_answers_healthz_and_stops_on_sigterm(
    installed: Installed, served: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = served
    deadline = time.monotonic() + 180
    ready = False
    while time.monotonic() < deadline and not ready:
        assert process.poll() is None, (installed.work / "serve.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                ready = json.loads(response.read())["status"] == "ready"
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    assert ready, (installed.work / "serve.log").read_text()[-2000:]
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        assert b"embedops_" in response.read()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_bench_compares_backends_on_a_users_file(installed: Installed) -> None:
    texts = installed.work / "texts.txt"
    texts.write_text(
        "\n".join(f"Sentence number {i} about {w}." for i, w in enumerate(["tea", "rain"] * 12))
    )
    out = installed.work / "bench.json"
    result = installed.run(
        "bench", str(texts), "--backends", "torch,onnx", "--rounds", "1", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["reference"] == "torch" and data["texts"] == 24
    onnx = next(r for r in data["results"] if r["backend"] == "onnx")
    assert onnx["cosine_min"] > 0.99 and onnx["texts_per_s"] > 0
