"""When to try the SDC checks again after they were found unavailable, and which reasons never
pass on their own.

A transient reason (NVML or the CUDA driver failing to start once, device memory short while the
engines are built) is tried again after a back-off that doubles from ``FIRST_RETRY_SECONDS``; a
permanent one (no engine library at all: CuPy not installed on real GPUs, NumPy missing) is never
tried again until the daemon restarts, which is what installing the library needs anyway.
"""

from __future__ import annotations

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


def is_permanent(e: BaseException) -> bool:
    """Whether the failure ``e`` (or one it was raised from) says no engine can exist in this
    installation: a library that cannot be imported, or an error that says so (``permanent``)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ImportError) or getattr(cur, "permanent", False):
            return True
        cur = cur.__cause__  # raised `from` it; an error met while handling another is not it
    return False
