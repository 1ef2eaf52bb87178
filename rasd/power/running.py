"""The node sum between full analyses: the last analysis's node sum, extended on its own grid by
the readings that arrived since, for the daemon's per-tick escalation check (over the service's
per-GPU buffers; the service holds their lock).

Summing the whole window afresh every tick (a copy of every GPU's readings, a median update
interval per GPU, one interpolation per GPU) costs about 20 us a GPU; extending it costs a few
grid points for all GPUs at once.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from typing import Literal, Mapping

from rasd.power.metrics import STALE_MIN_SECONDS, STALE_STEPS, WindowAnalysis
from rasd.power.readings import Readings
from rasd.power.window import Series, interp_sum

Buffers = Mapping[int, Readings]  # per GPU: its window of readings


@dataclass(slots=True)
class RunningNodeSum:
    """The node sum (seconds, watts) on the last full analysis's grid, and the GPUs it sums."""

    t: deque[float]
    w: deque[float]
    step: float
    gpus: tuple[int, ...]

    @classmethod
    def of(cls, analysis: WindowAnalysis) -> RunningNodeSum | None:
        summed = analysis.node_series
        if summed is None or not analysis.node_gpus or len(summed[0]) < 2:
            return None
        t, w = summed
        return cls(deque(t.tolist()), deque(w.tolist()), float(t[1] - t[0]), analysis.node_gpus)

    def extend(self, buffers: Buffers, newest: float, window_seconds: float) -> Series | Literal[True] | None:
        """Add the grid points every GPU's readings now reach, drop those older than the window,
        and return the node sum over it. True: a GPU of the node stopped reporting (the node must
        be taken afresh). None: fewer than two grid points."""
        step = self.step
        ends = []
        for g in self.gpus:
            buf = buffers.get(g)
            if buf is None or not len(buf):
                return True
            ends.append(buf.last)
        # As metrics.reporting: a GPU this far behind the newest reading has stopped.
        if min(ends) < newest - max(STALE_STEPS * step, STALE_MIN_SECONDS):
            return True
        last = self.t[-1]
        count = int((min(ends) - last) // step)
        if count > 0:
            points = array("d", [last + step * i for i in range(1, count + 1)])
            # Each GPU from its last reading before the first new point: the interpolation
            # between it and the next is all the new points need.
            rows = [buffers[g].since(points[0]) for g in self.gpus]
            self.t.extend(points)
            self.w.extend(interp_sum(points, rows))
        cutoff = newest - window_seconds
        while self.t and self.t[0] < cutoff:
            self.t.popleft()
            self.w.popleft()
        if len(self.t) < 2:
            return None
        return array("d", self.t), array("d", self.w)
