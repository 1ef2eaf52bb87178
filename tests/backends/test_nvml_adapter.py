"""The NVML adapter's behaviour on driver facts the fake models: each test names the fact.

These run the real adapter on the fake NVML; tests/contract/ runs it on NVIDIA's mock and on a C
stub compiled against nvml.h.
"""

from __future__ import annotations

import ast
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from rasd.backends.errors import ControlError, GpuLost
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.nvml import NvmlAdapter, pynvml_module
from rasd.ladder.classify import Context, classify
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultKind, Health, RecoveryAction, Rung
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- power smoothing


@pytest.fixture
def gb200(base, mclock):
    node = FakeNode(profile="gb200", gpu_count=2, clock=mclock)
    lib = FakeNvml(node, base)
    adapter = NvmlAdapter(lib)
    adapter.open()
    yield node, lib, adapter
    adapter.close()


def test_smoothing_is_applied_through_pointers_with_ramps_in_mw_per_second(gb200):
    node, _, adapter = gb200
    g = adapter.gpus()[0]
    assert g.smoothing_supported()
    back = g.apply_smoothing(60, 2000, 1000, 100, profile_id=1)
    preset = node.smoothing_presets[0][1]
    assert (preset.floor_percent, preset.ramp_up_watts_per_second, preset.ramp_down_watts_per_second,
            preset.ramp_down_hysteresis_ms) == (60, 2000, 1000, 100)
    assert node.smoothing_enabled[0] and node.smoothing_active[0] == 1
    assert back == {"enabled": 1, "floor_percent": 60, "ramp_up_watts_per_second": 2000,
                    "ramp_down_watts_per_second": 1000, "hysteresis_ms": 100}
    g.disable_smoothing()
    assert not node.smoothing_enabled[0]


def test_smoothing_refused_with_one_line_where_driver_and_binding_number_fields_differ(base, mclock, caplog):
    """R575 and early R580 drivers number fields 251-273 differently from this binding."""
    node = FakeNode(profile="gb200", gpu_count=2, clock=mclock)
    lib = FakeNvml(node, base)
    lib.nvmlSystemGetDriverVersion = lambda: "580.65.06"
    adapter = NvmlAdapter(lib)
    with caplog.at_level(logging.WARNING, logger="rasd.nvml"):
        adapter.open()
        assert [g.smoothing_supported() for g in adapter.gpus()] == [False, False]
    lines = [r.getMessage() for r in caplog.records if "smoothing_refused" in r.getMessage()]
    assert len(lines) == 1 and "580.65.06" in lines[0] and "nvidia-ml-py" in lines[0]
    with pytest.raises(ControlError, match="refused"):
        adapter.gpus()[0].apply_smoothing(60, 2000, 1000, 100)
    assert not node.smoothing_enabled[0]


class _Renumbered:
    """The binding as an R575 build of nvidia-ml-py numbers it: smoothing fields at 256-269."""

    SHIFT = 5

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        v = getattr(self._real, name)
        if name.startswith("NVML_FI_PWR_SMOOTHING_"):
            return v + self.SHIFT
        return v


def test_field_ids_come_from_the_binding_never_from_literals(base, mclock):
    """With a binding and driver that both use the R575 numbering, smoothing works at the
    binding's ids (literals 251/260-263 would read other fields)."""
    node = FakeNode(profile="gb200", gpu_count=1, clock=mclock)
    lib = FakeNvml(node, _Renumbered(base))
    lib.nvmlSystemGetDriverVersion = lambda: "575.51.03"
    adapter = NvmlAdapter(lib)
    adapter.open()
    g = adapter.gpus()[0]
    assert adapter.fids.smoothing_enabled == 256
    assert g.smoothing_supported()
    back = g.apply_smoothing(50, 1500, 500, 80, profile_id=0)
    assert back["ramp_up_watts_per_second"] == 1500 and back["enabled"] == 1
    assert lib.nvmlDeviceGetFieldValues(g.raw, [251])[0].nvmlReturn == base.NVML_ERROR_NOT_SUPPORTED


def test_no_smoothing_before_r570(base, mclock):
    """A driver older than R570 has no smoothing even if a field id happens to answer."""
    node = FakeNode(profile="gb200", gpu_count=1, clock=mclock)
    lib = FakeNvml(node, base)
    lib.nvmlSystemGetDriverVersion = lambda: "550.163.01"
    adapter = NvmlAdapter(lib)
    adapter.open()
    assert adapter.smoothing_refused and "R570" in adapter.smoothing_refused
    assert not adapter.gpus()[0].smoothing_supported()


