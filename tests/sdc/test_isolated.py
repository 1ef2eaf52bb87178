"""Checks in a child process (rasd.sdc.isolated): what the daemon runs on real GPUs, so that CuPy
and its CUDA contexts leave with the check. Here the child checks a fake node of its own (the
protocol, the locks, progress, cancel, a limit, a crash); on NVML it needs CuPy and a GPU."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from rasd.backends import open_backend
from rasd.sdc import isolated
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe
from rasd.sdc.results import Cancelled, ChecksUnavailable, Result
from rasd.sdc.settings import SdcSettings
from tests.sdc.conftest import FAST

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def child_imports_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def child_validator(tmp_path: Path, scenario: str | None = None, settings: SdcSettings = FAST,
                    python: str = sys.executable) -> ChildValidator:
    be = open_backend("fake", scenario, workload="idle")
    handles = {g.index: g for g in be.adapter.gpus()}
    return ChildValidator(settings, handles, str(tmp_path / "locks"), BusyProbe(handles),
                          {"kind": "fake", "scenario": scenario}, python=python)


def test_a_check_in_a_child_reports_as_one_in_process(tmp_path: Path) -> None:
    v = child_validator(tmp_path)
    seen: list[tuple[int, int, str]] = []
    outcome = v.run([0, 1], "quick", progress=lambda d, t, label: seen.append((d, t, label)))
    report = outcome.report
    assert [g.gpu for g in report.gpus] == [0, 1]
    assert report.result is Result.PASS and report.level == "quick"
    names = {c.name for g in report.gpus for c in g.checks}
    assert {"golden_gemm", "abft", "freivalds", "memory"} <= names
    assert set(outcome.rounds) == {0, 1} and all(r == (Result.PASS,) for r in outcome.rounds.values())
    # progress came through as the child went, ending at the whole
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


def test_a_corrupting_gpu_fails_in_the_child_with_its_evidence(tmp_path: Path) -> None:
    v = child_validator(tmp_path, scenario="sdc")
    outcome = v.run([4, 5], "quick")
    by_gpu = {g.gpu: g for g in outcome.report.gpus}
    assert by_gpu[4].result is Result.PASS
    assert by_gpu[5].result is Result.FAIL
    failed = [c for c in by_gpu[5].checks if c.result is Result.FAIL]
    assert failed and all(c.evidence for c in failed)  # what reproduces it came back too


def test_the_child_takes_the_gpu_locks_others_hold(tmp_path: Path) -> None:
    v = child_validator(tmp_path)
    mine = GpuLocks(str(tmp_path / "locks"))
    assert mine.try_acquire(1)
    try:
        outcome = v.run([0, 1], "quick")
    finally:
        mine.release(1)
    by_gpu = {g.gpu: g for g in outcome.report.gpus}
    assert by_gpu[0].result is Result.PASS
    (held,) = by_gpu[1].checks
    assert held.name == "available" and held.result is Result.INCONCLUSIVE
    assert "being checked already" in held.evidence["why"]


def test_cancel_stops_the_child(tmp_path: Path) -> None:
    slow = SdcSettings(deep_gemm_sizes=(256,), deep_seconds=60.0, deep_rounds=10_000, numpy_memory_bytes=1 << 20)
    v = child_validator(tmp_path, settings=slow)
    cancel = threading.Event()
    started: list[float] = []

    def progress(done: int, total: int, label: str) -> None:
        if not started:
            started.append(time.monotonic())
            cancel.set()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        v.run([0], "deep", progress=progress, cancel=cancel)
    assert started and time.monotonic() - t0 < 30  # not the check's 60 s


def test_a_check_past_its_limit_is_stopped_and_inconclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(isolated, "DEEP_MARGIN_SECONDS", 0.0)
    slow = SdcSettings(deep_gemm_sizes=(256,), deep_seconds=1.0, deep_rounds=10_000, deep_min_rounds=10_000,
                       numpy_memory_bytes=1 << 20)
    v = child_validator(tmp_path, settings=slow)
    t0 = time.monotonic()
    outcome = v.run([0], "deep")  # 10,000 rounds at least: far past the 2 s limit
    assert time.monotonic() - t0 < 2.0 + isolated.STOP_GRACE_SECONDS + 20
    (row,) = outcome.report.gpus
    (c,) = row.checks
    assert c.name == "process" and c.result is Result.INCONCLUSIVE
    assert "did not finish within 2 s" in c.evidence["why"]
    assert v.failures == 1 and "event=sdc_check_process_failed" in caplog.text
    assert not outcome.rounds  # no round: an accusation does not count it


def test_a_child_that_dies_makes_the_check_inconclusive(tmp_path: Path) -> None:
    v = child_validator(tmp_path, python="/bin/false")
    (row,) = v.run([0], "quick").report.gpus
    assert row.result is Result.INCONCLUSIVE
    assert "ended with status 1 before reporting" in row.checks[0].evidence["why"]


def test_no_backend_in_the_child_makes_the_checks_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # real NVML in the child, where this machine has none: the reason comes back, logged once
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # no libnvidia-ml here
    v = child_validator(tmp_path)
    v.backend = {"kind": "nvml"}
    for _ in range(2):
        with pytest.raises(ChecksUnavailable, match="NVML"):
            v.run([0], "quick")
    assert caplog.text.count("event=sdc_checks_unavailable") == 1


def test_an_unknown_gpu_is_refused_before_any_child_starts(tmp_path: Path) -> None:
    v = child_validator(tmp_path, python="/nonexistent/python")
    with pytest.raises(ValueError, match="no GPU 9 on this node"):
        v.run([9], "quick")


def test_the_daemon_isolates_checks_on_real_gpus_only(tmp_path: Path) -> None:
    from dataclasses import replace

    from rasd.sdc.service import SdcService
    from rasd.store import Store

    fake = open_backend("fake", workload="idle")
    here = SdcService(FAST, fake, Store(":memory:"), [].extend, lock_dir=str(tmp_path))
    real = SdcService(FAST, replace(fake, name="nvml", fake_node=None), Store(":memory:"), [].extend,
                      lock_dir=str(tmp_path))
    try:
        assert not here.isolate  # the fake node lives in this process
        assert real.isolate
    finally:
        here.close()
        real.close()


def test_periodic_check_and_accusation_through_children(tmp_path: Path) -> None:
    """The service's own path with every check in a child: the periodic quick check finds the
    corrupting GPU, accuses it, and the accusation's deep checks confirm it."""
    from rasd.model import FaultKind
    from rasd.sdc.service import SdcService
    from rasd.store import Store
    from tests.waiting import eventually

    store = Store(":memory:")
    events: list = []
    svc = SdcService(FAST, open_backend("fake", "sdc"), store, events.extend, lock_dir=str(tmp_path / "locks"),
                     isolate=True)
    try:
        svc.maybe_run_periodic(time.time())
        assert isinstance(svc.checks(), ChildValidator)

        def verdicts() -> list[str]:
            return [e.details["verdict"] for e in events if e.gpu == 5 and e.kind is FaultKind.SDC]

        assert eventually(lambda: "confirmed" in verdicts(), 60.0)
        assert verdicts() == ["suspect", "confirmed"]
        assert any(r.result == "fail" for r in store.sdc_results(gpu=5))
        assert all(r.result == "pass" for r in store.sdc_results(gpu=4))
    finally:
        svc.close()


