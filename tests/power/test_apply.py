"""The applier against a recording GPU handle: smoothing where supported, else the power limit."""

from __future__ import annotations

from types import MappingProxyType, SimpleNamespace

import pytest

from rasd.backends.errors import ControlError
from rasd.power.apply import PowerApplier, wanted_settings
from rasd.power.budget import BudgetState
from rasd.power.decide import SmoothingDecision, GpuSmoothing, Mode


class RecordingGpu:
    """Implements the handle calls the applier makes, and records every one."""

    def __init__(self, index: int, smoothing: bool = False, refuse: bool = False, limit: float = 700.0):
        self.index = index
        self.limit = limit
        self.smoothing = smoothing
        self.refuse = refuse
        self.calls: list[tuple] = []
        self.profile: dict | None = None

    def power_limits(self):
        return SimpleNamespace(limit_watts=self.limit, enforced_watts=self.limit, default_watts=700.0,
                               min_watts=200.0, max_watts=700.0)

    def set_power_limit(self, watts: float) -> float:
        self.calls.append(("set_power_limit", watts))
        if self.refuse:
            raise ControlError(f"GPU {self.index}: setting the power limit failed: Insufficient Permissions")
        self.limit = float(round(watts))
        return self.limit

    def smoothing_supported(self) -> bool:
        return self.smoothing

    def apply_smoothing(self, floor_percent, ramp_up, ramp_down, hysteresis_ms):
        self.calls.append(("apply_smoothing", floor_percent, ramp_up, ramp_down, hysteresis_ms))
        self.profile = {"enabled": 1.0, "floor_percent": floor_percent,
                        "ramp_up_watts_per_second": ramp_up, "ramp_down_watts_per_second": ramp_down,
                        "hysteresis_ms": hysteresis_ms}
        return dict(self.profile)

    def disable_smoothing(self) -> None:
        self.calls.append(("disable_smoothing",))
        self.profile = None


def decision(mode: Mode, **gpu_fields) -> SmoothingDecision:
    d = GpuSmoothing(gpu=0, mode=mode, allowed_swing_watts=140.0, **gpu_fields)
    return SmoothingDecision(mode=mode, reason="test", gpus=MappingProxyType({0: d}))


FLOOR = decision(Mode.FLOOR, floor_watts=490.0, floor_percent=70.0, ramp_up_watts_per_second=200.0,
                 ramp_down_watts_per_second=150.0, hysteresis_ms=12500.0, target_limit_watts=440.0)
CAP = decision(Mode.CAP, target_limit_watts=440.0)


def test_advisory_touches_nothing() -> None:
    gpu = RecordingGpu(0, smoothing=True)
    a = PowerApplier([gpu], enabled=False)
    a.apply(FLOOR, None, 1.0)
    a.apply(CAP, None, 2.0)
    a.close(3.0)
    assert gpu.calls == [] and a.changes() == ()


def test_cap_sets_the_limit_reads_back_and_reverts() -> None:
    gpu = RecordingGpu(0)
    a = PowerApplier([gpu], enabled=True)
    a.apply(CAP, None, 1.0)
    a.apply(CAP, None, 2.0)  # unchanged decision: no second call
    assert gpu.calls == [("set_power_limit", 440.0)]
    change = a.changes()[-1]
    assert change.kind == "power_limit" and change.applied["limit_watts"] == 440.0
    assert a.state()[0].limit_watts == 440.0 and a.state()[0].original_limit_watts == 700.0
    a.close(3.0)
    assert gpu.calls[-1] == ("set_power_limit", 700.0)
    assert gpu.limit == 700.0
    assert [c.reason for c in a.changes()] == ["decision", "revert"]


def test_cap_is_bounded_by_the_device_limits() -> None:
    gpu = RecordingGpu(0)
    a = PowerApplier([gpu], enabled=True)
    a.apply(decision(Mode.CAP, target_limit_watts=50.0), None, 1.0)
    assert gpu.calls == [("set_power_limit", 200.0)]


def test_floor_uses_the_smoothing_profile_where_supported() -> None:
    gpu = RecordingGpu(0, smoothing=True)
    a = PowerApplier([gpu], enabled=True)
    a.apply(FLOOR, None, 1.0)
    assert gpu.calls == [("apply_smoothing", pytest.approx(70.0), 200.0, 150.0, 12500.0)]
    assert a.state()[0].smoothing is not None
    a.apply(FLOOR, None, 2.0)
    assert len(gpu.calls) == 1
    a.apply(decision(Mode.NONE), None, 3.0)  # the floor is no longer wanted: switched off
    assert gpu.calls[-1] == ("disable_smoothing",)
    a.apply(FLOOR, None, 4.0)
    a.close(5.0)
    assert gpu.calls[-1] == ("disable_smoothing",)
    assert gpu.profile is None


def test_floor_falls_back_to_the_power_limit_without_smoothing() -> None:
    gpu = RecordingGpu(0, smoothing=False)
    a = PowerApplier([gpu], enabled=True)
    a.apply(FLOOR, None, 1.0)
    assert gpu.calls == [("set_power_limit", 440.0)]


def test_ramp_alone_needs_smoothing() -> None:
    ramp = decision(Mode.RAMP, ramp_up_watts_per_second=100.0, ramp_down_watts_per_second=100.0,
                    hysteresis_ms=12500.0)
    plain = RecordingGpu(0, smoothing=False)
    a = PowerApplier([plain], enabled=True)
    a.apply(ramp, None, 1.0)
    assert plain.calls == []
    sm = RecordingGpu(0, smoothing=True)
    b = PowerApplier([sm], enabled=True)
    b.apply(ramp, None, 1.0)
    assert sm.calls == [("apply_smoothing", 0.0, 100.0, 100.0, 12500.0)]


def test_budget_share_caps_the_gpu() -> None:
    gpu = RecordingGpu(0)
    a = PowerApplier([gpu], enabled=True)
    budget = BudgetState(budget_watts=500.0, shares=MappingProxyType({0: 500.0}))
    a.apply(decision(Mode.NONE), budget, 1.0)
    assert gpu.calls == [("set_power_limit", 500.0)]
    a.apply(CAP, budget, 2.0)  # the lower of cap and share wins
    assert gpu.calls[-1] == ("set_power_limit", 440.0)
    assert a.changes()[-1].reason == "budget"


def test_a_refused_change_is_recorded_and_counted_not_raised() -> None:
    gpu = RecordingGpu(0, refuse=True)
    a = PowerApplier([gpu], enabled=True)
    a.apply(CAP, None, 1.0)
    a.apply(CAP, None, 2.0)
    st = a.state()[0]
    assert st.failures_total == 2 and st.changes_total == 0
    assert a.changes()[-1].error is not None and "Insufficient" in a.changes()[-1].error
    assert st.limit_watts == 700.0


def test_wanted_settings_is_pure() -> None:
    w = wanted_settings(FLOOR, None, 0, 700.0, smoothing_ok=True)
    assert w.limit_watts is None and w.smoothing == (pytest.approx(70.0), 200.0, 150.0, 12500.0)
    assert wanted_settings(None, None, 0, 700.0, True).smoothing is None
