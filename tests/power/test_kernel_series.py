"""The C power kernel's series side (rasd/power/_kernel.c, _interp.c, _numeric.c's percentiles)
against the NumPy analysis it replaces.

Every window is analysed both ways: analyze_series field by field (percentiles of raw readings
to the bit, values through an FFT or a fit to 1e-9, discrete outcomes equal on every window),
node_sum's grid and total, np.interp sums and percentiles (NaN, ties, one reading) to the bit.
The library is loaded the way rasd.power.kernel loads it: ctypes, from rasd/power/.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

import rasd.power
from rasd.power.analysis import SeriesMetrics, analyze_series, node_sum, reporting
from rasd.power.spectrum import LARGE
from rasd.power.stats import percentile, percentiles
from rasd.power.synthetic import Wave, nvml_trace

LIB_PATH = Path(rasd.power.__file__).parent / f"_kernel{importlib.machinery.EXTENSION_SUFFIXES[0]}"
PK_METRICS = 22
BAND_CODES = {0: None, 1: "below", 2: "in", 3: "above"}
DBL = ctypes.POINTER(ctypes.c_double)


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.pk_version.restype = ctypes.c_int
    lib.pk_analyze.argtypes = [DBL, DBL, ctypes.c_int, ctypes.c_double, ctypes.c_double,
                               ctypes.c_double, ctypes.c_int, DBL]
    lib.pk_analyze.restype = ctypes.c_int
    lib.pk_percentiles.argtypes = [DBL, ctypes.c_int, DBL, ctypes.c_int, DBL]
    lib.pk_percentiles.restype = ctypes.c_int
    lib.pk_ramp_percentile.argtypes = [DBL, DBL, ctypes.c_int, ctypes.c_double]
    lib.pk_ramp_percentile.restype = ctypes.c_double
    rows = ctypes.POINTER(DBL)
    lib.pk_node_grid.argtypes = [ctypes.c_int, rows, rows, ctypes.POINTER(ctypes.c_int), DBL]
    lib.pk_node_grid.restype = ctypes.c_int
    lib.pk_fill_grid.argtypes = [ctypes.c_double, ctypes.c_double, ctypes.c_int, DBL]
    lib.pk_fill_grid.restype = None
    lib.pk_interp_sum.argtypes = [DBL, ctypes.c_int, ctypes.c_int, rows, rows,
                                  ctypes.POINTER(ctypes.c_int), DBL]
    lib.pk_interp_sum.restype = None
    return lib


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    if not LIB_PATH.exists():
        pytest.skip(f"the power kernel is not built ({LIB_PATH.name} missing): `pip install -e .` "
                    "builds it where a C compiler is present")
    return load(LIB_PATH)


def ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(DBL)


def rows_of(arrays: list[np.ndarray]) -> ctypes.Array:  # type: ignore[type-arg]
    return (DBL * len(arrays))(*[ptr(a) for a in arrays])


# ---- the windows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    t: np.ndarray
    w: np.ndarray
    band: tuple[float, float] = (0.1, 3.0)
    min_amplitude: float = 2.0
    uniform: bool = False


@dataclass(frozen=True)
class Shape:
    """A power level over time for nvml_trace (watts of seconds)."""

    fn: Callable[[np.ndarray], np.ndarray]
    noise_watts: float = 3.0

    def value(self, t: np.ndarray) -> np.ndarray:
        return self.fn(t)


def two_dips(t: np.ndarray) -> np.ndarray:
    """A 2 s training step with two communication dips: its strongest line is the harmonic."""
    ph = np.mod(t, 2.0)
    return np.where(((ph >= 0.0) & (ph < 0.35)) | ((ph >= 0.75) & (ph < 1.05)), 250.0, 650.0)


def checkpoints(period: float, dip: float, train_hz: float, offset: float) -> Callable[[np.ndarray], np.ndarray]:
    """Training at train_hz (0: flat) with a near-idle checkpoint of dip seconds every period."""

    def fn(t: np.ndarray) -> np.ndarray:
        level = 450.0 + 150.0 * (np.mod(t * train_hz, 1.0) < 0.5) if train_hz else np.full_like(t, 520.0)
        return np.where(np.mod(t - offset, period) < dip, 100.0, level)

    return fn


def trace(shape: object, seconds: float, seed: int, **kw: float) -> tuple[np.ndarray, np.ndarray]:
    return nvml_trace(shape, seconds, rng=np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


def with_repeats(t: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Readings seen more than once (the poller read an update twice), some with other watts."""
    times = rng.integers(1, 4, t.size)
    t2, w2 = np.repeat(t, times), np.repeat(w, times)
    first = np.concatenate(([True], np.diff(t2) > 0))
    w2 = np.where(first, w2, w2 + rng.normal(0, 5, w2.size) * (rng.random(w2.size) < 0.5))
    return t2, w2


