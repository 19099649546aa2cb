"""glibc malloc settings for long runs (``embedops embed``).

With its defaults, glibc gives each thread that allocates an arena of its own (up to 8 per
core) and raises the size from which it serves a block by ``mmap`` each time such a block is
freed (up to 32 MB), so that large short-lived buffers (Arrow batches, vector matrices,
LanceDB's writes) end up in the heap, where freed space is kept. A million-row run then held
60-140 MB more at its peak than a 100,000-row one. Two arenas and a fixed ``mmap`` threshold
of 256 KB hand such buffers back when they are freed (measured in ``benchmarks/README.md``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 256 * 1024


def tune_malloc() -> bool:
    """Set two arenas and a fixed ``mmap`` threshold for this process (call it early: arenas
    made before stay) and, through the environment, for the processes it starts. Values set
    in the environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) win. Returns whether
    glibc took the settings (other C libraries: nothing is done)."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS))
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    try:
        arenas = int(os.environ["MALLOC_ARENA_MAX"])
        threshold = int(os.environ["MALLOC_MMAP_THRESHOLD_"])
    except ValueError:  # glibc ignores such values too
        return False
    done = bool(mallopt(M_ARENA_MAX, arenas) == 1)
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold) == 1) and done
    if not done:
        logger.debug("mallopt refused the settings; glibc's defaults stay")
    return done
