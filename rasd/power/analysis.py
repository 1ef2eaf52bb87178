"""Pure analysis of instant-power windows: oscillation, swing, ramps, band energy, Nyquist.

Inputs are the distinct updates of NVML field 186 (``NVML_FI_DEV_POWER_INSTANT``, watts after
the sampler's mW conversion), timed by the field's own timestamp. NVML refreshes that reading
about every 100 ms on A100/H100 (averaging only the last 25 ms), so the achieved distinct-update
rate, not the polling rate, sets the highest frequency that can be seen (Nyquist = rate / 2).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from rasd.model import PowerSample
# The results and thresholds live in metrics.py (no NumPy); importers also take them from here.
from rasd.power.metrics import (
    MIN_SAMPLES as MIN_SAMPLES,
    PEAK_PERCENTILE as PEAK_PERCENTILE,
    RAMP_PERCENTILE as RAMP_PERCENTILE,
    STALE_MIN_SECONDS as STALE_MIN_SECONDS,
    STALE_STEPS as STALE_STEPS,
    TROUGH_PERCENTILE as TROUGH_PERCENTILE,
    SeriesMetrics as SeriesMetrics,
    WindowAnalysis as WindowAnalysis,
    achieved_rate as achieved_rate,
    analysable as analysable,
    assemble as assemble,
    reporting as reporting,
    with_rate as with_rate,
)
from rasd.power.spectrum import LARGE, band_energy_ratio, find_oscillation, sine_fit
from rasd.power.stats import detrend, hann, median, percentile, percentiles
from rasd.power.steady import steady_mask

FOLD_BINS = 20  # phase bins of the folded wave (1/20 cycle: a sine's peak bin reads 98.8%)
SINE_R2 = 0.97  # a sinusoid explaining this share of the variance sets the swing by its amplitude
MIN_FIT_R2 = 0.8  # below this the wave is not periodic enough to trust its fit over raw readings


def samples_to_series(samples: Sequence[PowerSample]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Group samples per GPU into sorted (seconds, watts) arrays, timed by the NVML timestamp."""
    per: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        per.setdefault(s.gpu, []).append((s.nvml_timestamp_us / 1e6, s.watts))
    out = {}
    for gpu, rows in per.items():
        arr = np.asarray(rows, dtype=float)
        order = np.argsort(arr[:, 0], kind="stable")
        out[gpu] = (arr[order, 0], arr[order, 1])
    return out


