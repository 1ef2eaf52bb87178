"""Smoothing decisions: none, floor, ramp, cap, and their hysteresis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rasd.power.analysis import analyze_window
from rasd.model import PowerLimits
from rasd.power.decide import Mode, decide
from rasd.power.settings import PowerSettings
from rasd.power.synthetic import Wave, nvml_trace

LIMITS = {g: PowerLimits(700.0, 200.0, 700.0) for g in range(4)}


def P(**kw) -> PowerSettings:
    """Settings with a 20 % swing limit (no limit is the default)."""
    return PowerSettings(**{"allowed_swing_percent": 20.0, **kw})


def window(wave: Wave, gpus: int = 4, seconds: float = 30.0, start: float = 1_700_000_000.0):
    series = {g: nvml_trace(wave, seconds, start=start, rng=np.random.default_rng(g)) for g in range(gpus)}
    return series, {g: w for g, (_, w) in series.items()}


def run(wave: Wave, settings: PowerSettings, previous=None, now: float = 100.0):
    series, readings = window(wave)
    analysis = analyze_window(series, (settings.band_low_hz, settings.band_high_hz), min_amplitude_watts=2.0)
    return decide(analysis, LIMITS, settings, now, previous, readings)


SWINGING = Wave(hz=0.7, swing_watts=300.0, base_watts=300.0, shape="square", noise_watts=4.0)
QUIET = Wave(hz=0.7, swing_watts=60.0, base_watts=500.0, shape="square", noise_watts=4.0)


def test_none_within_limits() -> None:
    d = run(QUIET, P())
    assert d.mode is Mode.NONE
    assert all(g.mode is Mode.NONE and g.floor_watts is None for g in d.gpus.values())
    assert d.allowed_swing_watts == pytest.approx(0.2 * 2800.0)


def test_floor_fits_the_swing_and_estimates_its_energy() -> None:
    d = run(SWINGING, P(energy_budget_percent=30.0))
    assert d.mode is Mode.FLOOR
    for g in d.gpus.values():
        assert g.mode is Mode.FLOOR
        share = 140.0  # 20 % of 2800 W over 4 equal GPUs
        assert g.allowed_swing_watts == pytest.approx(share)
        assert g.floor_watts == pytest.approx(600.0 - share, rel=0.03)
        assert g.floor_percent == pytest.approx(100.0 * g.floor_watts / 700.0)
        # Square wave, half the time at 300 W: lifting it to ~460 W costs ~80 W of a 450 W mean.
        assert g.energy_overhead_ratio == pytest.approx(80.0 / 450.0, rel=0.10)
        assert g.target_limit_watts == pytest.approx(300.0 + share, rel=0.03)  # fallback cap
    assert d.energy_overhead_ratio == pytest.approx(80.0 / 450.0, rel=0.10)


def test_cap_when_the_floor_costs_more_than_the_energy_budget() -> None:
    d = run(SWINGING, P(energy_budget_percent=10.0))
    assert d.mode is Mode.CAP
    assert "energy" in d.reason
    for g in d.gpus.values():
        assert g.mode is Mode.CAP
        assert g.target_limit_watts == pytest.approx(440.0, rel=0.03)
        assert 200.0 <= g.target_limit_watts <= 700.0
        assert g.clipped_energy_ratio == pytest.approx(80.0 / 450.0, rel=0.10)


def test_cap_when_the_node_budget_is_exceeded() -> None:
    d = run(SWINGING, P(energy_budget_percent=50.0, node_budget_watts=2000.0))
    assert d.mode is Mode.CAP
    assert "budget" in d.reason


def test_cap_never_goes_below_the_device_minimum() -> None:
    low = Wave(hz=0.7, swing_watts=300.0, base_watts=50.0, shape="square", noise_watts=2.0)
    d = run(low, P(energy_budget_percent=1.0))
    assert d.mode is Mode.CAP
    assert all(g.target_limit_watts >= 200.0 for g in d.gpus.values())


def test_ramp_when_the_swing_fits_but_ramps_too_fast() -> None:
    sine = Wave(hz=1.0, swing_watts=200.0, base_watts=400.0, noise_watts=1.0)
    s = P(allowed_swing_percent=100.0, max_ramp_watts_per_second=800.0)
    d = run(sine, s)
    assert d.mode is Mode.RAMP
    for g in d.gpus.values():
        assert g.ramp_up_watts_per_second == pytest.approx(200.0)  # 800 W/s shared by 4 equal GPUs
        assert g.ramp_down_watts_per_second == pytest.approx(200.0)
        # Longer than one period at the band's low end (0.1 Hz -> 10 s).
        assert g.hysteresis_ms > 1000.0 / s.band_low_hz


def test_milder_mode_waits_for_the_hysteresis() -> None:
    s = P(energy_budget_percent=30.0, hysteresis_seconds=60.0)
    first = run(SWINGING, s, now=100.0)
    assert first.mode is Mode.FLOOR
    held = run(QUIET, s, previous=first, now=130.0)
    assert held.mode is Mode.FLOOR and "hysteresis" in held.reason
    assert held.since_wall == 100.0
    still = run(QUIET, s, previous=held, now=189.0)
    assert still.mode is Mode.FLOOR
    relaxed = run(QUIET, s, previous=still, now=191.0)
    assert relaxed.mode is Mode.NONE
    assert relaxed.since_wall == 191.0


def test_a_returning_violation_resets_the_hold() -> None:
    s = P(energy_budget_percent=30.0, hysteresis_seconds=60.0)
    d = run(SWINGING, s, now=100.0)
    d = run(QUIET, s, previous=d, now=120.0)
    d = run(SWINGING, s, previous=d, now=140.0)
    assert d.mode is Mode.FLOOR and d.relax_since_wall is None
    d = run(QUIET, s, previous=d, now=170.0)
    d = run(QUIET, s, previous=d, now=200.0)
    assert d.mode is Mode.FLOOR  # only 30 s quiet since the swing came back


def test_no_flapping_around_the_allowed_swing() -> None:
    # Swings just above and just below the allowed 560 W node swing (140 W per GPU): once taken,
    # the floor stays, because relaxing needs the swing below (100 - margin)% of the limit.
    s = P(energy_budget_percent=30.0, hysteresis_seconds=0.0)
    above = Wave(hz=0.7, swing_watts=150.0, base_watts=400.0, shape="square", noise_watts=1.0)
    below = Wave(hz=0.7, swing_watts=133.0, base_watts=400.0, shape="square", noise_watts=1.0)
    d = run(above, s, now=0.0)
    assert d.mode is Mode.FLOOR
    modes = []
    for k in range(1, 7):
        d = run(below if k % 2 else above, s, previous=d, now=float(k))
        modes.append(d.mode)
    assert modes == [Mode.FLOOR] * 6


def test_small_moves_of_the_floor_are_ignored() -> None:
    s = P(energy_budget_percent=30.0, deadband_percent=2.0)
    d1 = run(SWINGING, s, now=0.0)
    nudged = dataclasses.replace(SWINGING, swing_watts=305.0)  # 5 W higher peak: < 14 W deadband
    d2 = run(nudged, s, previous=d1, now=1.0)
    for g in d2.gpus:
        assert d2.gpus[g].floor_watts == d1.gpus[g].floor_watts
    moved = dataclasses.replace(SWINGING, swing_watts=340.0)
    d3 = run(moved, s, previous=d2, now=2.0)
    assert all(d3.gpus[g].floor_watts > d1.gpus[g].floor_watts + 14.0 for g in d3.gpus)


def test_shares_follow_power_limits() -> None:
    limits = {0: PowerLimits(1000.0, 200.0, 1000.0), 1: PowerLimits(500.0, 200.0, 500.0)}
    series, readings = window(SWINGING, gpus=2)
    analysis = analyze_window(series, (0.1, 3.0))
    d = decide(analysis, limits, PowerSettings(allowed_swing_watts=300.0), 0.0, None, readings)
    assert d.gpus[0].allowed_swing_watts == pytest.approx(200.0)
    assert d.gpus[1].allowed_swing_watts == pytest.approx(100.0)


def test_no_samples_no_decision() -> None:
    analysis = analyze_window({}, (0.1, 3.0))
    d = decide(analysis, LIMITS, PowerSettings(), 5.0)
    assert d.mode is Mode.NONE and "not enough readings" in d.reason


def test_settings_validation_names_each_problem() -> None:
    bad = PowerSettings(band_low_hz=3.0, band_high_hz=1.0, margin_percent=150.0,
                        budget_lower_percent=97.0, allowed_swing_watts=-1.0)
    problems = bad.validate()
    keys = {p.split(":")[0] for p in problems}
    assert {"band_low_hz, band_high_hz", "margin_percent", "budget_lower_percent, budget_upper_percent",
            "allowed_swing_watts"} <= keys
    assert PowerSettings().validate() == []


def test_a_swing_returning_after_relaxing_doubles_the_next_hold() -> None:
    s = P(energy_budget_percent=30.0, hysteresis_seconds=60.0)
    d = run(SWINGING, s, now=0.0)
    d = run(QUIET, s, previous=d, now=10.0)
    d = run(QUIET, s, previous=d, now=71.0)
    assert d.mode is Mode.NONE and d.relapses == 0
    d = run(SWINGING, s, previous=d, now=90.0)  # back 19 s after relaxing: a relapse
    assert d.mode is Mode.FLOOR and d.relapses == 1
    d = run(QUIET, s, previous=d, now=100.0)
    d = run(QUIET, s, previous=d, now=161.0)
    assert d.mode is Mode.FLOOR and "120 s" in d.reason  # the hold is now 2 x 60 s
    d = run(QUIET, s, previous=d, now=221.0)
    assert d.mode is Mode.NONE
    # A long calm period forgets the relapse.
    d = run(QUIET, s, previous=d, now=221.0 + 8 * 60.0 + 1.0)
    d = run(SWINGING, s, previous=d, now=221.0 + 8 * 60.0 + 2.0)
    assert d.mode is Mode.FLOOR and d.relapses == 0
