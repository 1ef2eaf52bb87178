"""What a power window's analysis says (SeriesMetrics, WindowAnalysis), its thresholds, and the
small rules over a series's times that need no arrays: the update rate, whether a series can be
analysed, which GPUs still report.

No NumPy here: the daemon's live analysis runs in C (rasd/power/kernel.py, rasd/power/window.py)
over ``array('d')`` readings, the offline analysis in NumPy (rasd/power/analysis.py); both make
these results, and these rules take either kind of series.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Optional, TypeVar, Union

if TYPE_CHECKING:
    from array import array

    import numpy as np

    Floats = Union["array[float]", np.ndarray]  # a series of seconds or watts, oldest first

S = TypeVar("S", bound="Floats")  # one kind of series throughout: array('d') live, NumPy offline

# Swing is peak-to-peak between these percentiles, so one noisy reading cannot set it.
PEAK_PERCENTILE = 99.0
TROUGH_PERCENTILE = 1.0
RAMP_PERCENTILE = 95.0
MIN_SAMPLES = 8
# A GPU whose last reading is this many update intervals (at least this many seconds) older than
# the newest GPU's has stopped reporting and is left out of the node sum.
STALE_STEPS = 10
STALE_MIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SeriesMetrics:
    """Analysis of one power series (one GPU or the node sum) over one window."""

    samples: int
    duration_seconds: float
    sample_rate_hz: float  # achieved distinct updates per second
    nyquist_hz: float
    band_low_hz: float  # configured band
    band_high_hz: float
    band_beyond_nyquist: bool  # part of the band cannot be seen at this rate: flagged, not analysed
    oscillation_hz: float | None  # dominant frequency; None = no oscillation stands out
    oscillation_amplitude_watts: float  # of the dominant sinusoid (half its peak-to-peak); 0 if none
    swing_watts: float  # peak - trough
    peak_watts: float  # 99th percentile
    trough_watts: float  # 1st percentile
    mean_watts: float
    ramp_up_watts_per_second: float  # 95th percentile of rising rates
    ramp_down_watts_per_second: float  # 95th percentile of falling rates (positive number)
    band_energy_ratio: float | None  # share of non-DC spectral energy in the visible band
    # Where the oscillation's fundamental lies against the band: "below", "in", "above"; None
    # without one. A rhythm below the band (a checkpoint cycle) is reported, not smoothed.
    oscillation_band: str | None = None
    band_oscillation_hz: float | None = None  # strongest periodic rhythm inside the band
    # Peak and trough of the steady part (slow dips below the band left out: steady.py); equal
    # to peak and trough when the whole window is steady. Smoothing decisions use these.
    steady_peak_watts: float | None = None
    steady_trough_watts: float | None = None
    steady_ratio: float = 1.0  # share of the window's readings in the steady part
    steady_band_energy_ratio: float | None = None  # band energy share of the steady part

    @property
    def steady_swing_watts(self) -> float:
        peak = self.peak_watts if self.steady_peak_watts is None else self.steady_peak_watts
        trough = self.trough_watts if self.steady_trough_watts is None else self.steady_trough_watts
        return peak - trough

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class WindowAnalysis:
    gpus: Mapping[int, SeriesMetrics]
    node: SeriesMetrics | None  # None when fewer than two GPUs overlap long enough
    node_series: tuple[Floats, Floats] | None = None  # (t, watts) on the common grid
    node_gpus: tuple[int, ...] = ()  # the GPUs summed into the node (those still reporting)


def achieved_rate(t: Floats) -> float:
    """Distinct updates a second over a sorted series of times (seconds)."""
    if len(t) < 2 or t[-1] <= t[0]:
        return 0.0
    return (len(t) - 1) / float(t[-1] - t[0])


def analysable(t: Floats) -> bool:
    """Whether a (deduplicated) series holds enough updates for analyze_series to say anything."""
    return len(t) >= MIN_SAMPLES and bool(t[-1] > t[0])


def reporting(series: Mapping[int, tuple[Floats, Floats]]) -> list[int]:
    """GPUs whose readings reach the window's end; a GPU that stopped (lost, hung) is left out.

    Without this, one silent GPU shrinks the span every GPU covers to nothing and the node's
    analysis disappears for good. "Reaching the end" allows STALE_STEPS update intervals.
    """
    usable = {g: s for g, s in series.items() if len(s[0]) >= MIN_SAMPLES}
    if not usable:
        return []
    latest = max(float(t[-1]) for t, _ in usable.values())
    step = max(float(t[-1] - t[0]) / (len(t) - 1) for t, _ in usable.values())  # mean update interval
    slack = max(STALE_STEPS * step, STALE_MIN_SECONDS)
    return sorted(g for g, (t, _) in usable.items() if float(t[-1]) >= latest - slack)


def with_rate(m: SeriesMetrics, rate: float) -> SeriesMetrics:
    """``m`` with the update rate of the GPUs summed into it (the slowest bounds what is seen)."""
    nyq = rate / 2.0
    return replace(m, sample_rate_hz=rate, nyquist_hz=nyq, band_beyond_nyquist=m.band_high_hz > nyq)


def assemble(
    series: Mapping[int, tuple[S, S]],
    reuse: Mapping[int, SeriesMetrics] | None,
    analyze: Callable[[S, S, bool], Optional[SeriesMetrics]],
    total: Callable[[Mapping[int, tuple[S, S]]], Optional[tuple[S, S]]],
) -> WindowAnalysis:
    """A window's analysis from its GPUs' series (sorted, no repeated times): each GPU's figures
    (``reuse``'s where it has them), the GPUs still reporting, and the node, their sum.

    The NumPy analysis and the daemon's C kernel share these rules and bring the two steps:
    ``analyze(t, w, uniform)`` one series's figures (None: too few updates), ``total(series)``
    the given GPUs, every one of them, summed on a common grid (None: they overlap too little).
    The GPUs found reporting are the node, summed as they are: asking again which of them
    report could leave one out (a stopped GPU's long update interval widens the slack).
    """
    gpus: dict[int, SeriesMetrics] = {}
    for gpu in sorted(series):
        t, w = series[gpu]
        if not analysable(t):
            continue
        m = reuse.get(gpu) if reuse is not None else None
        if m is None:
            m = analyze(t, w, False)
        if m is not None:
            gpus[gpu] = m
    live = reporting({g: series[g] for g in gpus})
    summed = total({g: series[g] for g in live}) if live else None
    node = None
    if summed is not None:
        node = analyze(summed[0], summed[1], True)
        if node is not None:
            # The grid inherits the GPUs' rate; report the slowest GPU's, which bounds what is seen.
            node = with_rate(node, min(achieved_rate(series[g][0]) for g in live))
    return WindowAnalysis(gpus=gpus, node=node, node_series=summed, node_gpus=tuple(live) if node else ())
