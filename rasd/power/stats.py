"""Order statistics and a straight-line fit over small NumPy arrays, without NumPy's per-call
overhead (pure functions; the same values as ``np.percentile``, ``np.median`` and a degree-1
``np.polyfit`` up to rounding).

The live analysis takes a dozen percentiles and medians of a few hundred readings per GPU every
few seconds; NumPy's general versions spend most of their ~40 us on argument handling, these
spend it on one ``partition``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np


def percentiles(x: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(x, qs)`` with its default (linear) method, from one partition.

    The virtual index and the interpolation are NumPy's own expressions, so the values are the
    same to the bit. NaN in ``x`` gives NaN, as NumPy does.
    """
    n = int(x.size)
    if n == 0:
        raise ValueError("percentiles of an empty array")
    picks: list[tuple[int, int, float]] = []
    for q in qs:
        f = q / 100
        v = n * f + (1 - f) - 1  # NumPy's virtual index for alpha = beta = 1
        if v >= n - 1:
            picks.append((n - 1, n - 1, 0.0))
        elif v < 0:
            picks.append((0, 0, 0.0))
        else:
            lo = math.floor(v)
            picks.append((lo, lo + 1, v - lo))
    kth = sorted({i for lo, hi, _ in picks for i in (lo, hi)} | {n - 1})
    part = np.partition(x, kth)
    if math.isnan(part[n - 1]):
        return [math.nan] * len(picks)
    out = []
    for lo, hi, g in picks:
        a, b = float(part[lo]), float(part[hi])
        diff = b - a
        out.append(a + diff * g if g < 0.5 else b - diff * (1 - g))
    return out


def percentile(x: np.ndarray, q: float) -> float:
    return percentiles(x, (q,))[0]


def median(x: np.ndarray) -> float:
    """``np.median(x)`` from one partition (the mean of the middle two for an even count)."""
    n = int(x.size)
    if n == 0:
        raise ValueError("median of an empty array")
    half = n // 2
    kth = [half - 1, half, n - 1] if n % 2 == 0 and n > 1 else [half, n - 1]
    part = np.partition(x, kth)
    if math.isnan(part[n - 1]):
        return math.nan
    if n % 2:
        return float(part[half])
    return float((part[half - 1] + part[half]) / 2)


def detrend(t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``w`` less its least-squares straight line over ``t`` (a degree-1 polyfit, in closed form)."""
    tc = t - t.mean()
    wm = w.mean()
    denom = float(np.einsum("i,i->", tc, tc))
    slope = float(np.einsum("i,i->", tc, w - wm)) / denom if denom > 0 else 0.0
    out: np.ndarray = w - wm - slope * tc
    return out


CACHED_HANN = 1 << 16  # longer windows (offline recordings) are computed each time, not kept


@lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    win = np.hanning(n)
    win.flags.writeable = False  # shared between calls
    return win


def hann(n: int) -> np.ndarray:
    """``np.hanning(n)``, computed once per length for live windows (read-only)."""
    return _hann(n) if n <= CACHED_HANN else np.hanning(n)