def cases() -> Iterator[Case]:
    rng = np.random.default_rng(20261130)
    seed = iter(range(10_000))
    hz_list = [0.2, 0.27, 0.35, 0.5, 0.8, 1.0, 1.3, 1.9, 2.0, 2.5, 3.0, 3.7, 4.4, 5.0]
    # Training waves (square: compute and communication) and sines, noisy, 30 and 60 s windows.
    for hz in hz_list:
        for shape in ("square", "sine"):
            for noise in (0.0, 4.0, 20.0):
                wave = Wave(hz=hz, swing_watts=float(rng.uniform(60, 600)), base_watts=float(rng.uniform(120, 450)),
                            shape=shape, duty=float(rng.uniform(0.2, 0.8)), noise_watts=noise,
                            phase=float(rng.uniform(0, 6.28)))
                t, w = trace(wave, float(rng.choice([30.0, 60.0])), next(seed))
                yield Case(f"{shape}-{hz}Hz-noise{noise}", t, w, min_amplitude=float(rng.choice([0.0, 2.0])))
    # Other bands: wider, narrow, wholly beyond Nyquist at a slow update rate.
    for band in ((0.1, 3.5), (0.5, 2.0), (1.5, 3.0), (0.05, 8.0)):
        for hz in (0.3, 1.2, 2.6):
            for refresh in (0.1, 0.5):
                t, w = trace(Wave(hz=hz, swing_watts=200.0, shape="square", noise_watts=6.0), 60.0,
                             next(seed), refresh_seconds=refresh)
                yield Case(f"band{band}-{hz}Hz-refresh{refresh}", t, w, band=band)
    # Idle and flat: noise only, and readings that never change.
    for noise in (0.5, 3.0, 12.0):
        t, w = trace(Wave(hz=0.0, swing_watts=0.0, base_watts=float(rng.uniform(60, 420)), noise_watts=noise), 30.0, next(seed))
        yield Case(f"idle-noise{noise}", t, w)
    t, _ = trace(Wave(hz=0.0, swing_watts=0.0), 30.0, next(seed))
    yield Case("constant", t, np.full(t.size, 312.5))
    # A fundamental weaker than its harmonic; checkpoint dips with and without training; a slow sine.
    yield Case("two-dips", *trace(Shape(two_dips), 30.0, next(seed)))
    for period, dip, train_hz, seconds, offset in ((60, 12, 0.7, 30, 10), (60, 12, 0.7, 120, 10), (60, 12, 0.0, 600, 10),
                                                  (20, 4, 1.1, 60, 3), (45, 8, 0.4, 90, 30), (30, 3, 2.2, 30, 20)):
        fn = checkpoints(period, dip, train_hz, offset)
        yield Case(f"checkpoint-{period}s-{dip}s-{train_hz}Hz-{seconds}s", *trace(Shape(fn), seconds, next(seed)))
    yield Case("slow-sine", *trace(Shape(lambda x: 500.0 + 125.0 * np.sin(2 * np.pi * x / 50.0)), 30.0, next(seed)))
    # A job starting, a single pulse, a ramp: not oscillations, still swings and ramps.
    yield Case("step", *trace(Shape(lambda x: np.where(x % 1e6 > 12.0, 650.0, 300.0)), 30.0, next(seed), start=0.0))
    yield Case("pulse", *trace(Shape(lambda x: np.where((x % 1e6 > 11.0) & (x % 1e6 < 19.0), 700.0, 400.0)), 30.0,
                               next(seed), start=0.0))
    yield Case("ramp", *trace(Shape(lambda x: 200.0 + 10.0 * (x % 1e6)), 30.0, next(seed), start=0.0))
    # Few readings: 8 to 20 updates of each kind.
    for count in (8, 9, 10, 12, 15, 20):
        for hz, shape in ((0.0, "sine"), (1.0, "square"), (2.0, "sine"), (0.4, "square")):
            wave = Wave(hz=hz, swing_watts=250.0, shape=shape, noise_watts=5.0, phase=float(rng.uniform(0, 6)))
            t, w = trace(wave, 0.1 * count + 0.05, next(seed))
            yield Case(f"few{count}-{shape}-{hz}Hz", t, w)
    # Jittered update times (a loaded host), and times rounded to the microsecond as NVML stamps them.
    for jitter in (0.01, 0.03, 0.045):
        for hz in (0.6, 1.7, 2.9):
            t, w = trace(Wave(hz=hz, swing_watts=300.0, shape="square", noise_watts=5.0), 45.0, next(seed),
                         jitter_seconds=jitter)
            yield Case(f"jitter{jitter}-{hz}Hz", t, w)
            yield Case(f"jitter{jitter}-{hz}Hz-us", np.round(t * 1e6) / 1e6, w)
    # Repeated timestamps (dropped as _dedup does), down to too few distinct ones.
    for hz in (0.5, 1.4, 2.3):
        t, w = trace(Wave(hz=hz, swing_watts=280.0, shape="square", noise_watts=8.0), 30.0, next(seed))
        yield Case(f"repeats-{hz}Hz", *with_repeats(t, w, rng))
    for count in (7, 8, 9):
        t, w = trace(Wave(hz=1.0, swing_watts=100.0, noise_watts=2.0), 0.1 * count + 0.05, next(seed))
        yield Case(f"repeats-few{count}", *with_repeats(t, w, rng))
    # Long windows (up to 2000 readings).
    for seconds, hz in ((100.0, 0.9), (150.0, 0.25), (200.0, 1.6), (200.0, 4.1)):
        wave = Wave(hz=hz, swing_watts=350.0, shape="square", duty=0.6, noise_watts=10.0)
        yield Case(f"long{seconds}s-{hz}Hz", *trace(wave, seconds, next(seed)))
    # A recording longer than spectrum.LARGE readings: the sine fit is skipped and the folded
    # shape's bin medians are taken bin by bin (the same values as the short path's).
    t, w = trace(Wave(hz=0.9, swing_watts=300.0, shape="square", noise_watts=10.0), 7000.0, next(seed))
    assert t.size > LARGE
    yield Case("large-0.9Hz", t, w)
    # Node sums on their even grid (uniform), from 2 to 8 GPUs with their own update offsets.
    for gpus, hz, shape in ((2, 0.8, "sine"), (4, 1.3, "square"), (8, 2.2, "square"), (4, 0.3, "square"), (3, 0.0, "sine")):
        wave = Wave(hz=hz, swing_watts=250.0, base_watts=200.0, shape=shape, noise_watts=6.0)
        series = {g: trace(wave, 30.0, next(seed), start=1_700_000_000.0 + 0.023 * g) for g in range(gpus)}
        summed = node_sum(series)
        assert summed is not None
        yield Case(f"node{gpus}-{shape}-{hz}Hz", summed[0], summed[1], uniform=True)
    for period, dip, train_hz in ((60, 12, 0.7), (60, 12, 0.0)):
        series = {g: trace(Shape(checkpoints(period, dip, train_hz, 10)), 30.0, next(seed)) for g in range(4)}
        summed = node_sum(series)
        assert summed is not None
        yield Case(f"node-checkpoint-{train_hz}Hz", summed[0], summed[1], uniform=True)


