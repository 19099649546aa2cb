"""Crash-safe resume (issue 10, point 3): after ``kill -9`` at any moment, the same command
completes the job with the ids of an uninterrupted run, no duplicates, the same vectors, and
at most one commit interval plus one window embedded twice per kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cli import app
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[1]
ROWS, COMMIT, WINDOW = 12_000, 1_500, 1_000
runner = CliRunner()

# The CLI with the fake embedder; every text it embeds is appended to EMBEDDED (a little
# slowly, so that a kill lands in the middle of the run).
_RUN = """
import os, sys, time
import embedops.processor
from embedops.cli import app
from tests.fakes import FakeEmbedder

class Logged(FakeEmbedder):
    def embed(self, texts):
        time.sleep(0.002 * len(texts) / 100)
        with open(os.environ["EMBEDDED"], "a") as fh:
            fh.write("".join(t + "\\n" for t in texts))
        return super().embed(texts)

fake = Logged()
embedops.processor.load_embedder = lambda *args, **kwargs: fake
sys.argv = ["embedops", *sys.argv[1:]]
app()
"""


def test_kill_9_at_random_points_then_resume(tmp_path: Path) -> None:
    source = tmp_path / "items.csv"
    source.write_text("sku,title\n" + "".join(f"S{i},item number {i}\n" for i in range(ROWS)))
    store = tmp_path / "store"
    log = tmp_path / "embedded.txt"
    args = [sys.executable, "-c", _RUN, "embed", str(source), "-c", "c", "--id-field", "sku",
            "--text-field", "title", "--store", str(store), "--commit-every", str(COMMIT),
            "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMBEDDED": str(log),
           "EMBEDOPS_SORT_WINDOW": str(WINDOW), "EMBEDOPS_READ_ROWS": "500"}  # fmt: skip
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        before = _count(log)
        run = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        # Kill once some more rows are embedded: at a random point of the run.
        deadline = time.monotonic() + 60
        target = before + rng.randint(1, 3) * WINDOW + rng.randint(0, WINDOW)
        while time.monotonic() < deadline and run.poll() is None and _count(log) < target:
            time.sleep(0.005)
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            kills += 1
        run.wait(timeout=60)
    assert kills == 3
    killed = runner.invoke(app, ["status", "c", "--store", str(store), "--json"])
    assert killed.exit_code == 0, killed.stderr
    assert json.loads(killed.stdout)["state"] == "killed"
    final = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    embedded = log.read_text().splitlines()
    assert set(embedded) == {f"item number {i}" for i in range(ROWS)}
    twice = len(embedded) - ROWS
    assert twice <= kills * (COMMIT + WINDOW), (kills, twice)
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=store, embedder=fake) as p:
        table = p.store.collection("c", fake.spec.version)._table.to_arrow()
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == ROWS  # no duplicates, none missing
        assert set(ids) == {f"S{i}" for i in range(ROWS)}
        sample = [f"S{i}" for i in range(0, ROWS, 997)]
        vectors = p.vectors("c", sample)
        expected = fake.embed([f"item number {i}" for i in range(0, ROWS, 997)])
        assert np.all(np.sum(vectors * expected, axis=1) >= 0.9999)
        assert p.history("c")[-1].report is not None
    assert not list((store / ".scratch").glob("embedops-run-*"))  # killed runs' scratch gone
    done = runner.invoke(app, ["status", "c", "--store", str(store)])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("c: finished (pid ")
    assert f"{ROWS:,} read: " in done.stdout and "progress 100%" in done.stdout


def _count(log: Path) -> int:
    return log.read_text().count("\n") if log.exists() else 0
