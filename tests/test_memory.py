"""glibc malloc settings of ``embedops embed`` (issue 10, point 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_tune_malloc_sets_arenas_and_threshold_for_children() -> None:
    """In a fresh process: mallopt takes both settings, and processes it starts inherit them
    through the environment; values already set win."""
    code = (
        "import os, subprocess, sys\n"
        "from embedops.memory import tune_malloc\n"
        "print(tune_malloc())\n"
        "print(os.environ['MALLOC_ARENA_MAX'], os.environ['MALLOC_MMAP_THRESHOLD_'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split("\n")
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert out[:2] == ["True", "2 262144"]
    mine = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "MALLOC_ARENA_MAX": "4"},
        check=True,
    ).stdout.split("\n")
    assert mine[:2] == ["True", "4 262144"]
    bad = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "MALLOC_ARENA_MAX": "many"},
        check=True,
    ).stdout.split("\n")
    assert bad[0] == "False"