CASES = list(cases())

# Fields read off sorted raw readings where no fit is involved (to the bit whenever no
# oscillation was found), values through an FFT or a fit (1e-9), and discrete outcomes (equal).
WATTS = ("oscillation_amplitude_watts", "swing_watts", "peak_watts", "trough_watts", "mean_watts",
         "ramp_up_watts_per_second", "ramp_down_watts_per_second", "steady_peak_watts", "steady_trough_watts")
EXACT = ("samples", "duration_seconds", "sample_rate_hz", "nyquist_hz", "band_low_hz", "band_high_hz",
         "band_beyond_nyquist", "oscillation_band", "steady_ratio", "mean_watts",
         "ramp_up_watts_per_second", "ramp_down_watts_per_second")
RAW_PERCENTILES = ("swing_watts", "peak_watts", "trough_watts", "steady_peak_watts", "steady_trough_watts")


def c_analyze(lib: ctypes.CDLL, case: Case) -> dict[str, object] | None:
    t = np.ascontiguousarray(case.t, dtype=float)
    w = np.ascontiguousarray(case.w, dtype=float)
    out = np.full(PK_METRICS, -12345.0)
    rc = lib.pk_analyze(ptr(t), ptr(w), t.size, case.band[0], case.band[1], case.min_amplitude,
                        int(case.uniform), ptr(out))
    assert rc in (0, 1), f"{case.name}: pk_analyze returned {rc}"
    if rc == 0:
        return None
    values: list[object] = [None if math.isnan(v) else float(v) for v in out]
    names = list(SeriesMetrics.__slots__)
    assert len(names) == PK_METRICS
    got = dict(zip(names, values))
    got["samples"] = int(out[0])
    got["band_beyond_nyquist"] = bool(out[6])
    got["oscillation_band"] = BAND_CODES[int(out[16])]
    return got


