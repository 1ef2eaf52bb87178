"""One GPU's window of distinct instant-power updates (seconds, watts), oldest first.

The sampler threads append; the daemon's tick trims and copies. The readings sit in two flat
``array('d')`` buffers with a moving start, so a copy of the window is one memcpy (a deque
copies element by element, about 70 ns each: 6 ms a full analysis at 72 GPUs and 20 updates a
second), and dropping old readings is a bisection. Not thread-safe: the power service
holds its lock around every call.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from math import isfinite
from operator import lt

# Dropped readings kept in front before the buffers are compacted. Small on purpose: each buffer
# holds at most the window and this many (440 readings at 12.5 Hz over 30 s); with 4,096 a
# 72-GPU daemon's buffers grew to 5 MB over its first six minutes, to hold readings no analysis
# reads, and waiting for as many as the window holds (750) kept 0.2 MB more at 72 GPUs. A
# compaction is one copy of the window (3 KB a buffer), once every 64 appends: about 5 s.
COMPACT = 64


class Readings:
    __slots__ = ("t", "w", "start")

    def __init__(self) -> None:
        self.t = array("d")  # NVML timestamps, seconds, strictly increasing
        self.w = array("d")  # watts
        self.start = 0  # first reading still in the window

    def __len__(self) -> int:
        return len(self.t) - self.start

    @property
    def first(self) -> float:
        return self.t[self.start]

    @property
    def last(self) -> float:
        return self.t[-1]

    def append(self, t: float, w: float) -> bool:
        """Add a reading; False (nothing added) for a repeat, an out-of-order one, or watts that
        are not a number (NVML's are whole milliwatts: NaN or infinity would be a reader's fault,
        and the analysis would carry it into every figure of the window)."""
        if len(self.t) > self.start and t <= self.t[-1] or not isfinite(w):
            return False
        self.t.append(t)
        self.w.append(w)
        return True

    def extend(self, t: list[float], w: list[float]) -> bool:
        """``append`` each reading in turn; False where none was added. Readings in order and
        newer than the last (as a sampler's are) go in with one copy per buffer."""
        if not t:
            return False
        if (len(self.t) == self.start or t[0] > self.t[-1]) and all(map(lt, t, t[1:])) and all(map(isfinite, w)):
            self.t.extend(t)
            self.w.extend(w)
            return True
        added = False
        for x, y in zip(t, w):
            added = self.append(x, y) or added
        return added

    def trim(self, cutoff: float) -> None:
        """Drop the readings older than ``cutoff`` seconds."""
        if len(self.t) > self.start and self.t[self.start] < cutoff:
            self.start = bisect_left(self.t, cutoff, self.start)
            if self.start >= COMPACT:
                del self.t[: self.start]
                del self.w[: self.start]
                self.start = 0

    def arrays(self) -> tuple[array[float], array[float]]:
        """Copies of the window (seconds, watts)."""
        return self.t[self.start :], self.w[self.start :]

    def since(self, at: float) -> tuple[array[float], array[float]]:
        """Copies of the readings from the last one before ``at`` (or the oldest) to the newest."""
        i = max(self.start, bisect_left(self.t, at, self.start) - 1)
        return self.t[i:], self.w[i:]
