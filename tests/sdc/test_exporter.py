from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporters.sections import sdc as section
from rasd.model import NodeIdentity
from rasd.snapshot import Snapshot
from rasd.sdc.results import CheckResult, GpuReport, Result, RunReport
from rasd.sdc.tracker import StateTracker


class _Collector:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self):
        return section.collect(self.snapshot)


def _registry(state) -> CollectorRegistry:
    snap = Snapshot(time_wall=1.0, node=NodeIdentity("n", "fake", None, None, None), gpus=(), sdc=state)
    reg = CollectorRegistry()
    reg.register(_Collector(snap))
    return reg


def test_sdc_metrics_follow_the_state() -> None:
    t = StateTracker([0, 1])
    report = RunReport("quick", 0, 10.0, 1.0, (
        GpuReport(0, (CheckResult(0, "golden_gemm", Result.PASS, 0.5, 120.0),)),
        GpuReport(1, (CheckResult(1, "golden_gemm", Result.FAIL, 0.25, 100.0, {"x": 1}),
                      CheckResult(1, "available", Result.INCONCLUSIVE, 0.0)))))
    t.record(report, now_wall=500.0)
    t.accusation(1, "suspect")
    t.accusation(0, "suspect")
    t.accusation(0, "cleared", technician=True)
    reg = _registry(t.state())
    v = reg.get_sample_value
    assert v("rasd_sdc_check_result", {"gpu": "1", "check": "golden_gemm", "result": "fail"}) == 1
    assert v("rasd_sdc_check_result", {"gpu": "1", "check": "golden_gemm", "result": "pass"}) == 0
    assert v("rasd_sdc_check_result", {"gpu": "1", "check": "available", "result": "inconclusive"}) is None
    assert v("rasd_sdc_check_last_run_timestamp_seconds", {"gpu": "0", "check": "golden_gemm"}) == 500.0
    assert v("rasd_sdc_check_last_duration_seconds", {"gpu": "1", "check": "golden_gemm"}) == 0.25
    assert v("rasd_sdc_check_runs_total", {"gpu": "0", "check": "golden_gemm", "result": "pass"}) == 1
    assert v("rasd_sdc_check_duration_seconds_total", {"gpu": "0", "check": "golden_gemm"}) == 0.5
    assert v("rasd_sdc_accusations_total", {"gpu": "0", "outcome": "opened"}) == 1
    assert v("rasd_sdc_accusations_total", {"gpu": "0", "outcome": "cleared"}) == 1
    assert v("rasd_sdc_suspect", {"gpu": "1"}) is None  # suspect is the ladder's word (rasd_gpu_sdc_suspect)
    assert v("rasd_sdc_technician_flag", {"gpu": "0"}) == 1
    assert v("rasd_sdc_gemm_flops_per_second", {"gpu": "0"}) == 120e9
    assert v("rasd_sdc_check_running", {"gpu": "0"}) == 0


def test_no_sdc_state_exports_nothing() -> None:
    reg = _registry(None)
    assert list(reg.collect()) == []
