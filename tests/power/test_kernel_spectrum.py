"""The power kernel's spectral side (rasd/power/_spectrum.c, _fft.c, _numeric.c) against the
NumPy code it replaces: rasd.power.stats' median, detrend and hann, np.linalg.solve, and
rasd.power.spectrum's find_oscillation and band_energy_ratio, on many fixed-seed windows.

Medians and detrending are the same to the bit (their order of summation is NumPy's own; for
detrending's dot products, as NumPy's x86-64 builds sum them), the Hann window to 1e-15 (libm's
cosine against NumPy's), FFT-derived values to a relative 1e-9; whether an oscillation is found,
and whether one is found inside the band, agree on every window.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import math
import platform
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from rasd.power.spectrum import band_energy_ratio, find_oscillation
from rasd.power.stats import detrend, hann, median
from rasd.power.synthetic import Wave, nvml_trace

LIBRARY = Path(__file__).resolve().parents[2] / "rasd" / "power" / (
    "_kernel" + importlib.machinery.EXTENSION_SUFFIXES[0]
)
RTOL = 1e-9
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
D = ctypes.c_double
P = ctypes.POINTER(ctypes.c_double)


class Oscillation(ctypes.Structure):
    _fields_ = [("hz", D), ("amplitude", D), ("energy_ratio", D), ("in_band_hz", D)]


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    if not LIBRARY.exists():
        pytest.skip(
            f"the power kernel is not built ({LIBRARY.name} missing): "
            "`pip install -e .` or gcc as the README says builds it"
        )
    cdll = ctypes.CDLL(str(LIBRARY))
    cdll.pk_median.argtypes = [P, ctypes.c_int, P]
    cdll.pk_median.restype = D
    cdll.pk_detrend.argtypes = [P, P, ctypes.c_int, P]
    cdll.pk_detrend.restype = None
    cdll.pk_hann.argtypes = [ctypes.c_int, P]
    cdll.pk_hann.restype = None
    cdll.pk_solve.argtypes = [ctypes.c_int, P, P]
    cdll.pk_solve.restype = ctypes.c_int
    cdll.pk_find_oscillation.argtypes = [P, P, ctypes.c_int, D, D, D, D, D, ctypes.POINTER(Oscillation)]
    cdll.pk_find_oscillation.restype = ctypes.c_int
    cdll.pk_band_energy_ratio.argtypes = [P, ctypes.c_int, D, D, D, D]
    cdll.pk_band_energy_ratio.restype = D
    return cdll


def ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(P)


# ---- the windows ---------------------------------------------------------------------------


def _series(rng: np.random.Generator, n: int, step: float, kind: str) -> np.ndarray:
    """``n`` watts on an even grid ``step`` seconds apart, of a realistic ``kind``."""
    t = step * np.arange(n)
    noise = rng.normal(0.0, rng.uniform(0.5, 8.0), n)
    if kind == "square":
        hz = rng.uniform(0.2, 5.0)
        duty = rng.uniform(0.15, 0.8)
        unit = (np.mod(hz * t + rng.uniform(), 1.0) < duty).astype(float)
        return 300.0 + rng.uniform(20.0, 300.0) * unit + noise
    if kind == "sine":
        hz = rng.uniform(0.1, 4.0)
        return 400.0 + rng.uniform(2.0, 150.0) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 6)) + noise
    if kind == "dips":
        # training steps with a checkpoint dip every few tens of seconds (below the band)
        hz = rng.uniform(0.3, 3.0)
        unit = (np.mod(hz * t, 1.0) < 0.6).astype(float)
        cycle = rng.uniform(8.0, 40.0)
        dip = np.mod(t, cycle) < rng.uniform(1.5, 4.0)
        return np.where(dip, 120.0, 350.0 + 200.0 * unit) + noise
    if kind == "step":
        at = rng.integers(1, n)
        return np.where(np.arange(n) < at, 90.0, 600.0) + noise
    if kind == "pulse":
        at = rng.integers(0, n)
        return 100.0 + 400.0 * (np.abs(np.arange(n) - at) < max(1, n // 20)) + noise
    if kind == "partial":
        # training that starts (or whose swing fades in) part-way through the window: whether
        # its wave shows in every third decides whether it is an oscillation
        hz = rng.uniform(0.3, 3.0)
        unit = (np.mod(hz * t, 1.0) < 0.5).astype(float)
        fade = np.clip((t - rng.uniform(0.0, 0.6) * t[-1]) / (rng.uniform(0.01, 0.5) * t[-1] + step), 0.0, 1.0)
        return 200.0 + 250.0 * fade * unit + 150.0 * fade + noise
    if kind == "noise":
        return 250.0 + noise
    if kind == "idle":
        return np.full(n, 61.25)
    if kind == "quantized":
        # an idle board read at a milliwatt resolution with little jitter
        return np.round(61.0 + rng.normal(0.0, 0.02, n), 3)
    raise AssertionError(kind)


KINDS = ("square", "sine", "dips", "step", "pulse", "partial", "noise", "idle", "quantized")
LENGTHS = (8, 9, 11, 13, 16, 17, 19, 20, 31, 32, 64, 97, 100, 127, 128, 150, 211, 256, 300, 509,
           512, 600, 997, 1000, 1024, 1500, 1999, 2000)
BANDS = ((0.1, 3.0), (0.1, 3.0), (0.5, 2.0), (0.05, 10.0), (2.0, 4.0), (6.0, 9.0))


def _cases(seed: int, count: int) -> Iterator[tuple[np.ndarray, np.ndarray, float, tuple[float, float], float, float]]:
    """(t, w, step, band, nyquist, min_amplitude) windows as analyze_series hands them over."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = int(LENGTHS[i % len(LENGTHS)])
        kind = KINDS[(i // len(LENGTHS)) % len(KINDS)]
        step = float(rng.uniform(0.05, 0.1))
        start = 1_700_000_000.0 + rng.uniform(0, 1e5)
        t = start + step * np.arange(n)
        w = _series(rng, n, step, kind)
        band = BANDS[int(rng.integers(len(BANDS)))]
        # the achieved rate's Nyquist (about 1 / (2 step)), as analyze_series computes it
        nyquist = (n - 1) / float(t[-1] - t[0]) / 2.0
        min_amp = 0.0 if rng.uniform() < 0.5 else float(rng.uniform(0.5, 20.0))
        yield t, w, step, band, nyquist, min_amp


def _nvml_cases() -> Iterator[tuple[np.ndarray, np.ndarray, float, tuple[float, float], float, float]]:
    """Realistic NVML-like traces (rasd.power.synthetic), put on an even grid the way
    analyze_series does."""
    rng = np.random.default_rng(7)
    for i in range(60):
        hz = float(rng.uniform(0.2, 5.0))
        wave = Wave(hz=hz, swing_watts=float(rng.uniform(10, 300)), shape="square" if i % 2 else "sine",
                    duty=float(rng.uniform(0.2, 0.7)), noise_watts=float(rng.uniform(0, 10)))
        seconds = float(rng.uniform(3.0, 120.0))
        t, w = nvml_trace(wave, seconds, refresh_seconds=float(rng.uniform(0.05, 0.1)), rng=rng)
        n = t.size
        step = float(t[-1] - t[0]) / (n - 1)
        grid_t = t[0] + step * np.arange(n)
        grid_w = np.interp(grid_t, t, w)
        nyquist = (n - 1) / float(t[-1] - t[0]) / 2.0
        yield grid_t, grid_w, step, (0.1, 3.0), nyquist, 0.0 if i % 3 else 5.0


# ---- primitives ----------------------------------------------------------------------------


def test_median_is_numpys_to_the_bit(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(1)
    for n in list(range(1, 260)) + [511, 512, 513, 1999, 2000, 4097]:
        for x in (rng.normal(300, 50, n), np.round(rng.normal(300, 5, n)), np.full(n, 0.1)):
            work = np.empty(n)
            got = lib.pk_median(ptr(x), n, ptr(work))
            assert got == median(x) == np.median(x), n
    x = np.array([3.0, math.nan, 1.0])
    before = x.copy()
    assert math.isnan(lib.pk_median(ptr(x), 3, ptr(np.empty(3))))
    assert np.array_equal(x, before, equal_nan=True)  # the input is not changed


def test_detrend_and_hann_are_numpys_to_the_bit(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(2)
    for n in list(range(1, 200)) + [255, 256, 257, 997, 1024, 2000, 5003]:
        rel = np.sort(0.1 * np.arange(n) + rng.uniform(-0.002, 0.002, n))
        rel -= rel[0]
        for w in (rng.normal(300, 50, n), np.full(n, 0.1), 50 + 0.3 * rel):
            out = np.empty(n)
            lib.pk_detrend(ptr(rel), ptr(w), n, ptr(out))
            want = detrend(rel, w)
            if X86_64:
                np.testing.assert_array_equal(out, want)
            else:  # einsum's summation order is only followed as the x86-64 wheels have it
                np.testing.assert_allclose(out, want, rtol=0, atol=1e-12 * float(np.abs(w).max()))
            inplace = w.copy()
            lib.pk_detrend(ptr(rel), ptr(inplace), n, ptr(inplace))  # out may be w
            np.testing.assert_array_equal(inplace, out)
        win = np.empty(n)
        lib.pk_hann(n, ptr(win))
        np.testing.assert_allclose(win, hann(n), rtol=0, atol=1e-15)


def test_solve_matches_linalg_and_refuses_a_singular_system(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(3)
    for m in (3, 4):
        for _ in range(500):
            # normal equations like the sinusoid fits' (symmetric positive definite)
            cols = rng.normal(size=(m, 40))
            a = cols @ cols.T
            b = rng.normal(size=m) * 100
            want = np.linalg.solve(a, b)
            ac, bc = a.copy(), b.copy()
            assert lib.pk_solve(m, ptr(ac), ptr(bc)) == 0
            np.testing.assert_allclose(bc, want, rtol=1e-11, atol=1e-11 * float(np.abs(want).max()))
        # a general (non-symmetric) system needs the row exchanges
        a = rng.normal(size=(m, m))
        a[0, 0] = 0.0
        b = rng.normal(size=m)
        want = np.linalg.solve(a, b)
        ac, bc = a.copy(), b.copy()
        assert lib.pk_solve(m, ptr(ac), ptr(bc)) == 0
        np.testing.assert_allclose(bc, want, rtol=1e-10)
        singular = np.ones((m, m))
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.solve(singular, np.ones(m))
        assert lib.pk_solve(m, ptr(singular.copy()), ptr(np.ones(m))) == -1


# ---- find_oscillation and band_energy_ratio ------------------------------------------------


def _none(v: float) -> float | None:
    return None if math.isnan(v) else v


def _agree(got: float | None, want: float | None, atol: float = 0.0) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return abs(got - want) <= RTOL * max(abs(got), abs(want)) + atol


def test_find_oscillation_matches_numpy_on_every_window(lib: ctypes.CDLL) -> None:
    failures: list[str] = []
    found = in_band = cases = 0
    for t, w, step, band, nyquist, min_amp in [*_cases(11, 1400), *_nvml_cases()]:
        want = find_oscillation(t, w, step, band, nyquist, min_amplitude_watts=min_amp)
        res = Oscillation()
        assert lib.pk_find_oscillation(ptr(t), ptr(w), w.size, step, band[0], band[1], nyquist,
                                       min_amp, ctypes.byref(res)) == 0
        got = (_none(res.hz), res.amplitude, _none(res.energy_ratio), _none(res.in_band_hz))
        ref = (want.hz, want.amplitude_watts, want.band_energy_ratio, want.in_band_hz)
        # a share near zero is compared against the total energy it is a share of
        if not all(_agree(g, r, 1e-15 if i == 2 else 0.0) for i, (g, r) in enumerate(zip(got, ref))):
            failures.append(f"n={w.size} step={step:.4f} band={band} min={min_amp:.2f}: {got} != {ref}")
        cases += 1
        found += want.hz is not None
        in_band += want.in_band_hz is not None
    assert not failures, f"{len(failures)} of {cases} windows differ, e.g.\n" + "\n".join(failures[:10])
    # the windows exercise both outcomes of both searches
    assert cases * 0.15 < found < cases * 0.85, found
    assert cases * 0.1 < in_band < found, in_band


def test_known_rhythms_are_found(lib: ctypes.CDLL) -> None:
    """Beyond agreement: a 1.5 Hz training wave is found at 1.5 Hz, a flat idle window has none."""
    step, n = 0.1, 600
    t = 1_700_000_000.0 + step * np.arange(n)
    square = 300.0 + 200.0 * (np.mod(1.5 * (t - t[0]), 1.0) < 0.4)
    res = Oscillation()
    assert lib.pk_find_oscillation(ptr(t), ptr(square), n, step, 0.1, 3.0, 5.0, 5.0, ctypes.byref(res)) == 0
    assert res.hz == pytest.approx(1.5, abs=0.01) and res.in_band_hz == res.hz
    assert res.amplitude > 50.0
    flat = np.full(n, 61.25)
    assert lib.pk_find_oscillation(ptr(t), ptr(flat), n, step, 0.1, 3.0, 5.0, 0.0, ctypes.byref(res)) == 0
    assert math.isnan(res.hz) and math.isnan(res.in_band_hz) and res.amplitude == 0.0
    # the band beyond what the rate can see: no share at all
    assert lib.pk_find_oscillation(ptr(t), ptr(square), n, step, 6.0, 9.0, 5.0, 0.0, ctypes.byref(res)) == 0
    assert math.isnan(res.energy_ratio)
    assert math.isnan(lib.pk_band_energy_ratio(ptr(square), n, step, 6.0, 9.0, 5.0))


def test_band_energy_ratio_matches_numpy(lib: ctypes.CDLL) -> None:
    failures = []
    for _, w, step, band, nyquist, _ in _cases(12, 600):
        want = band_energy_ratio(w, step, band, nyquist)
        got = _none(lib.pk_band_energy_ratio(ptr(w), w.size, step, band[0], band[1], nyquist))
        if not _agree(got, want, 1e-15):
            failures.append(f"n={w.size} band={band}: {got} != {want}")
    # the rfft of any length through narrow bands, long windows too: powers of two, 2-3-5-smooth
    # lengths, small other primes (7, 11, 13, 31), and lengths with a large prime factor
    # (Bluestein's chirp), odd and even (half an even length prime, or two primes too large)
    rng = np.random.default_rng(5)
    for n in (2, 3, 5, 7, 8, 9, 17, 101, 257, 729, 1009, 1023, 1100, 1334, 1386, 2047, 2048, 3125, 4099,
              5005, 6000, 8191, 8198):
        w = rng.normal(100.0, 10.0, n)
        for low in (0.3, 1.1, 2.2, 4.0):
            want = band_energy_ratio(w, 0.1, (low, low + 0.2), 5.0)
            got = _none(lib.pk_band_energy_ratio(ptr(w), n, 0.1, low, low + 0.2, 5.0))
            if not _agree(got, want, 1e-15):
                failures.append(f"n={n} low={low}: {got} != {want}")
    assert not failures, "\n".join(failures[:10])