CHECK_IN_A_CHILD = """
import sys, time
from rasd.backends import open_backend
from rasd.sdc.service import SdcService
from rasd.sdc.settings import SdcSettings
from rasd.store import Store
FAST = SdcSettings(quick_gemm_size=64, quick_memory_bytes=64 << 10, numpy_memory_bytes=1 << 20)
svc = SdcService(FAST, open_backend("fake", workload="idle"), Store(":memory:"), [].extend, lock_dir=sys.argv[1],
                 isolate=True)
job = svc.handlers()["validate"]({"gpus": [0, 1], "level": "quick"})["job"]
while not svc.handlers()["validate"]({"job": job})["done"]:
    time.sleep(0.05)
print(svc.handlers()["validate"]({"job": job})["report"]["result"])
svc.close()
print(" ".join(m for m in ("rasd.sdc.engines", "rasd.sdc.engines_cupy", "rasd.sdc.gemm", "rasd.sdc.validation",
                           "threadpoolctl", "cupy") if m in sys.modules) or "none")
"""


def test_a_check_in_a_child_loads_no_check_code_here(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-c", CHECK_IN_A_CHILD, str(tmp_path)], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    result, loaded = out.stdout.split("\n")[:2]
    assert result == "pass"
    assert loaded == "none"  # on real GPUs: no CuPy, no CUDA context in the daemon
