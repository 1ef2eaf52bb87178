"""The daemon's analysis of its live window, over ``array('d')`` readings (pure functions).

Each function is the NumPy function it names in ``analysis.py`` or ``stats.py``, computed by the
C kernel (``kernel.active``) where the install built it. Without it, the same NumPy functions
run on views of the same readings: NumPy is imported then, and only then, so a daemon with the
kernel never loads it.

The readings are those ``readings.Readings`` keeps: strictly increasing times, so nothing needs
the repeats dropped that ``analysis.analyze_window`` drops from offline series.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Mapping, Sequence

from rasd.power import kernel
from rasd.power.metrics import SeriesMetrics, WindowAnalysis, assemble, reporting

if TYPE_CHECKING:
    import numpy as np

Series = tuple["array[float]", "array[float]"]  # (seconds, watts), oldest first
Window = Mapping[int, Series]  # per GPU


def analyze_window(
    series: Window,
    band: tuple[float, float],
    *,
    min_amplitude_watts: float = 0.0,
    reuse: Mapping[int, SeriesMetrics] | None = None,
) -> WindowAnalysis:
    """``analysis.analyze_window`` over the live window (``reuse``: as there)."""
    k = kernel.active
    if k is None:
        from rasd.power import analysis

        # (The node sum stays in NumPy: what reads it takes either kind.)
        return analysis.analyze_window(_numpy(series), band, min_amplitude_watts=min_amplitude_watts, reuse=reuse)
    return assemble(
        series, reuse,
        lambda t, w, uniform: k.analyze(t, w, band, min_amplitude_watts, uniform),
        lambda live: k.node_sum(list(live.values())),
    )


def node_sum(series: Window) -> Series | None:
    """``analysis.node_sum``: the reporting GPUs summed on a common grid, or None."""
    k = kernel.active
    if k is None:
        from rasd.power import analysis

        summed = analysis.node_sum(_numpy(series))
        return None if summed is None else (_floats(summed[0]), _floats(summed[1]))
    live = reporting(series)
    return k.node_sum([series[g] for g in live]) if live else None


def interp_sum(points: array[float], rows: Sequence[Series]) -> array[float]:
    """Sum over ``rows`` of ``np.interp(points, t, w)``: each row sorted (no repeats), held at its
    first and last values outside it."""
    k = kernel.active
    if k is not None:
        return k.interp_sum(points, rows)
    import numpy as np

    at = np.frombuffer(points, float)
    total = np.zeros(at.size)
    for t, w in rows:
        total += np.interp(at, np.frombuffer(t, float), np.frombuffer(w, float))
    return _floats(total)


def percentiles(x: array[float], qs: Sequence[float]) -> list[float]:
    """``stats.percentiles``: NumPy's linear percentiles of ``x``."""
    k = kernel.active
    if k is not None:
        return k.percentiles(x, qs)
    from rasd.power import stats

    return stats.percentiles(_np(x), qs)


def ramp_percentile(t: array[float], w: array[float], q: float) -> float:
    """The ``q``-th percentile of the rates (W/s, rising and falling alike) between readings."""
    k = kernel.active
    if k is not None:
        return k.ramp_percentile(t, w, q)
    import numpy as np

    from rasd.power import stats

    tt, ww = _np(t), _np(w)
    return stats.percentile(np.abs(np.diff(ww)) / np.diff(tt), q)


def _np(x: array[float]) -> np.ndarray:
    import numpy as np

    return np.frombuffer(x, float)


def _numpy(series: Window) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {g: (_np(t), _np(w)) for g, (t, w) in series.items()}


def _floats(x: np.ndarray) -> array[float]:
    out = array("d")
    out.frombytes(x.astype(float).tobytes())
    return out
