"""The daemon's live analysis in C (rasd.power.kernel through rasd.power.window) against the NumPy
analysis it stands in for: the same figures window by window, and the same decisions tick by tick
from the power service. The C's own functions are compared one by one in test_kernel_*.py; these
tests take the whole path the daemon takes, and the fallback where the kernel is not built."""

from __future__ import annotations

import dataclasses
import math
from array import array
from typing import Iterator

import numpy as np
import pytest

from rasd.model import PowerSample
from rasd.power import kernel, window
from rasd.power.analysis import analyze_window, node_sum
from rasd.power.metrics import SeriesMetrics
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.power.stats import percentiles
from rasd.power.synthetic import Wave, nvml_trace
from tests.power.test_service import Gpu, stream
from tests.power.test_service_turns import WALL, training  # noqa: F401 - a fixture

BAND = (0.1, 3.0)
needs_kernel = pytest.mark.skipif(
    kernel.active is None, reason="the power kernel is not built (pip install -e . builds rasd/power/_kernel)")


@pytest.fixture
def numpy_only() -> Iterator[None]:
    old = kernel.use(None)
    try:
        yield
    finally:
        kernel.use(old)


def _close(a: SeriesMetrics | None, b: SeriesMetrics | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if a is None or b is None:
        return
    for f in dataclasses.fields(SeriesMetrics):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float) and isinstance(y, float):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), f"{what}: {f.name} C {x!r}, NumPy {y!r}"
        else:
            assert x == y, f"{what}: {f.name} C {x!r}, NumPy {y!r}"


def _windows() -> Iterator[tuple[str, dict[int, tuple[np.ndarray, np.ndarray]]]]:
    """Windows of 1-8 GPUs: training-like square waves, sines, steady noise, checkpoint-like dips
    below the band, a GPU that stopped reporting, and too few readings."""
    rng = np.random.default_rng(11)
    for k in range(40):
        gpus = int(rng.integers(1, 9))
        shape = ("square", "sine", "flat")[k % 3]
        hz = float(rng.uniform(0.15, 2.5))
        out = {}
        for g in range(gpus):
            wave = Wave(hz=0.0 if shape == "flat" else hz, swing_watts=0.0 if shape == "flat" else float(rng.uniform(20, 400)),
                        base_watts=float(rng.uniform(150, 500)), shape="sine" if shape == "flat" else shape,
                        noise_watts=float(rng.uniform(0.5, 20)))
            out[g] = nvml_trace(wave, float(rng.uniform(2.0, 40.0)), start=100.0, rng=rng)
        if k % 5 == 4 and gpus > 1:  # a GPU that stopped reporting 5 s before the others
            t, w = out[0]
            out[0] = (t[t < t[-1] - 5.0], w[t < t[-1] - 5.0])
        if k % 7 == 6:  # a checkpoint every 20 s drops the node to near idle for 4 s
            for g, (t, w) in out.items():
                out[g] = (t, np.where((t - t[0]) % 20.0 < 4.0, 80.0, w))
        yield f"window {k} ({gpus} GPUs, {shape} {hz:.2f} Hz)", out


def _live(series: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, tuple[array, array]]:
    return {g: (array("d", t), array("d", w)) for g, (t, w) in series.items()}


@needs_kernel
def test_every_windows_figures_are_numpys() -> None:
    found = 0
    for what, series in _windows():
        ours = window.analyze_window(_live(series), BAND, min_amplitude_watts=2.0)
        want = analyze_window(series, BAND, min_amplitude_watts=2.0)
        assert ours.gpus.keys() == want.gpus.keys() and ours.node_gpus == want.node_gpus, what
        for g in want.gpus:
            _close(ours.gpus[g], want.gpus[g], f"{what}, GPU {g}")
        _close(ours.node, want.node, f"{what}, node")
        assert (ours.node_series is None) == (want.node_series is None), what
        if ours.node_series is not None and want.node_series is not None:
            for a, b in zip(ours.node_series, want.node_series):
                np.testing.assert_allclose(np.frombuffer(a, float), b, rtol=1e-12, err_msg=what)
        found += sum(m.oscillation_hz is not None for m in want.gpus.values())
    assert found > 20  # the windows hold rhythms to find, not noise alone


