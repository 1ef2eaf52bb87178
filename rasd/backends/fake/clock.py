"""A hand-driven monotonic clock for tests and offline runs of the fake backend."""

from __future__ import annotations

import threading
from typing import Callable


class ManualClock:
    """Call it for the time in seconds; ``advance`` moves it and wakes anything waiting on it.

    ``subscribe(fn)`` registers a callback run after every move (the fake node uses it to wake an
    ``nvmlEventSetWait`` whose event just became due).
    """

    def __init__(self, start: float = 0.0):
        self._now = float(start)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s); pass a positive step")
        with self._lock:
            self._now += seconds
            now = self._now
        for fn in list(self._subscribers):
            fn()
        return now

    def set(self, now: float) -> float:
        return self.advance(now - self._now)

    def subscribe(self, fn: Callable[[], None]) -> None:
        self._subscribers.append(fn)
