"""Waiting on a condition in tests: poll until it holds or a deadline passes, never a fixed sleep."""

from __future__ import annotations

import time
from typing import Callable


def eventually(cond: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Whether ``cond()`` became true within ``timeout`` seconds (asked every ``interval``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return False
