"""The oscillation in a power window: the fundamental of its rhythm, where it lies against the
band, and whether it is an oscillation at all (pure functions over even-grid arrays, watts).

A periodogram's strongest peak is often a harmonic (a short communication dip every step puts
much of its energy at twice or three times the step rate), and a single load pulse or a step
(a job starting, a checkpoint) has a broad low-frequency spectrum with a "peak" that repeats
nothing. So: the strongest peaks standing out of the noise are taken in turn; each is traced
down to its fundamental (the lowest strong subharmonic); the first whose wave shows in both
thirds of the window is the oscillation. The strongest periodic rhythm inside the band is looked
for the same way among the in-band peaks (a checkpoint's slow cycle may dominate the window while
the training steps still swing inside the band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rasd.power.stats import detrend, hann, median

# A spectral peak must stand this far above the median of the searched bins to count: white-noise
# periodogram bins are exponentially distributed, so a 20x-median (about 14x-mean) peak happens by
# chance with probability ~1e-6 per bin.
DETECTION_RATIO = 20.0
ZERO_PAD = 8  # finer spectral grid for the peak interpolation
MAX_PADDED = 1 << 16  # longer windows are not zero-padded
LARGE = 1 << 16  # above this many readings (offline recordings) cheaper exact methods are used
CANDIDATES = 6  # strongest peaks tried in turn
MAX_HARMONIC = 8  # a peak may be up to the 8th harmonic of the rhythm
SUBHARMONIC_SHARE = 0.5  # a fundamental's amplitude is at least half its harmonic's (a weaker
# "subharmonic" is more likely an alias: a 3 Hz square sampled at 10 Hz folds its 9 Hz third
# harmonic onto 1 Hz at a third of the amplitude)
THIRDS_SHARE = 0.4  # the wave's amplitude in each third of the window, against the whole window's
MIN_CYCLES = 3.0  # a rhythm repeats at least three times in the window


@dataclass(frozen=True, slots=True)
class Oscillation:
    hz: float | None  # the fundamental; None: nothing periodic stands out
    amplitude_watts: float  # of the fundamental sinusoid (half its peak-to-peak)
    band_energy_ratio: float | None  # share of non-DC energy in the visible band
    in_band_hz: float | None  # the strongest periodic rhythm inside the band (may be the same)


def find_oscillation(
    t: np.ndarray,
    w: np.ndarray,
    step: float,
    band: tuple[float, float],
    nyquist: float,
    *,
    min_amplitude_watts: float,
) -> Oscillation:
    """Oscillation of an even-grid series (``t`` seconds, ``w`` watts, ``step`` seconds apart)."""
    n = w.size
    # A linear detrend keeps a slow ramp (a job starting) from leaking into the low bins.
    x = detrend(t - t[0], w)
    xw = x * hann(n)
    power = np.abs(np.fft.rfft(xw)) ** 2
    freqs = np.fft.rfftfreq(n, step)
    low, high = band
    visible_high = min(high, nyquist)
    total = float(power[1:].sum())
    if low >= nyquist:
        energy_ratio = None  # the whole band is beyond what this rate can see
    elif total <= 0:
        energy_ratio = 0.0
    else:
        in_band = (freqs >= low) & (freqs <= visible_high)
        energy_ratio = float(power[in_band].sum() / total)
    none = Oscillation(None, 0.0, energy_ratio, None)

    # Search from three cycles per window (below the band too: a slow rhythm is reported as such)
    # up to just below Nyquist, on a zero-padded spectrum with parabolic interpolation.
    duration = step * (n - 1)
    f_min = MIN_CYCLES / duration
    f_max = nyquist * 0.98
    if f_min >= f_max:
        return none
    nfft = 1 << int(math.ceil(math.log2(n * ZERO_PAD if n * ZERO_PAD <= MAX_PADDED else n)))
    mag = np.abs(np.fft.rfft(xw, nfft))
    df = float(1.0 / (nfft * step))
    sel = np.nonzero((np.arange(mag.size) * df >= f_min) & (np.arange(mag.size) * df <= f_max))[0]
    if sel.size < 3:
        return none
    # Noise floor from the unpadded bins of the same range (independent bins, fair median).
    raw_sel = (freqs >= f_min) & (freqs <= f_max)
    floor = median(power[raw_sel]) if raw_sel.any() else 0.0
    threshold = math.sqrt(DETECTION_RATIO * floor) if floor > 0 else 0.0
    seg = mag[sel]
    is_peak = np.ones(seg.size, dtype=bool)
    is_peak[1:] &= seg[1:] >= seg[:-1]
    is_peak[:-1] &= seg[:-1] > seg[1:]
    peaks = sel[is_peak & (seg >= threshold)]
    if peaks.size == 0:
        return none
    ranked = peaks[np.argsort(mag[peaks])[::-1]]
    tried: dict[int, tuple[float, float] | None] = {}

    def rhythm(k: int, trace: bool = True) -> tuple[float, float] | None:
        """(Hz, W) of the periodic rhythm whose harmonic peak ``k`` is (``trace``), or of ``k``
        itself, or None."""
        k0 = _fundamental(mag, k, threshold, f_min / df) if trace else k
        if k0 not in tried:
            freq = _interpolate(mag, k0) * df
            amp = _fit_amplitude(t, x, freq) if _periodic(t, x, freq) else 0.0
            tried[k0] = (freq, amp) if amp >= min_amplitude_watts and amp > 0 else None
        return tried[k0]

    found = next((r for r in map(rhythm, ranked[:CANDIDATES]) if r is not None), None)
    in_band_hz = None
    if found is not None and low <= found[0] <= high:
        in_band_hz = found[0]
    else:
        inside = ranked[(ranked * df >= low) & (ranked * df <= high)]
        # Within four unpadded bins: a strong harmonic's window sidelobes sit two or three bins
        # either side of it and must not pass for a rhythm of their own.
        tolerance = 4.0 / (n * step)

        base = mag[int(round(found[0] / df))] if found is not None else 0.0

        def own(freq: float, strength: float) -> bool:
            """Not a harmonic of the slow rhythm found (that would be the slow rhythm again).

            A peak at its k-th multiple is its harmonic unless it is stronger than any harmonic
            of a pulse train can be (about 1.7/k of the fundamental for a 20% duty; 2/k is used):
            training steps commensurate with the checkpoint cycle stay their own rhythm.
            """
            if found is None:
                return True
            order = max(1, round(freq / found[0]))
            near = abs(freq / found[0] - order) * found[0] <= tolerance
            return not near or strength > 2.0 / order * base

        def inside_rhythm(k: int) -> tuple[float, float] | None:
            # Traced down, a training step's peak may land on one of the slow rhythm's own
            # harmonics (steps commensurate with the checkpoint cycle): then it stands alone.
            for r in (rhythm(k), rhythm(k, trace=False)):
                if r is not None and low <= r[0] <= high and own(r[0], float(mag[int(round(r[0] / df))])):
                    return r
            return None

        inside = np.array([k for k in inside if own(k * df, float(mag[k]))], dtype=int)
        hit = next((r for r in map(inside_rhythm, inside[:CANDIDATES]) if r is not None), None)
        in_band_hz = hit[0] if hit is not None else None
    if found is None:
        return Oscillation(None, 0.0, energy_ratio, in_band_hz)
    return Oscillation(found[0], found[1], energy_ratio, in_band_hz)


def _fundamental(mag: np.ndarray, k: int, threshold: float, k_min: float) -> int:
    """The lowest strong subharmonic bin of peak ``k`` (``k`` itself when it has none)."""
    best = k
    for h in range(2, MAX_HARMONIC + 1):
        centre = k / h
        if centre < k_min:
            break
        # The subharmonic's bin is known to within the peak's own uncertainty, about one bin
        # of the unpadded spectrum (ZERO_PAD padded bins) divided by h.
        spread = max(2, int(math.ceil(ZERO_PAD / h)) + 1)
        lo, hi = max(1, int(centre) - spread), min(mag.size - 2, int(centre) + spread + 1)
        if hi <= lo:
            continue
        j = lo + int(np.argmax(mag[lo:hi]))
        local_max = mag[j] >= mag[j - 1] and mag[j] >= mag[j + 1]
        if local_max and mag[j] >= threshold and mag[j] >= SUBHARMONIC_SHARE * mag[k]:
            best = j
    return best


def _interpolate(mag: np.ndarray, k: int) -> float:
    """Fractional bin of the peak at ``k`` (parabola through the log magnitudes)."""
    if not 0 < k < mag.size - 1:
        return float(k)
    a, b, c = (math.log(max(float(v), 1e-300)) for v in mag[k - 1 : k + 2])
    denom = a - 2 * b + c
    # Only a crest (a parabola opening downwards) has a vertex within half a bin of k. A peak
    # taken at the edge of the searched range may sit on a slope, where the vertex of a nearly
    # straight line lies anywhere (hundreds of bins off, even below zero).
    if denom >= 0 or b < max(a, c):
        return float(k)
    return k + 0.5 * (a - c) / denom


def _periodic(t: np.ndarray, x: np.ndarray, freq: float) -> bool:
    """The wave at ``freq`` shows in each third of the window with a like amplitude.

    A single load pulse or a step concentrates its "oscillation" in one place: some third then
    carries far less of it than the whole window suggests. (The search starts at three cycles
    per window, so each third holds at least one.) Each third gets its own level and slope.
    """
    n = x.size
    third = n // 3
    if third < 4:
        return True
    whole, *parts = _amplitudes(t, x, freq, ((0, n), (0, third), (third, 2 * third), (2 * third, n)))
    return whole > 0 and min(parts) >= THIRDS_SHARE * whole


def _amplitudes(t: np.ndarray, x: np.ndarray, freq: float, spans: tuple[tuple[int, int], ...]) -> list[float]:
    """Amplitude (W) of a sinusoid at ``freq`` fitted with a level and a slope over each span
    (the 4x4 normal equations: the cosine and sine are computed once for all spans, the systems
    solved in one call)."""
    rel = t - t[0]
    ph = 2 * math.pi * freq * rel
    # A level and a slope span the same fits whatever the slope's origin, so one time column
    # (centred for conditioning) serves every span.
    cols = np.vstack((np.cos(ph), np.sin(ph), np.ones_like(ph), rel - rel.mean()))
    # einsum's own loops: BLAS's threaded dot products cost far more on a busy node.
    grams = np.stack([np.einsum("ij,kj->ik", cols[:, a:b], cols[:, a:b]) for a, b in spans])
    rhs = np.stack([np.einsum("ij,j->i", cols[:, a:b], x[a:b]) for a, b in spans])
    try:
        coef = np.linalg.solve(grams, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        out = []
        for g, r in zip(grams, rhs):
            try:
                c = np.linalg.solve(g, r)
            except np.linalg.LinAlgError:
                out.append(0.0)
                continue
            out.append(float(math.hypot(c[0], c[1])))
        return out
    return [float(math.hypot(a, b)) for a, b in coef[:, :2]]


def _fit_amplitude(t: np.ndarray, x: np.ndarray, freq: float) -> float:
    """Least-squares amplitude (W) of a sinusoid at ``freq`` in the detrended series."""
    ph = 2 * math.pi * freq * (t - t[0])
    # The 3x3 normal equations: the same fit without an n-by-3 matrix and its SVD.
    cols = np.vstack((np.cos(ph), np.sin(ph), np.ones_like(ph)))
    try:
        coef = np.linalg.solve(np.einsum("ij,kj->ik", cols, cols), np.einsum("ij,j->i", cols, x))
    except np.linalg.LinAlgError:
        return 0.0
    return float(math.hypot(coef[0], coef[1]))


def band_energy_ratio(w: np.ndarray, step: float, band: tuple[float, float], nyquist: float) -> float | None:
    """Share of the non-DC energy of an even-grid series inside the visible band (None: all of
    the band is beyond Nyquist)."""
    low, high = band
    if low >= nyquist:
        return None
    x = detrend(np.arange(w.size) * step, w)
    power = np.abs(np.fft.rfft(x * hann(w.size))) ** 2
    freqs = np.fft.rfftfreq(w.size, step)
    total = float(power[1:].sum())
    if total <= 0:
        return 0.0
    return float(power[(freqs >= low) & (freqs <= min(high, nyquist))].sum() / total)


def sine_fit(t: np.ndarray, w: np.ndarray, freq: float) -> tuple[float, float]:
    """(amplitude W, share of variance explained) of a sinusoid at ``freq`` with a level and a
    slope, fitted to the readings at their own times."""
    rel = t - t[0]
    ph = 2 * math.pi * freq * rel
    # The 4x4 normal equations (centred time keeps them well conditioned): no n-by-4 SVD.
    cols = np.vstack((np.cos(ph), np.sin(ph), np.ones_like(ph), rel - rel.mean()))
    try:
        coef = np.linalg.solve(np.einsum("ij,kj->ik", cols, cols), np.einsum("ij,j->i", cols, w))
    except np.linalg.LinAlgError:
        return 0.0, 0.0
    resid = w - np.einsum("i,ij->j", coef, cols)
    centred = detrend(rel, w)
    total = float(centred @ centred)
    r2 = 1.0 - float(resid @ resid) / total if total > 0 else 0.0
    return float(math.hypot(coef[0], coef[1])), r2
