"""The tokenizer process gives the ids of the in-process tokenizer, and fails soft."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedops.models.registry import resolve_model
from embedops.models.tokenizer_process import TokenizerProcess, flatten
from embedops.models.tokens import CutTokenizer, read_tokenizer
from embedops.quality import read_stsb
from tests.conftest import shared_file

MAX_CHARS = 2000


@pytest.fixture(scope="module")
def tokenizer_path() -> Path:
    return resolve_model("all-MiniLM-L6-v2").path / "tokenizer.json"


@pytest.fixture
def process(tokenizer_path: Path) -> Iterator[TokenizerProcess]:
    child = TokenizerProcess(tokenizer_path, MAX_CHARS)
    yield child
    child.close()


def test_ids_equal_the_in_process_tokenizer(
    process: TokenizerProcess, tokenizer_path: Path
) -> None:
    a, b, _ = read_stsb(shared_file("stsb-dev.tsv"))
    # Plain, non-ASCII (the slow path), a special token, a text past the cut, and empties.
    texts = [*a[:300], "Café naïve ünïcode", "a [SEP] b", " ".join(b) * 2, "", "\x00"]
    assert process.wait_ready(30)
    found = process.ids(texts)
    assert found is not None
    expected = CutTokenizer(read_tokenizer(tokenizer_path), MAX_CHARS)(texts)
    assert [list(ids) for ids in found] == expected
    assert all(ids.dtype == np.int32 for ids in found)
    assert all(ids.base is None for ids in found)  # own copies: a kept one pins nothing else
    assert len(found[-4]) < len(" ".join(b) * 2) // 3  # cut to MAX_CHARS before tokenising
    assert len(found[-2]) == 0


def test_starting_never_waits(tokenizer_path: Path) -> None:
    started = time.perf_counter()
    child = TokenizerProcess(tokenizer_path, MAX_CHARS)
    try:
        assert child.ids(["right away"]) is None  # still loading: the caller tokenises
        assert child.state == "starting"
        assert time.perf_counter() - started < 0.5
        assert child.wait_ready(30)
        assert child.ids(["now"]) is not None
    finally:
        child.close()
    assert child.state == "closed"
    assert child._child.poll() is not None  # the process has ended


def test_a_child_that_cannot_load_fails_soft(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    child = TokenizerProcess(bad, MAX_CHARS)
    with caplog.at_level(logging.WARNING):
        assert not child.wait_ready(30)
    assert child.state == "failed"
    assert child.ids(["text"]) is None
    assert "could not load the tokenizer" in caplog.text and "tokenizer.json" in caplog.text
    assert child._child.poll() is not None


def test_a_child_that_dies_fails_soft(
    process: TokenizerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    assert process.wait_ready(30)
    process._child.kill()
    process._child.wait()
    with caplog.at_level(logging.WARNING):
        assert process.ids(["text"]) is None
    assert process.state == "failed"
    assert "stopped answering" in caplog.text


def test_flatten_keeps_each_texts_ids() -> None:
    flat, bounds = flatten([[1, 2], [], [3]])
    assert flat.tolist() == [1, 2, 3] and flat.dtype == np.int32
    assert bounds.tolist() == [0, 2, 2, 3]


def test_an_interrupted_request_retires_the_child(
    process: TokenizerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request interrupted between sending and receiving (Ctrl-C) must not leave its reply
    to be read as the next request's: the child is retired and the caller tokenises."""
    import embedops.models.tokenizer_process as module

    assert process.wait_ready(30)
    plain = module._receive

    def interrupted(stream: object) -> object:
        monkeypatch.setattr(module, "_receive", plain)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        process.ids(["first request"])
    assert process.state == "failed"
    assert process.ids(["second request"]) is None


def test_a_reply_of_the_wrong_length_retires_the_child(
    process: TokenizerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedops.models.tokenizer_process as module

    assert process.wait_ready(30)
    plain = module._receive
    monkeypatch.setattr(module, "_receive", lambda stream: ("ids", *flatten([[1], [2]])))
    assert process.ids(["one text"]) is None
    monkeypatch.setattr(module, "_receive", plain)
    assert process.state == "failed"


def test_the_child_ends_quietly_when_the_parent_stops_reading(tokenizer_path: Path) -> None:
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "embedops.models.tokenizer_process", str(tokenizer_path), "100"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    child.stdout.close()  # gone before the child says it is ready
    child.stdin.close()
    assert child.stderr is not None
    err = child.stderr.read()
    assert child.wait(timeout=60) == 0, err
    assert b"Traceback" not in err