# ----------------------------------------------------------------------------- opening


@pytest.mark.parametrize("error", ["gpu_is_lost", "no_permission", "insufficient_power", "irq_issue"])
def test_a_gpu_that_cannot_be_opened_is_down_and_the_rest_run(fake, error):
    be = fake(
        f"""
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 2
        function = "nvmlDeviceGetHandleByIndex"
        error = "{error}"
        """
    )
    gpus = be.adapter.gpus()
    assert [g.index for g in gpus] == list(range(8))
    bad = gpus[2]
    assert bad.raw is None and bad.unopened
    with pytest.raises(GpuLost):
        bad.poll()
    with pytest.raises(GpuLost):
        bad.instant_power()
    with pytest.raises(ControlError):
        bad.power_limits()
    pollers = [GpuPoller(g, 1.0, 5.0) for g in gpus]
    agg = Aggregator()
    faults = []
    for p in pollers:
        p.poll_once()
        st, ev = agg.update(p.view(), time.time())
        faults.extend(ev)
        assert st.health is (Health.LOST if p.index == 2 else Health.UP)
    lost = [f for f in faults if f.kind is FaultKind.GPU_LOST]
    assert [(f.gpu, "cannot open" in f.details["reason"]) for f in lost] == [(2, True)]
    decision = classify(lost[0], Context(), LadderSettings())
    assert decision is not None and decision.rung >= Rung.RESET_GPU
    assert "cannot open the GPU" in decision.reason  # NVML's reason reaches the decision
    assert be.adapter.xid_event_set().registered == [0, 1, 3, 4, 5, 6, 7]


# ----------------------------------------------------------------------------- events


XID79_THEN_94 = """
    [[event]]
    kind = "fall_off_bus"
    at = 0.5
    gpu = 3

    [[event]]
    kind = "xid"
    at = 2.0
    gpu = 1
    xid = 94
    """


def _drain_until(w: Any, want: int, clock: Any, step: float = 0.5, timeout: float = 5.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        clock.advance(step)
        time.sleep(0.05)
        got.extend(w.drain())
    return got


def test_lost_gpu_xid_is_mapped_by_handle_and_other_gpus_stay_watched(fake, clock):
    """nvml.h: nvmlDeviceGetIndex and nvmlEventSetWait_v2 answer GPU_IS_LOST for a lost GPU."""
    from rasd.telemetry.xid import XidWatcher

    be = fake(XID79_THEN_94, clock=clock)
    w = XidWatcher(be.adapter, None, wait_ms=30)
    w.start()
    try:
        got = _drain_until(w, 2, clock)
    finally:
        w.stop()
        w.join(2)
    assert [(x.gpu, x.xid) for x in got] == [(3, 79), (1, 94)]


def test_event_wait_answering_lost_drops_that_gpu_and_keeps_the_set(fake, clock):
    be = fake(XID79_THEN_94, clock=clock)
    es = be.adapter.xid_event_set()
    clock.advance(1.0)
    assert es.wait(0) == (3, 79)
    assert es.wait(0) is None  # answered GPU_IS_LOST: GPU 3 dropped, no error escapes
    assert es.lost == {3} and 3 not in es.registered
    clock.advance(1.5)
    assert es.wait(0) == (1, 94)
    es.close()


def test_pynvml_errors_never_leave_the_adapter():
    """Only rasd/backends/nvml/ names pynvml or its NVMLError classes."""
    offenders = []
    for path in (ROOT / "rasd").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("rasd/backends/nvml/") or rel.startswith("rasd/backends/fake/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("NVMLError"):
                offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] == "pynvml" for n in names):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


# ----------------------------------------------------------------------------- recovery actions


