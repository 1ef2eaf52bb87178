"""The node sum between full analyses: the last analysis's node sum, extended on its own grid by
the readings that arrived since, for the daemon's per-tick escalation check (pure NumPy over the
service's per-GPU buffers; the service holds their lock).

Summing the whole window afresh every tick (a copy of every GPU's readings, a median update
interval per GPU, one interpolation per GPU) costs about 20 us a GPU; extending it costs a few
grid points for all GPUs at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from rasd.power.analysis import STALE_MIN_SECONDS, STALE_STEPS, WindowAnalysis
from rasd.power.readings import Readings

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
        if summed is None or not analysis.node_gpus or summed[0].size < 2:
            return None
        t, w = summed
        return cls(deque(t.tolist()), deque(w.tolist()), float(t[1] - t[0]), analysis.node_gpus)

    def extend(
        self, buffers: Buffers, newest: float, window_seconds: float
    ) -> tuple[np.ndarray, np.ndarray] | Literal[True] | None:
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
        # As analysis.reporting: a GPU this far behind the newest reading has stopped.
        if min(ends) < newest - max(STALE_STEPS * step, STALE_MIN_SECONDS):
            return True
        last = self.t[-1]
        count = int((min(ends) - last) // step)
        if count > 0:
            points = last + step * np.arange(1, count + 1)
            first = float(points[0])
            rows_t: list[list[float]] = []
            rows_w: list[list[float]] = []
            for g in self.gpus:
                rt, rw = buffers[g].tail(first)  # newest first, back to the last before the first point
                rows_t.append(rt)
                rows_w.append(rw)
            width = max(len(r) for r in rows_t)
            for rt, rw in zip(rows_t, rows_w):  # pad with each row's oldest reading (still sorted)
                rt.extend([rt[-1]] * (width - len(rt)))
                rw.extend([rw[-1]] * (width - len(rw)))
            total = interp_sum(points, np.array(rows_t)[:, ::-1], np.array(rows_w)[:, ::-1])
            self.t.extend(points.tolist())
            self.w.extend(total.tolist())
        cutoff = newest - window_seconds
        while self.t and self.t[0] < cutoff:
            self.t.popleft()
            self.w.popleft()
        if len(self.t) < 2:
            return None
        return np.fromiter(self.t, float, len(self.t)), np.fromiter(self.w, float, len(self.w))


def interp_sum(points: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum over rows ``i`` of ``np.interp(points, t[i], w[i])``: rows sorted (repeats allowed),
    held at their first and last values outside them; every row at once."""
    width = t.shape[1]
    if width < 2:
        return np.asarray(w[:, 0].sum()).repeat(points.size)
    idx = (t[:, :, None] <= points[None, None, :]).sum(axis=1)
    j = np.clip(idx - 1, 0, width - 2)
    t0, t1 = np.take_along_axis(t, j, axis=1), np.take_along_axis(t, j + 1, axis=1)
    w0, w1 = np.take_along_axis(w, j, axis=1), np.take_along_axis(w, j + 1, axis=1)
    span = t1 - t0
    frac = np.divide(points[None, :] - t0, span, out=np.zeros_like(span), where=span > 0)
    out: np.ndarray = (w0 + (w1 - w0) * np.clip(frac, 0.0, 1.0)).sum(axis=0)
    return out
