"""Analysis on synthetic traces sampled the way NVML reports instant power."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasd.power.analysis import analyze_series, analyze_window, node_sum, samples_to_series
from rasd.power.synthetic import Wave, nvml_trace, to_samples

BAND = (0.1, 3.0)


@pytest.mark.parametrize("hz", [0.2, 0.35, 0.8, 1.3, 1.9, 2.6, 3.0])
@pytest.mark.parametrize("shape", ["sine", "square"])
def test_frequency_and_swing_within_tolerance(hz: float, shape: str) -> None:
    wave = Wave(hz=hz, swing_watts=300.0, base_watts=300.0, shape=shape, noise_watts=8.0, phase=0.7)
    t, w = nvml_trace(wave, 30.0, rng=np.random.default_rng(int(hz * 100)))
    # The band reaches a little past 3 Hz so a 3 Hz tone's spectral leakage stays inside it.
    m = analyze_series(t, w, (0.1, 3.5))
    assert m is not None
    assert m.oscillation_hz == pytest.approx(hz, rel=0.05)
    assert m.swing_watts == pytest.approx(300.0, rel=0.10)
    assert m.sample_rate_hz == pytest.approx(10.0, rel=0.02)
    assert m.band_energy_ratio is not None and m.band_energy_ratio > 0.7


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    hz=st.floats(0.2, 3.0),
    swing=st.floats(80.0, 600.0),
    noise_share=st.floats(0.0, 0.03),
    phase=st.floats(0.0, 6.28),
    seed=st.integers(0, 2**16),
)
def test_frequency_property(hz: float, swing: float, noise_share: float, phase: float, seed: int) -> None:
    wave = Wave(hz=hz, swing_watts=swing, base_watts=250.0, noise_watts=noise_share * swing, phase=phase)
    t, w = nvml_trace(wave, 30.0, rng=np.random.default_rng(seed))
    m = analyze_series(t, w, BAND)
    assert m is not None and m.oscillation_hz is not None
    assert abs(m.oscillation_hz - hz) <= 0.05 * hz
    # A sine sampled at 10 Hz near a rational ratio may never be read at its crest: allow for it
    # only through the sampling itself (the raw readings' own range bounds what can be seen).
    seen = float(np.max(w) - np.min(w))
    assert m.swing_watts <= 1.10 * swing + 1.0
    assert m.swing_watts >= 0.90 * min(swing, seen) - 1.0


@pytest.mark.parametrize("seed", range(6))
def test_flat_noisy_trace_reports_no_oscillation(seed: int) -> None:
    t, w = nvml_trace(Wave(hz=0.0, swing_watts=0.0, base_watts=420.0, noise_watts=12.0), 30.0,
                      rng=np.random.default_rng(seed))
    m = analyze_series(t, w, BAND, min_amplitude_watts=2.0)
    assert m is not None
    assert m.oscillation_hz is None
    assert m.oscillation_amplitude_watts == 0.0
    assert m.swing_watts < 80.0  # about +-2.3 sigma of the noise, nothing more


def test_ramp_rates_of_a_sine() -> None:
    hz, swing = 0.5, 400.0
    t, w = nvml_trace(Wave(hz=hz, swing_watts=swing), 30.0)
    m = analyze_series(t, w, BAND)
    assert m is not None
    peak_slope = np.pi * hz * swing  # d/dt of (swing/2) sin(2 pi f t)
    assert m.ramp_up_watts_per_second == pytest.approx(peak_slope, rel=0.05)
    assert m.ramp_down_watts_per_second == pytest.approx(peak_slope, rel=0.05)


def test_band_beyond_nyquist_is_flagged_not_analysed() -> None:
    # A 2 Hz update rate sees up to 1 Hz: a 0.1-3 Hz band is flagged and its energy is measured
    # only up to 1 Hz; a band wholly above Nyquist has no energy figure at all.
    t, w = nvml_trace(Wave(hz=0.3, swing_watts=200.0), 60.0, refresh_seconds=0.5)
    m = analyze_series(t, w, BAND)
    assert m is not None
    assert m.nyquist_hz == pytest.approx(1.0, rel=0.02)
    assert m.band_beyond_nyquist
    assert m.oscillation_hz == pytest.approx(0.3, rel=0.05)
    high = analyze_series(t, w, (1.5, 3.0))
    assert high is not None and high.band_beyond_nyquist and high.band_energy_ratio is None


def test_band_energy_ratio_separates_in_and_out_of_band() -> None:
    t, w = nvml_trace(Wave(hz=4.0, swing_watts=200.0, phase=0.3), 30.0)
    out_of_band = analyze_series(t, w, (0.1, 2.5))
    assert out_of_band is not None
    assert out_of_band.oscillation_hz == pytest.approx(4.0, rel=0.05)
    assert out_of_band.band_energy_ratio < 0.05
    t, w = nvml_trace(Wave(hz=1.0, swing_watts=200.0), 30.0)
    in_band = analyze_series(t, w, (0.1, 2.5))
    assert in_band is not None and in_band.band_energy_ratio > 0.95


def test_too_few_samples_gives_nothing() -> None:
    assert analyze_series(np.arange(5.0), np.ones(5), BAND) is None


def test_node_sum_aligns_gpus_with_different_timestamps() -> None:
    # Four GPUs in phase, each refreshing at its own offset: the node sum swings 4x one GPU.
    series = {}
    for g in range(4):
        t, w = nvml_trace(Wave(hz=0.8, swing_watts=250.0, base_watts=200.0), 30.0,
                          start=1_700_000_000.0 + 0.023 * g, rng=np.random.default_rng(g))
        series[g] = (t, w)
    summed = node_sum(series)
    assert summed is not None
    grid, total = summed
    assert np.all(np.diff(grid) > 0)
    assert grid[0] >= max(t[0] for t, _ in series.values())
    analysis = analyze_window(series, BAND)
    assert set(analysis.gpus) == {0, 1, 2, 3}
    assert analysis.node is not None
    assert analysis.node.oscillation_hz == pytest.approx(0.8, rel=0.05)
    assert analysis.node.swing_watts == pytest.approx(1000.0, rel=0.10)
    assert analysis.node.mean_watts == pytest.approx(4 * 325.0, rel=0.03)


def test_node_of_opposite_phases_cancels() -> None:
    a = nvml_trace(Wave(hz=1.0, swing_watts=300.0, phase=0.0), 30.0)
    b = nvml_trace(Wave(hz=1.0, swing_watts=300.0, phase=np.pi), 30.0)
    analysis = analyze_window({0: a, 1: b}, BAND, min_amplitude_watts=2.0)
    assert analysis.gpus[0].swing_watts > 250.0
    assert analysis.node is not None and analysis.node.swing_watts < 60.0


def test_samples_to_series_orders_and_uses_nvml_timestamps() -> None:
    t, w = nvml_trace(Wave(hz=1.0, swing_watts=100.0), 3.0)
    samples = to_samples(2, t, w)[::-1]
    series = samples_to_series(samples)
    ts, ws = series[2]
    assert np.all(np.diff(ts) > 0)
    assert ws[0] == pytest.approx(w[0])


def test_swing_at_exactly_a_fifth_of_the_sample_rate() -> None:
    # Five readings a period, the same five phases every period: the crest is never read; the
    # sinusoid fitted over all phases still gives the swing.
    wave = Wave(hz=2.0, swing_watts=129.0, base_watts=250.0, noise_watts=0.015625 * 129.0, phase=6.0)
    t, w = nvml_trace(wave, 30.0, rng=np.random.default_rng(7430))
    m = analyze_series(t, w, BAND)
    assert m is not None and m.swing_watts >= 0.90 * 129.0