def _dedup(t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated timestamps (a reading seen twice is one update)."""
    if t.size < 2:
        return t, w
    steps = np.diff(t)
    if steps.min() > 0:
        return t, w  # no copy: a long recording's arrays are large
    keep = np.concatenate(([True], steps > 0))
    return t[keep], w[keep]


def analyze_series(
    t: np.ndarray,
    w: np.ndarray,
    band: tuple[float, float],
    *,
    min_amplitude_watts: float = 0.0,
    uniform: bool = False,
) -> SeriesMetrics | None:
    """Metrics of one series; ``t`` in seconds (sorted), ``w`` in watts.

    ``uniform`` says the samples already sit on an even grid (the node sum), which skips the
    resampling. Returns None when the window holds too few updates to say anything.
    """
    t = np.asarray(t, dtype=float)
    w = np.asarray(w, dtype=float)
    t, w = _dedup(t, w)
    n = t.size
    if not analysable(t):
        return None
    duration = float(t[-1] - t[0])
    rate = achieved_rate(t)
    nyquist = rate / 2.0
    low, high = band
    # Uniform grid at the achieved rate: NVML's updates jitter around 100 ms, the FFT wants even steps.
    if uniform:
        grid_t, grid_w = t, w
        step = duration / (n - 1)
    else:
        step = duration / (n - 1)
        grid_t = t[0] + step * np.arange(n)
        grid_w = np.interp(grid_t, t, w)
    osc = find_oscillation(grid_t, grid_w, step, band, nyquist, min_amplitude_watts=min_amplitude_watts)
    freq, amp, energy_ratio = osc.hz, osc.amplitude_watts, osc.band_energy_ratio
    # Noise inflates percentiles. When one periodic wave explains the window, measure the swing
    # on its phase-folded shape (at the sample times) instead of the raw readings. Ramps stay on
    # the raw readings: folding blurs edges, and a ramp the GPU really made must not be hidden.
    shape = w
    if freq is not None:
        fitted = _folded_shape(t, w, freq)
        if fitted is not None:
            shape = fitted
    peak, trough = percentiles(shape, (PEAK_PERCENTILE, TROUGH_PERCENTILE))
    if freq is not None and amp > 0 and t.size <= LARGE:
        # A clean sinusoid at a simple fraction of the update rate (2 Hz read at 10 Hz: five
        # phases, over and over) may never be read at its crest; its fitted amplitude, from all
        # phases at once, is the better measure. Only for a wave a sinusoid explains (a square
        # wave's fundamental alone would overstate its swing by 4/pi).
        fit_amp, r2 = sine_fit(t, w, freq)
        if r2 >= SINE_R2 and 2 * fit_amp > peak - trough:
            extra = fit_amp - 0.5 * (peak - trough)
            peak, trough = peak + extra, trough - extra
    steady = steady_mask(grid_w, step, low)
    steady_ratio = float(steady.mean())
    steady_peak, steady_trough, steady_energy = peak, trough, energy_ratio
    if steady_ratio < 1.0 and steady.any():
        # The band's share of the energy with the unsteady stretches (a checkpoint's dip) held
        # at the steady mean: what the rhythm that remains puts inside the band.
        held = np.where(steady, grid_w, float(grid_w[steady].mean()))
        steady_energy = band_energy_ratio(held, step, band, nyquist)
        at_reading = np.interp(t, grid_t, steady.astype(float)) >= 0.5
        if at_reading.sum() >= MIN_SAMPLES:
            steady_peak, steady_trough = percentiles(shape[at_reading], (PEAK_PERCENTILE, TROUGH_PERCENTILE))
    slopes = np.diff(w) / np.diff(t)
    ups = slopes[slopes > 0]
    downs = -slopes[slopes < 0]
    ramp_up = percentile(ups, RAMP_PERCENTILE) if ups.size else 0.0
    ramp_down = percentile(downs, RAMP_PERCENTILE) if downs.size else 0.0
    return SeriesMetrics(
        samples=int(n),
        duration_seconds=duration,
        sample_rate_hz=rate,
        nyquist_hz=nyquist,
        band_low_hz=float(low),
        band_high_hz=float(high),
        band_beyond_nyquist=bool(high > nyquist),
        oscillation_hz=freq,
        oscillation_amplitude_watts=amp,
        swing_watts=peak - trough,
        peak_watts=peak,
        trough_watts=trough,
        mean_watts=float(np.mean(w)),
        ramp_up_watts_per_second=ramp_up,
        ramp_down_watts_per_second=ramp_down,
        band_energy_ratio=energy_ratio,
        oscillation_band=None if freq is None else ("below" if freq < low else "above" if freq > high else "in"),
        band_oscillation_hz=osc.in_band_hz,
        steady_peak_watts=steady_peak,
        steady_trough_watts=steady_trough,
        steady_ratio=steady_ratio,
        steady_band_energy_ratio=steady_energy,
    )


def _folded_shape(t: np.ndarray, w: np.ndarray, freq: float) -> np.ndarray | None:
    """Each reading replaced by the median of readings at the same phase of the wave.

    Folding on the detected period averages the noise out of a repeating wave without the
    ringing a harmonic fit puts on square (compute/communication) edges. None when the folded
    wave explains less than MIN_FIT_R2 of the variance (the period drifts, or it is not periodic).
    """
    # One bin per update interval at low frequencies keeps square edges one sample sharp.
    rate = achieved_rate(t)
    bins = max(FOLD_BINS, min(int(round(rate / freq)), t.size // 6))
    phase = np.mod((t - t[0]) * freq, 1.0) * bins
    idx = np.minimum(phase.astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    filled = np.nonzero(counts)[0]
    if filled.size < 4:
        return None
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[filled]
    n_in = counts[filled]
    if w.size <= LARGE:
        # Per-bin medians without a Python loop: sort by (bin, watts), take each bin's middle.
        order = np.lexsort((w, idx))
        sorted_w = w[order]
        medians = 0.5 * (sorted_w[starts + (n_in - 1) // 2] + sorted_w[starts + n_in // 2])
    else:
        # A long recording: a full two-key sort costs seconds; group by bin (integer sort) and
        # take each bin's median (the same values).
        grouped = w[np.argsort(idx, kind="stable")]
        medians = np.array([np.median(grouped[a : a + k]) for a, k in zip(starts, n_in)])
    centres = filled + 0.5
    # Circular interpolation between bin centres: no staircase in the slopes.
    shape: np.ndarray = np.interp(phase, centres, medians, period=bins)
    total = float(np.sum((w - w.mean()) ** 2))
    if total <= 0 or 1 - float(np.sum((w - shape) ** 2)) / total < MIN_FIT_R2:
        return None
    return shape


def node_sum(
    series: Mapping[int, tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sum the reporting GPUs on a common grid over the span all of them cover (``summed``)."""
    return summed({g: series[g] for g in reporting(series)})


def summed(
    usable: Mapping[int, tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sum these GPUs, every one of them, on a common grid over the span all of them cover.

    Each GPU's NVML timestamps differ, so every series is linearly interpolated onto one grid
    whose step is the median update interval across GPUs.
    """
    if not usable:
        return None
    start = max(float(t[0]) for t, _ in usable.values())
    end = min(float(t[-1]) for t, _ in usable.values())
    steps = [median(np.diff(t)) for t, _ in usable.values()]
    step = median(np.asarray(steps))
    if step <= 0 or end - start < step * (MIN_SAMPLES - 1):
        return None
    count = int(math.floor((end - start) / step)) + 1
    grid = start + step * np.arange(count)
    total = np.zeros(count)
    for t, w in usable.values():
        total += np.interp(grid, t, w)
    return grid, total


def analyze_window(
    series: Mapping[int, tuple[np.ndarray, np.ndarray]],
    band: tuple[float, float],
    *,
    min_amplitude_watts: float = 0.0,
    reuse: Mapping[int, SeriesMetrics] | None = None,
) -> WindowAnalysis:
    """Per-GPU metrics and the node sum's metrics over one window of (seconds, watts) series.

    ``reuse``: per-GPU metrics from an earlier window, taken as they are for those GPUs instead
    of analysing them again (the daemon refreshes GPUs in turn; the node sum is always analysed
    afresh). Which GPUs have metrics, and so which are summed into the node, is decided on this
    window either way.
    """
    clean = {gpu: _dedup(*series[gpu]) for gpu in series}
    return assemble(
        clean, reuse,
        lambda t, w, uniform: analyze_series(t, w, band, min_amplitude_watts=min_amplitude_watts, uniform=uniform),
        summed,
    )


def amplitude_spectrum(t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Hz, W) single-sided amplitude spectrum of the detrended, Hann-windowed window (for plots)."""
    t, w = _dedup(np.asarray(t, dtype=float), np.asarray(w, dtype=float))
    n = t.size
    if n < MIN_SAMPLES or t[-1] <= t[0]:
        return np.zeros(0), np.zeros(0)
    step = float(t[-1] - t[0]) / (n - 1)
    grid = t[0] + step * np.arange(n)
    y = np.interp(grid, t, w)
    x = detrend(grid - grid[0], y)
    win = hann(n)
    amp = 2.0 * np.abs(np.fft.rfft(x * win)) / win.sum()
    return np.fft.rfftfreq(n, step), amp
