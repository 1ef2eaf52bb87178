"""End to end on the fake backend: sampler -> service -> decision -> applier -> simulated GPUs.

A manual clock drives the fake node, so 30 simulated seconds take well under a second of work
per GPU and every run is the same.
"""

from __future__ import annotations

import time

import pytest

from rasd.backends import open_backend
from rasd.backends.fake.clock import ManualClock
from rasd.power.decide import Mode
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.telemetry.power import PowerSampler

SCENARIO = """
description = "Four GPUs swinging together in 1 s steps, no checkpoints."

[node]
profile = "{profile}"
gpus = 4

[workload]
kind = "training"
step_seconds = 1.0
compute_fraction = 0.6
compute_power_ratio = 1.0
comm_power_ratio = 0.3
checkpoint_every_seconds = 0.0
"""


def drive(clock: ManualClock, sampler: PowerSampler, svc: PowerService, seconds: float):
    """Sample at 20 Hz and tick the service every second, like the daemon does."""
    state = svc.state()
    for k in range(1, int(seconds * 20) + 1):
        clock.advance(0.05)
        sampler.round()
        if k % 20 == 0:
            state = svc.tick(time.time())
    return state


@pytest.mark.parametrize("profile,kind", [("b200", "smoothing"), ("h100-sxm-80gb", "power_limit")])
def test_applying_a_floor_shrinks_the_node_swing(scenario_file, profile: str, kind: str) -> None:
    clock = ManualClock(100.0)
    be = open_backend("fake", scenario_file(SCENARIO.format(profile=profile)), clock=clock)
    try:
        gpus = be.adapter.gpus()
        settings = PowerSettings(window_seconds=10.0, band_low_hz=0.2, allowed_swing_percent=20.0,
                                 energy_budget_percent=60.0, apply=True)
        svc = PowerService(settings, gpus)
        sampler = PowerSampler(gpus, 20.0, svc.add_samples, clock=clock)

        # The first full window: the swing is seen and a floor decided at once.
        before = drive(clock, sampler, svc, 10.0)
        assert before.decision is not None and before.decision.mode is Mode.FLOOR
        assert before.node is not None
        swing_before = before.node.swing_watts
        allowed = before.decision.allowed_swing_watts
        assert swing_before > 2 * allowed
        assert [c.kind for c in before.changes] == [kind] * 4

        # A fresh window entirely under the applied floor (or its power-limit fallback).
        after = drive(clock, sampler, svc, 12.0)
        assert after.node is not None
        assert after.node.swing_watts < 0.5 * swing_before
        assert after.node.swing_watts < 1.2 * allowed
        # Hysteresis keeps the floor although the measured swing now fits.
        assert after.decision is not None and after.decision.mode is Mode.FLOOR
        assert len(after.changes) == 4  # no churn

        svc.close()
        node = be.fake_node
        if kind == "smoothing":
            assert node.smoothing_enabled == [False] * 4
        limits = [g.power_limits().limit_watts for g in gpus]
        assert limits == [node.profile.power_limit_default_watts] * 4
    finally:
        be.close()


def test_applying_ramp_limits_slows_the_node_ramps(scenario_file) -> None:
    clock = ManualClock(100.0)
    be = open_backend("fake", scenario_file(SCENARIO.format(profile="b200")), clock=clock)
    try:
        gpus = be.adapter.gpus()
        settings = PowerSettings(window_seconds=10.0, band_low_hz=0.2, allowed_swing_percent=100.0,
                                 max_ramp_watts_per_second=8000.0, apply=True)
        svc = PowerService(settings, gpus)
        sampler = PowerSampler(gpus, 20.0, svc.add_samples, clock=clock)
        before = drive(clock, sampler, svc, 10.0)
        assert before.decision is not None and before.decision.mode is Mode.RAMP
        assert before.node is not None and before.node.ramp_up_watts_per_second > 1.5 * 8000.0
        d0 = before.decision.gpus[0]
        assert d0.ramp_up_watts_per_second == pytest.approx(2000.0)  # 8000 W/s over 4 equal GPUs
        assert d0.hysteresis_ms == pytest.approx(1.25 * 1000.0 / 0.2)
        assert [c.kind for c in before.changes] == ["smoothing"] * 4
        assert before.changes[0].applied["ramp_up_watts_per_second"] == pytest.approx(2000.0)
        after = drive(clock, sampler, svc, 12.0)
        assert after.node is not None
        assert after.node.ramp_up_watts_per_second <= 8000.0 * 1.05
        assert after.node.ramp_down_watts_per_second <= 8000.0 * 1.05
        svc.close()
        assert be.fake_node.smoothing_enabled == [False] * 4
    finally:
        be.close()


def test_defaults_are_quiet_on_a_healthy_training_node() -> None:
    # The healthy scenario: eight H100s training in step. Its normal swing is far above the old
    # default limit (20 % of the summed limits); with no limit set nothing is decided, the exported
    # allowed swing is 0 and the swing alert (swing > allowed > 0) cannot fire.
    clock = ManualClock(100.0)
    be = open_backend("fake", "healthy", clock=clock)
    try:
        gpus = be.adapter.gpus()
        svc = PowerService(PowerSettings(), gpus)
        sampler = PowerSampler(gpus, 20.0, svc.add_samples, clock=clock)
        state = drive(clock, sampler, svc, 30.0)
    finally:
        be.close()
    assert state.node is not None and state.decision is not None
    assert state.node.swing_watts > 0.2 * 8 * 700.0  # what the old default would have paged on
    assert state.decision.mode is Mode.NONE
    assert state.decision.allowed_swing_watts == 0.0
    assert all(d.allowed_swing_watts == 0.0 for d in state.decision.gpus.values())
    swing_alert = 0 < state.decision.allowed_swing_watts < state.node.swing_watts
    assert not swing_alert
