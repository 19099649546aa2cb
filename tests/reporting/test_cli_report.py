"""``embedops report`` through the CLI: in-process with typer's runner, and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from embedops.cli import app
from embedops.errors import ConfigError
from tests.reporting.conftest import parse, write_history

runner = CliRunner()


def test_report_command_writes_the_page(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_history(store, broken=1)
    output = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["report", "--output", str(output), "--store", str(store)])
    assert result.exit_code == 0, result.stderr
    assert f"report: {output}" in result.stdout
    assert "120 monitoring lines" in result.stdout
    assert "note: 1 line(s)" in result.stderr
    root, _ = parse(output.read_text(encoding="utf-8"))
    plots = {svg.attrs["data-plot"] for svg in root.all("svg")}
    assert {"throughput", "latency", "drift-length_shift", "canary"} <= plots
    assert not list(output.parent.glob(".*.tmp"))


def test_since_must_be_positive(tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    result = runner.invoke(
        app, ["report", "--output", str(output), "--store", str(tmp_path), "--since", "0"]
    )
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr.startswith("error: --since must be a number of hours above 0")
    assert not output.exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    output = blocker / "report.html"  # its folder is a file
    result = runner.invoke(app, ["report", "--output", str(output), "--store", str(tmp_path)])
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr.startswith(f"error: cannot write the report to {output}")
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob(".*.tmp"))


def test_report_runs_as_a_program(tmp_path: Path) -> None:
    """The installed entry point, in a fresh process, on an empty store."""
    output = tmp_path / "report.html"
    env = {**os.environ, "EMBEDOPS_STORE": str(tmp_path / "empty")}
    done = subprocess.run(
        [sys.executable, "-m", "embedops", "report", "-o", str(output), "--since", "2"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = output.read_text(encoding="utf-8")
    assert "the last 2 hours" in page
    root, _ = parse(page)
    assert len(root.all("p", class_="empty")) == 5
