"""glibc malloc settings for the daemon: fewer pages kept that hold nothing.

Two documented ``mallopt(3)`` settings, made at start before the daemon's threads start, each
only where the operator has not chosen it (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or the
``glibc.malloc.*`` tunables in ``GLIBC_TUNABLES``):

- ``M_ARENA_MAX`` 1: glibc gives threads arenas of their own (up to 8 a core) so that they do not
  wait on one lock. The daemon's threads allocate under Python's GIL, so they gain nothing, while
  each arena keeps its own free pages: the scrape workers' buffers landed in arenas of their own.
- ``M_MMAP_THRESHOLD`` 128 KiB, fixed: by default glibc raises the threshold to the size of each
  large block freed, so after the first scrape every exposition (600 KiB at 72 GPUs) and its
  pieces are carved from the heap, where they stay resident after they are freed. Fixed, a block
  that large is mapped for its use and handed back when freed (and the heap's top is trimmed from
  128 KiB, glibc's default, instead of a threshold that grew with it).

Measured with tests/bench/bench_memory.py on the fake node (RSS after three scrapes): the two
settings together save about 0.5 MB at 8 GPUs and 1 to 2.7 MB at 72. ``malloc_trim(3)`` after start-up or
after each render was measured too and left out: it handed back 0.3 MB or less. On a C library
other than glibc (musl) nothing here does anything.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

log = logging.getLogger("rasd.heap")

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's starting value, kept instead of grown
ARENA_MAX = 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library the interpreter is linked with, where it is glibc (looked up once)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (ValueError, OSError, AttributeError):  # not glibc: no confstr name, no symbols
        return None


def _chosen(env_name: str, tunable: str) -> bool:
    return env_name in os.environ or f"glibc.malloc.{tunable}" in os.environ.get("GLIBC_TUNABLES", "")


def lean_malloc() -> dict[str, int]:
    """Applies the settings the operator has not chosen; returns what was set (for the log)."""
    libc = _glibc()
    if libc is None:
        return {}
    done: dict[str, int] = {}
    if not _chosen("MALLOC_ARENA_MAX", "arena_max") and libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1:
        done["arena_max"] = ARENA_MAX
    if not _chosen("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") and \
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1:
        done["mmap_threshold"] = MMAP_THRESHOLD_BYTES
    if done:
        log.debug("event=malloc_settings %s", " ".join(f"{k}={v}" for k, v in done.items()))
    return done