def differences(case: Case, want: SeriesMetrics | None, got: dict[str, object] | None) -> list[str]:
    if want is None or got is None:
        return [] if want is got else [f"{case.name}: NumPy {want!r}, C {got!r}"]
    scale = float(np.max(np.abs(case.w))) or 1.0
    exact = set(EXACT) | (set(RAW_PERCENTILES) if want.oscillation_hz is None else set())
    bad = []
    for name in SeriesMetrics.__slots__:
        a, b = getattr(want, name), got[name]
        if a is None or b is None or isinstance(a, (bool, str)):
            if a != b:
                bad.append(f"{case.name}: {name} NumPy {a!r}, C {b!r}")
            continue
        if name in exact:
            ok = float(a) == float(b)  # type: ignore[arg-type]
        else:
            floor = 1e-9 * scale if name in WATTS else 1e-12
            ok = math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=floor)  # type: ignore[arg-type]
        if not ok:
            bad.append(f"{case.name}: {name} NumPy {a!r}, C {b!r}")
    return bad


def test_version(lib: ctypes.CDLL) -> None:
    assert lib.pk_version() == 1


def test_analyze_series_on_every_window(lib: ctypes.CDLL) -> None:
    bad: list[str] = []
    analysed = oscillating = 0
    for case in CASES:
        want = analyze_series(case.t, case.w, case.band, min_amplitude_watts=case.min_amplitude, uniform=case.uniform)
        got = c_analyze(lib, case)
        bad += differences(case, want, got)
        analysed += want is not None
        oscillating += want is not None and want.oscillation_hz is not None
    assert not bad, "\n".join(bad[:40])
    # The windows exercise both outcomes of each branch, not one of them only.
    assert len(CASES) - analysed >= 1 and oscillating >= len(CASES) // 2 and analysed - oscillating >= 8


def test_not_analysable(lib: ctypes.CDLL) -> None:
    out = np.zeros(PK_METRICS)
    for t in (np.arange(7.0), np.full(9, 5.0), np.repeat(np.arange(4.0), 3), np.array([0.0, 1, 2, 3, 4, 5, 6, 6, 6])):
        w = np.linspace(100.0, 200.0, t.size)
        assert analyze_series(t, w, (0.1, 3.0)) is None
        assert lib.pk_analyze(ptr(t), ptr(w), t.size, 0.1, 3.0, 0.0, 0, ptr(out)) == 0


