"""When to try the SDC checks again after they were found unavailable, and which reasons never
pass on their own.

A transient reason (NVML or the CUDA driver failing to start once, device memory short while the
engines are built) is tried again after a back-off that doubles from ``FIRST_RETRY_SECONDS``; a
permanent one (no engine library at all: CuPy not installed on real GPUs, NumPy missing) is never
tried again until the daemon restarts, which is what installing the library needs anyway. A library
that is installed but fails to import (CuPy finding no libcuda while the driver is reinstalled, a
container without the driver's mount) is transient: it may load at the next try.
"""

from __future__ import annotations

# the engines' libraries: one of them absent means no engine can exist in this installation
ENGINE_LIBRARIES = ("numpy", "cupy")

# The first retry comes 5 minutes after the failure: long enough that a driver still settling
# (a GPU reset, a module reload, a job's allocation freed) has settled, short enough that a node
# loses no periodic check to a passing glitch. Each failure in a row doubles the wait, up to the
# periodic check interval (a retry never comes later than the check it stands in for would have)
# and never more than MAX_RETRY_SECONDS: a try costs one check process on idle GPUs, seconds of CPU.
FIRST_RETRY_SECONDS = 300.0
MAX_RETRY_SECONDS = 6 * 3600.0


def retry_delay(failures: int, periodic_interval_seconds: float) -> float:
    """Seconds from the ``failures``-th failure in a row (1 for the first) to the next try."""
    cap = min(periodic_interval_seconds, MAX_RETRY_SECONDS)
    doublings = min(max(failures, 1) - 1, 32)  # 2**32 x 5 min is past any cap: no overflow
    return min(FIRST_RETRY_SECONDS * 2.0 ** doublings, cap)


def library_absent(e: ImportError) -> bool:
    """Whether the import failure ``e`` means an engine library is not installed at all (the
    module is not found), rather than installed and failing to load."""
    # the module itself not found, not one it imports: a dependency CuPy cannot find is named
    # by its own name (cupy_backends, fastrlock), and a broken install is raised as ImportError
    return isinstance(e, ModuleNotFoundError) and e.name in ENGINE_LIBRARIES


def is_permanent(e: BaseException) -> bool:
    """Whether the failure ``e`` (or one it was raised from) says no engine can exist in this
    installation: an engine library that is not installed, or an error that says so (``permanent``)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if (isinstance(cur, ImportError) and library_absent(cur)) or getattr(cur, "permanent", False):
            return True
        cur = cur.__cause__  # raised `from` it; an error met while handling another is not it
    return False
