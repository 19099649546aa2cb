"""The static backend's tokeniser, in a process of its own for the pipeline.

A static model's time is its tokeniser, which is Python. In a run, the reader thread counts the
tokens of each window before the main thread embeds it, and the static backend keeps the ids
for that embed. In a thread, that tokenising holds the GIL against the main thread's embedding
and storing; in ``TokenizerProcess`` it runs on another core, and the ids come back as one
int32 array per window.

The child is a plain ``python -m embedops.models.tokenizer_process`` talking over its stdin and
stdout, not a ``multiprocessing`` worker: those import the caller's ``__main__`` module again,
with whatever it does at the top level. Requests and replies are pickles framed by their
length. The child ends when its stdin closes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import sysconfig
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from embedops.models.tokens import CutTokenizer, read_tokenizer

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("<Q")


def flatten(
    ids: Sequence[Sequence[int] | NDArray[np.int32]],
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """All ids in one array, and where each text's ids start (``len(ids) + 1`` bounds). Each
    text's ids are a list or an array (arrays are joined in one call)."""
    bounds = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), out=bounds[1:])
    if ids and all(isinstance(i, np.ndarray) for i in ids):
        return np.concatenate(ids).astype(np.int32, copy=False), bounds
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(bounds[-1]))
    return flat, bounds


def _send(stream: IO[bytes], message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        raise EOFError("the tokenizer process closed its output")
    (size,) = _FRAME.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the tokenizer process closed its output mid-reply")
    return pickle.loads(payload)


class TokenizerProcess:
    """A child process that tokenises with ``CutTokenizer(tokenizer_path, max_chars)``.

    Starting returns at once; the child loads the tokenizer meanwhile. ``ids`` returns
    ``None`` (tokenise in the caller instead) while the child is starting, while another
    thread is using it, and after it failed; it never waits for the child to start.
    Thread-safe. ``close()`` ends the child; so does the parent's exit.
    """

    def __init__(self, tokenizer_path: Path, max_chars: int) -> None:
        env = dict(os.environ)
        # The child imports embedops from where this process found it: a source tree needs
        # its folder on the path (an installed package is found anyway; putting site-packages
        # first could shadow the standard library).
        package_root = str(Path(__file__).resolve().parents[2])
        installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
        if package_root not in installed:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), package_root]))
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(tokenizer_path), str(max_chars)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C goes to the parent, which ends the child
        )
        self._state = "starting"
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, self._child)

    @property
    def state(self) -> str:
        """``starting``, ``ready``, ``failed`` or ``closed``."""
        return self._state

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the child to start; true once it is ready."""
        with self._lock:
            return self._check_ready(timeout)

    def ids(self, texts: Sequence[str]) -> list[NDArray[np.int32]] | None:
        """Each text's ids, or ``None`` where the caller should tokenise itself."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if not self._check_ready(0.0):
                return None
            assert self._child.stdin is not None and self._child.stdout is not None
            try:
                _send(self._child.stdin, list(texts))
                reply = _receive(self._child.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._fail(f"it stopped answering ({exc})")
                return None
            except BaseException:
                # Interrupted between request and reply (Ctrl-C, MemoryError): the reply may
                # still be in the pipe, and would be taken for the next request's.
                self._fail("a request was interrupted")
                raise
            if reply[0] != "ids":
                # The same texts tokenised here raise the same error where the caller sees it.
                logger.debug("tokenizer process: %s", reply[1])
                return None
            flat: NDArray[np.int32] = reply[1]
            bounds: list[int] = reply[2].tolist()
            if len(bounds) != len(texts) + 1:
                self._fail(f"it answered {len(bounds) - 1} texts for {len(texts)}")
                return None
            # Copies, not views of one array: a kept text must not keep its whole batch.
            return [flat[a:b].copy() for a, b in itertools.pairwise(bounds)]
        finally:
            self._lock.release()

    def close(self) -> None:
        """End the child (idempotent); one still starting is terminated, not waited for."""
        with self._lock:
            if self._state == "starting":
                self._child.terminate()
            self._state = "closed"
            self._finalizer()

    def _check_ready(self, timeout: float) -> bool:
        if self._state == "starting":
            stdout = self._child.stdout
            assert stdout is not None
            readable, _, _ = select.select([stdout], [], [], timeout)
            if readable:
                try:
                    reply = _receive(stdout)
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    self._fail(f"it did not start ({exc})")
                else:
                    if reply[0] == "ready":
                        self._state = "ready"
                    else:
                        self._fail(f"it could not load the tokenizer ({reply[1]})")
        return self._state == "ready"

    def _fail(self, why: str) -> None:
        logger.warning("tokenizer process: %s; tokenising in this process instead", why)
        self._state = "failed"
        self._child.terminate()  # it may be mid-reply or stuck; its answers are no use now
        self._finalizer()


def _stop(child: subprocess.Popen[bytes]) -> None:
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def main(argv: Sequence[str]) -> int:
    """The child: load the tokenizer, say ready, then answer requests until stdin closes (or
    the parent stops reading: then it ends quietly)."""
    # Replies go to a private copy of stdout; anything printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    try:
        try:
            path, max_chars = argv
            tokenize = CutTokenizer(read_tokenizer(Path(path)), int(max_chars))
        except Exception as exc:  # reported to the parent, which tokenises itself
            _send(replies, ("error", f"{type(exc).__name__}: {exc}"))
            return 1
        _send(replies, ("ready",))
        while True:
            try:
                texts = _receive(requests)
            except EOFError:
                return 0
            try:
                flat, bounds = flatten(tokenize(texts))
            except Exception as exc:  # the parent tokenises these texts itself
                _send(replies, ("error", f"{type(exc).__name__}: {exc}"))
            else:
                _send(replies, ("ids", flat, bounds))
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the parent closed the pipes: it is done with this process
    finally:
        with contextlib.suppress(OSError):
            replies.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