def test_percentiles_to_the_bit(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(7)
    qs = np.array([0.0, 1.0, 5.0, 25.0, 33.3, 50.0, 66.6, 95.0, 99.0, 99.9, 100.0])
    arrays = [rng.normal(400, 80, n) for n in (1, 2, 3, 4, 5, 7, 8, 10, 33, 100, 301, 1000, 4097)]
    arrays += [np.round(rng.normal(400, 80, n) / 25) * 25 for n in (5, 50, 500)]  # ties
    arrays += [np.full(n, 17.25) for n in (1, 6, 99)]
    arrays += [np.sort(rng.uniform(0, 1, 200)), np.sort(rng.uniform(0, 1, 200))[::-1].copy()]
    arrays += [np.array([1e308, -1e308, 1e308, 0.0]), np.array([-0.0, 0.0, 3.0, -2.0])]
    for n in (1, 2, 9, 300):
        a = rng.normal(0, 1, n)
        a[rng.integers(0, n)] = np.nan
        arrays.append(a)
    out = np.zeros(qs.size)
    for a in arrays:
        assert lib.pk_percentiles(ptr(a), a.size, ptr(qs), qs.size, ptr(out)) == 0
        want = np.array(percentiles(a, qs))
        assert want.tobytes() == out.tobytes(), (a.size, want, out)
        # and one q at a time, as the live code asks
        one = np.zeros(1)
        for q in qs:
            lib.pk_percentiles(ptr(a), a.size, ptr(np.array([q])), 1, ptr(one))
            assert np.array_equal(one, [percentile(a, q)], equal_nan=True)


def test_ramp_percentile_to_the_bit(lib: ctypes.CDLL) -> None:
    for seed, n in enumerate((2, 3, 8, 300, 1200)):
        t, w = trace(Wave(hz=0.7, swing_watts=300.0, shape="square", noise_watts=4.0), 0.1 * n + 0.05, seed)
        t, w = t[:n], w[:n]
        for q in (50.0, 95.0, 100.0):
            want = percentile(np.abs(np.diff(w)) / np.diff(t), q)
            assert lib.pk_ramp_percentile(ptr(t), ptr(w), t.size, q) == want


def node_series(rng: np.random.Generator, gpus: int, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """GPUs with their own rates, offsets and jitter; now and then one that joined a moment ago
    (the span all of them cover is then too short for a node sum)."""
    series = {}
    seconds = float(rng.uniform(3.0, 40.0))
    late = int(rng.integers(0, gpus)) if rng.random() < 0.3 else -1
    for g in range(gpus):
        refresh = float(rng.choice([0.1, 0.1, 0.1, 0.12, 0.2]))
        offset = float(rng.uniform(0, 2.0))
        length = seconds - offset
        if g == late:
            offset = seconds - float(rng.uniform(0.8, 1.6))
            length = float(rng.uniform(0.85, 1.8))
        wave = Wave(hz=float(rng.uniform(0.2, 3.0)), swing_watts=200.0, shape="square", noise_watts=5.0)
        series[g] = trace(wave, length, seed * 16 + g, refresh_seconds=refresh, start=1_700_000_000.0 + offset,
                          jitter_seconds=float(rng.uniform(0.0, 0.02)))
    return series


def test_node_grid_and_sum_match_node_sum(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(11)
    grids = nones = 0
    for seed in range(80):
        series = node_series(rng, int(rng.integers(1, 9)), seed)
        live = reporting(series)
        want = node_sum(series)
        ts = [np.ascontiguousarray(series[g][0]) for g in live]
        ws = [np.ascontiguousarray(series[g][1]) for g in live]
        counts = (ctypes.c_int * len(live))(*[a.size for a in ts])
        grid = np.zeros(2)
        count = lib.pk_node_grid(len(live), rows_of(ts), rows_of(ws), counts, ptr(grid))
        if want is None:
            assert count == 0, seed
            nones += 1
            continue
        grids += 1
        assert count == want[0].size, seed
        points = np.zeros(count)
        lib.pk_fill_grid(grid[0], grid[1], count, ptr(points))
        assert points.tobytes() == want[0].tobytes(), seed
        total = np.zeros(count)
        lib.pk_interp_sum(ptr(points), count, len(live), rows_of(ts), rows_of(ws), counts, ptr(total))
        assert total.tobytes() == want[1].tobytes(), seed
    assert grids >= 20 and nones >= 3


def test_interp_sum_is_np_interp_summed(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(5)
    for seed in range(40):
        k = int(rng.integers(1, 9))
        rows_t, rows_w = [], []
        for _ in range(k):
            n = int(rng.choice([1, 2, 3, 4, 5, 6, 40]))
            t = np.sort(rng.uniform(0, 10, n))
            if n > 3 and seed % 3 == 0:  # repeated times, as the daemon's padded rows have
                t[1] = t[0]
                t[-1] = t[-2]
            rows_t.append(t)
            rows_w.append(rng.normal(300, 50, n))
        points = np.sort(rng.uniform(-1, 11, int(rng.integers(1, 50))))
        points = np.concatenate((points, rows_t[0][:2]))  # points exactly on readings
        if seed % 5 == 0:
            points[0] = np.nan
        want = np.zeros(points.size)
        for t, w in zip(rows_t, rows_w):
            want += np.interp(points, t, w)
        out = np.zeros(points.size)
        counts = (ctypes.c_int * k)(*[t.size for t in rows_t])
        lib.pk_interp_sum(ptr(points), points.size, k, rows_of(rows_t), rows_of(rows_w), counts, ptr(out))
        assert np.array_equal(out, want, equal_nan=True), seed
        assert out.tobytes() == want.tobytes(), seed
