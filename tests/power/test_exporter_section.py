"""exporters/sections/power.py over a snapshot with a power state."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.sections import power as section
from rasd.model import NodeIdentity
from rasd.snapshot import Snapshot
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.power.synthetic import Wave, nvml_trace, to_samples

START = 1_700_000_000.0


class Gpu:
    def __init__(self, index: int):
        self.index = index
        self.limit = 700.0

    def power_limits(self):
        return SimpleNamespace(limit_watts=self.limit, min_watts=200.0, max_watts=700.0)

    def set_power_limit(self, watts: float) -> float:
        self.limit = float(round(watts))
        return self.limit

    def smoothing_supported(self) -> bool:
        return True

    def apply_smoothing(self, floor_percent, up, down, hysteresis_ms):
        return {"enabled": 1.0, "floor_percent": floor_percent}

    def disable_smoothing(self) -> None:
        pass


def snapshot(settings: PowerSettings) -> Snapshot:
    svc = PowerService(settings, [Gpu(0), Gpu(1)], clock=lambda: START)
    for g in range(2):
        t, w = nvml_trace(Wave(hz=0.8, swing_watts=300.0, base_watts=300.0, shape="square", noise_watts=3.0),
                          30.0, start=START, rng=np.random.default_rng(g))
        svc.add_samples(to_samples(g, t, w))
    state = svc.tick(START + 31.0)
    node = NodeIdentity("n1", "fake", None, None, None)
    return Snapshot(time_wall=START + 31.0, node=node, gpus=(), power=state)


def registry(snap: Snapshot) -> CollectorRegistry:
    reg = CollectorRegistry()

    class One:
        def collect(self):
            return section.collect(snap)

    reg.register(One())
    return reg


def test_analysis_decision_budget_and_applied_series() -> None:
    snap = snapshot(PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0, node_budget_watts=1300.0,
                                  apply=True))
    reg = registry(snap)
    v = reg.get_sample_value
    assert v("rasd_power_oscillation_hz", {"gpu": "0"}) == pytest.approx(0.8, rel=0.05)
    assert v("rasd_power_swing_watts", {"gpu": "1"}) == pytest.approx(300.0, rel=0.10)
    assert v("rasd_power_sample_rate_hz", {"gpu": "0"}) == pytest.approx(10.0, rel=0.02)
    assert v("rasd_power_node_swing_watts") == pytest.approx(600.0, rel=0.10)
    assert v("rasd_power_node_band_energy_ratio") > 0.8
    assert v("rasd_power_node_band_beyond_nyquist") == 0.0
    assert v("rasd_power_band_hz", {"edge": "high"}) == 3.0
    assert v("rasd_power_smoothing_applied") == 1.0
    assert v("rasd_power_smoothing_mode", {"mode": "floor"}) == 1.0
    assert v("rasd_power_smoothing_mode", {"mode": "none"}) == 0.0
    floor = v("rasd_power_smoothing_floor_watts", {"gpu": "0"})
    assert floor == pytest.approx(600.0 - 140.0, rel=0.05)
    assert v("rasd_power_smoothing_floor_ratio", {"gpu": "0"}) == pytest.approx(floor / 700.0)
    assert v("rasd_power_smoothing_hysteresis_seconds", {"gpu": "0"}) == 0.0
    assert 0.0 < v("rasd_power_smoothing_energy_overhead_ratio", {"gpu": "0"}) < 0.3
    assert v("rasd_power_budget_watts") == 1300.0
    assert v("rasd_power_budget_share_watts", {"gpu": "0"}) == pytest.approx(650.0)
    assert v("rasd_power_applied_smoothing", {"gpu": "1"}) == 1.0
    assert v("rasd_power_applied_limit_watts", {"gpu": "0"}) == 650.0
    assert v("rasd_power_changes_total", {"gpu": "0"}) == 2.0  # the budget share and the profile
    assert v("rasd_power_change_failures_total", {"gpu": "0"}) == 0.0
    assert v("rasd_power_tick_failures_total") == 0.0


def test_names_follow_the_conventions() -> None:
    snap = snapshot(PowerSettings(node_budget_watts=1300.0))
    text = generate_latest(registry(snap)).decode()
    families = list(text_string_to_metric_families(text))
    assert families
    for fam in families:
        assert re.fullmatch(r"rasd_power_[a-z0-9_]+", fam.name), fam.name
        assert "percent" not in fam.name  # ratios, not percentages
        for sample in fam.samples:
            if fam.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            assert set(sample.labels) <= {"gpu", "mode", "edge"}
    assert "rasd_power_smoothing_applied 0.0" in text


def test_no_power_state_no_series() -> None:
    node = NodeIdentity("n1", "fake", None, None, None)
    assert list(section.collect(Snapshot(time_wall=0.0, node=node, gpus=()))) == []