def test_the_node_is_the_gpus_found_reporting_summed_as_they_are() -> None:
    # A GPU that stopped with a long update interval widens the slack of "still reporting": asked
    # again over the GPUs found reporting, it narrows, and the node summed fewer GPUs than it named.
    def gpu(step: float, seconds: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
        t = 1.8e9 + np.arange(0.0, seconds, step)
        return t, 300.0 + 100.0 * np.sign(np.sin(2 * np.pi * 1.5 * (t - 1.8e9) + phase))

    series = {0: gpu(0.1, 30.0, 0.0), 1: gpu(0.1, 27.0, 1.0), 2: gpu(0.5, 24.0, 2.0)}
    want = analyze_window(series, BAND)
    assert want.node_gpus == (0, 1) and want.node is not None
    assert want.node.mean_watts == pytest.approx(600.0, rel=0.01)  # both GPUs named are summed
    if kernel.active is not None:
        ours = window.analyze_window(_live(series), BAND)
        assert ours.node_gpus == want.node_gpus
        _close(ours.node, want.node, "node")


@needs_kernel
def test_node_sum_percentiles_and_ramps_are_numpys() -> None:
    for what, series in _windows():
        ours, want = window.node_sum(_live(series)), node_sum(series)
        assert (ours is None) == (want is None), what
        for t, w in series.values():
            if not t.size:  # the GPU that stopped may have no readings left: no percentiles either way
                continue
            qs = (1.0, 50.0, 95.0, 99.0)
            assert window.percentiles(array("d", w), qs) == percentiles(w, qs), what  # to the bit
            if t.size > 1:
                ramps = np.abs(np.diff(w)) / np.diff(t)
                assert window.ramp_percentile(array("d", t), array("d", w), 95.0) == percentiles(ramps, (95.0,))[0]


def _decisions(samples: list[list[PowerSample]], settings: PowerSettings, gpus: int) -> list[object]:
    svc = PowerService(settings, [Gpu(g) for g in range(gpus)], clock=lambda: WALL)
    out = []
    for k, batch in enumerate(samples):
        svc.add_samples(batch)
        state = svc.tick(WALL + k)
        assert state.tick_failures_total == 0
        out.append((state.decision, state.budget, sorted(state.gpus)))
    return out


def _per_second(rows: list[PowerSample]) -> list[list[PowerSample]]:
    first = rows[0].nvml_timestamp_us
    out: list[list[PowerSample]] = []
    for s in rows:
        k = int((s.nvml_timestamp_us - first) // 1_000_000)
        while len(out) <= k:
            out.append([])
        out[k].append(s)
    return out


@needs_kernel
@pytest.mark.parametrize("settings", [
    PowerSettings(),
    PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0),
    PowerSettings(max_ramp_watts_per_second=500.0, node_budget_watts=2000.0),
], ids=["defaults", "swing limit", "ramp and budget"])
def test_the_service_decides_in_c_as_in_numpy(training, settings: PowerSettings) -> None:  # noqa: F811
    swing = _per_second(stream(20.0, 40.0))
    for samples, gpus in ((training, 8), (swing, 4)):
        ours = _decisions(samples, settings, gpus)
        old = kernel.use(None)
        try:
            want = _decisions(samples, settings, gpus)
        finally:
            kernel.use(old)
        for k, (a, b) in enumerate(zip(ours, want)):
            assert a[2] == b[2], f"second {k}"
            assert (a[0] is None) == (b[0] is None) and (a[0] is None or a[0].mode == b[0].mode), f"second {k}"


def test_without_the_kernel_the_service_analyses_with_numpy(numpy_only) -> None:
    svc = PowerService(PowerSettings(allowed_swing_percent=20.0), [Gpu(g) for g in range(4)], clock=lambda: WALL)
    for k, batch in enumerate(_per_second(stream(10.0, 30.0))):
        svc.add_samples(batch)
        state = svc.tick(WALL + k)
    assert state.tick_failures_total == 0 and state.node is not None
    assert state.node.oscillation_hz == pytest.approx(0.5, rel=0.05)  # the swing's square wave
    assert state.decision is not None and state.decision.mode.label != "none"


@needs_kernel
def test_the_kernel_refuses_what_it_cannot_take_and_answers_nan_as_numpy() -> None:
    k = kernel.active
    assert k is not None
    with pytest.raises(TypeError, match="array\\('d'\\)"):
        k.percentiles(array("f", [1.0, 2.0, 3.0]), (50.0,))  # would be read as doubles: garbage
    with pytest.raises(ValueError, match="percentile"):
        k.percentiles(array("d", [1.0, 2.0]), (float("nan"),))
    with pytest.raises(ValueError, match="non-finite"):
        k.analyze(array("d", range(10)), array("d", range(10)), (float("nan"), 3.0), 0.0)
    # a NaN reading or a repeated time gives NaN, as NumPy does: not a failure to allocate
    assert math.isnan(k.ramp_percentile(array("d", [0, 1, 2, 3]), array("d", [1, math.nan, 3, 4]), 95.0))
    assert math.isnan(k.ramp_percentile(array("d", [0, 1, 1, 3]), array("d", [1, 2, 2, 4]), 95.0))
    # a series is held while a call reads it: another thread cannot resize it underneath
    t = array("d", range(10))
    held = kernel._at(t)
    with pytest.raises(BufferError):
        t.append(10.0)
    del held
    t.append(10.0)
