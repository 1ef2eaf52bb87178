"""The steady part of a power window or recording (pure functions over arrays, watts, seconds).

Smoothing decisions are about the rhythm inside the band. A slow cycle below it (a checkpoint
every minute drops the node to near idle for some seconds) and the idle lead-in and tail of a
recording are not that rhythm: taken at face value, a checkpoint's trough would set a cap that
halves training power. The steady part leaves out every stretch whose level, averaged over one
period of the band's low edge (the slowest in-band rhythm averages out over it), falls well below
the window's typical level, and half such a period either side (where the average is still pulled
down by it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rasd.power.stats import median

STEADY_SHARE = 0.7  # a level under 70 % of the typical one is not steady
IDLE_SHARE = 0.5  # idle: under halfway from the recording's floor to its typical level


@dataclass(frozen=True, slots=True)
class IdleEdges:
    """Idle stretches at the start and end of a recording (seconds, watts of the node sum)."""

    lead_in_seconds: float
    lead_in_mean_watts: float | None
    tail_seconds: float
    tail_mean_watts: float | None
    steady_start: float  # first and last reading of the part between them
    steady_end: float

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


def _moving_average(w: np.ndarray, width: int) -> np.ndarray:
    """Centred mean over ``width`` samples, shrinking at the ends (no padding bias)."""
    # Running sums: O(n) whatever the width (a long recording has millions of readings).
    half = width // 2
    c = np.concatenate(([0.0], np.cumsum(w)))
    idx = np.arange(w.size)
    lo = np.maximum(idx - half, 0)
    hi = np.minimum(idx - half + width, w.size)
    return (c[hi] - c[lo]) / (hi - lo)


def steady_mask(w: np.ndarray, step: float, band_low_hz: float) -> np.ndarray:
    """True where an even-grid series (``step`` seconds apart) is at its steady level."""
    width = max(1, int(round(1.0 / (band_low_hz * step))))
    if w.size < 2 * width:
        return np.ones(w.size, dtype=bool)  # shorter than two slow periods: nothing to tell apart
    level = _moving_average(w, width)
    typical = median(level)
    if typical <= 0:
        return np.ones(w.size, dtype=bool)
    low = level < STEADY_SHARE * typical
    if not low.any():
        return np.ones(w.size, dtype=bool)
    # Widen each low stretch by half a period either side: the average there still includes it.
    reach = width // 2
    c = np.concatenate(([0], np.cumsum(low)))
    idx = np.arange(low.size)
    near = (c[np.minimum(idx + reach + 1, low.size)] - c[np.maximum(idx - reach, 0)]) > 0
    return ~near


def idle_edges(t: np.ndarray, w: np.ndarray, band_low_hz: float) -> IdleEdges | None:
    """Idle lead-in and tail of a recording's node sum, or None when it has neither.

    Idle is below halfway between the recording's floor (1st percentile) and its typical level
    (median); a lead-in or tail counts only when it lasts longer than one period of the band's
    low edge, so a communication dip or a short pause at the start is not mistaken for one.
    """
    if t.size < 8:
        return None
    floor, typical = (float(v) for v in np.percentile(w, [1.0, 50.0]))
    if typical <= floor:
        return None
    threshold = floor + IDLE_SHARE * (typical - floor)
    busy = np.flatnonzero(w > threshold)
    if busy.size == 0:
        return None
    first, last = int(busy[0]), int(busy[-1])
    minimum = 1.0 / band_low_hz
    lead = float(t[first] - t[0]) if first > 0 else 0.0
    tail = float(t[-1] - t[last]) if last < t.size - 1 else 0.0
    if lead < minimum:
        lead, first = 0.0, 0
    if tail < minimum:
        tail, last = 0.0, t.size - 1
    if lead == 0.0 and tail == 0.0:
        return None
    return IdleEdges(
        lead_in_seconds=lead,
        lead_in_mean_watts=float(np.mean(w[:first])) if lead > 0 else None,
        tail_seconds=tail,
        tail_mean_watts=float(np.mean(w[last + 1 :])) if tail > 0 else None,
        steady_start=float(t[first]),
        steady_end=float(t[last]),
    )
