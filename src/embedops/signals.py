"""Holding Ctrl-C and SIGTERM while a store commit runs, so that a second signal cannot break
the commit that saves what a run embedded.

A commit is one LanceDB call. A ``KeyboardInterrupt`` raised in Python code around it (a
second Ctrl-C while the first one's commit runs) used to lose every row gathered for it:
40,000 rows in, two Ctrl-C 50 ms apart left no table at all. ``deferred_signals`` replaces
the handlers of SIGINT and SIGTERM while its block runs, says on stderr (through logging)
that the signal waits, and hands the first one on once the block is done.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals(what: str, *, redeliver: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM while the block runs (only in the main thread: elsewhere the
    block runs as it is, since signals reach the main thread only).

    Args:
        what: what the block does, for the message (``"saving 12,000 rows"``).
        redeliver: after the block, raise the first signal held (through the handler that was
            in place before); ``False`` when the caller is already stopping for a signal.

    Yields:
        The signals held so far (numbers), in order.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        if not held:
            logger.warning(
                "%s received while %s; it takes effect once that is done",
                signal.Signals(signum).name,
                what,
            )
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in _SIGNALS}
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held and redeliver:
        signal.raise_signal(held[0])