@pytest.mark.parametrize(
    "code,rung",
    [(5, Rung.NONE), (6, Rung.RESET_GPU), (7, Rung.REBOOT_NODE)],
)
def test_recovery_actions_5_to_7_reach_the_ladder(fake, clock, code, rung):
    base = pynvml_module()
    names = {5: "RECOVER_IMEX_DOMAIN", 6: "BUS_RESET", 7: "SYSTEM_REBOOT"}
    assert getattr(base, f"NVML_GPU_RECOVERY_ACTION_{names[code]}") == code == RecoveryAction[names[code]]
    be = fake(
        f"""
        [[event]]
        kind = "recovery_action"
        at = 1
        gpu = 0
        value = {code}
        """,
        clock=clock,
        gpus=1,
    )
    p = GpuPoller(be.adapter.gpus()[0], 1.0, 5.0, clock=clock)
    agg = Aggregator()
    events = []
    for _ in range(3):
        p.poll_once()
        events.extend(agg.update(p.view(), clock())[1])
        clock.advance(1.0)
    actions = [e for e in events if e.kind is FaultKind.RECOVERY_ACTION]
    assert [e.details["action"] for e in actions] == [names[code].lower()]
    f = classify(actions[0], Context(), LadderSettings())
    assert f is not None and f.rung is rung
    if code == 5:
        assert "stop_p2p" in f.degradations


# ----------------------------------------------------------------------------- deprecations


def test_deprecated_temperature_call_falls_back_and_is_not_an_error(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        function = "nvmlDeviceGetTemperatureV"
        error = "function_not_found"
        """
    )
    g = be.adapter.gpus()[0]
    for _ in range(2):
        assert g.poll().temperature_gpu_celsius is not None  # the older call answers
    assert not g.error_counts()


def test_deprecated_answers_count_as_unsupported(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        function = "nvmlDeviceGetTemperatureV"
        error = "deprecated"

        [[event]]
        kind = "nvml_error"
        at = 0
        function = "nvmlDeviceGetTemperature"
        error = "deprecated"
        """
    )
    g = be.adapter.gpus()[0]
    for _ in range(3):
        assert g.poll().temperature_gpu_celsius is None
    assert not g.error_counts()
    assert "temperature_gpu" in g.unsupported()


def test_library_mismatch_is_not_supported_not_a_crash(fake):
    be = fake()
    lib = be.adapter.lib

    def missing_v3(handle: Any) -> Any:
        raise lib.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does not match the NVML lib version. Either use matching pyNVML and NVML lib versions or use a versioned function such as nvmlDeviceGetComputeRunningProcesses_v2")

    lib.nvmlDeviceGetComputeRunningProcesses = missing_v3
    with pytest.raises(ControlError, match="cannot list processes"):
        be.adapter.gpus()[0].running_pids()
    from rasd.backends.nvml.core import Outcome, classify as judge

    assert judge(lib, lib.NVMLLibraryMismatchError("x")) is Outcome.UNSUPPORTED
    assert judge(lib, lib.NVMLError_Deprecated()) is Outcome.UNSUPPORTED


# ----------------------------------------------------------------------------- names


def test_unsupported_fields_have_names_people_read(fake):
    be = fake(gpus=1)
    lib = be.adapter.lib
    lib._node.profile = __import__("dataclasses").replace(lib._node.profile, recovery_action=False)
    g = be.adapter.gpus()[0]
    g.poll()
    assert "recovery_action" in g.unsupported()
    assert not any(n.startswith("field_") for n in g.unsupported())



# ----------------------------------------------------------------------------- field timestamps


@pytest.mark.parametrize("stamp_every_read,method", [(False, "timestamp"), (True, "value")])
def test_the_fake_models_both_instant_power_timestamp_behaviours(base, mclock, stamp_every_read, method):
    """Refresh-time stamps (100 ms apart, repeats keep theirs) or call-time stamps (NVIDIA's
    mock): the power sampler finds out which, through the real adapter."""
    from rasd.telemetry.power import ALL_NEW_READS, PowerSampler

    node = FakeNode(gpu_count=2, clock=mclock, stamp_every_read=stamp_every_read)
    adapter = NvmlAdapter(FakeNvml(node, base))
    adapter.open()
    got: list = []
    sampler = PowerSampler(adapter.gpus(), 20.0, got.extend, clock=mclock)
    stamps = []
    for _ in range(ALL_NEW_READS + 20):
        stamps.append(adapter.gpus()[0].instant_power()[1])
        sampler.round()
        mclock.advance(0.05)
    assert {m.value for m in sampler.methods().values()} == {method}
    distinct_stamps = len(set(stamps))
    assert distinct_stamps == len(stamps) if stamp_every_read else distinct_stamps <= len(stamps) // 2 + 1
    adapter.close()
