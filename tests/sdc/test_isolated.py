"""Checks in a child process (rasd.sdc.isolated): what the daemon runs on real GPUs, so that CuPy
and its CUDA contexts leave with the check. Here the child checks a fake node of its own (the
protocol, the locks, progress, cancel, a limit, a crash); on NVML it needs CuPy and a GPU."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from rasd.backends import open_backend
from rasd.sdc import child, isolated
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe
from rasd.sdc.results import Cancelled, ChecksUnavailable, Result
from rasd.sdc.settings import SdcSettings
from tests.sdc.children import SLOW, alive, child_validator, script
from tests.sdc.conftest import FAST, REPO
from tests.waiting import eventually



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


def test_cancel_stops_the_child(tmp_path: Path, spawned: list) -> None:
    v = child_validator(tmp_path, settings=SLOW)
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
    (proc,) = spawned
    assert proc.poll() is not None and not alive(proc.pid)  # the child has ended, not only been told to
    assert v.probe.own_pids == frozenset()


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
    # one inconclusive round: an accusation decides on it, never waits as if the GPU were busy
    assert outcome.rounds == {0: (Result.INCONCLUSIVE,)}


def test_a_child_that_dies_makes_the_check_inconclusive(tmp_path: Path) -> None:
    v = child_validator(tmp_path, python="/bin/false")
    (row,) = v.run([0], "quick").report.gpus
    assert row.result is Result.INCONCLUSIVE
    assert "ended with status 1 before reporting" in row.checks[0].evidence["why"]


def test_no_backend_in_the_child_makes_the_checks_unavailable(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # real NVML in the child, where this machine has none: the reason comes back each time, told
    # to the service (which logs it once), and is transient (NVML may start at the next try)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # no libnvidia-ml here
    v = child_validator(tmp_path)
    v.backend = {"kind": "nvml"}
    told: list[tuple[str, bool]] = []
    v.on_unavailable = lambda reason, permanent: told.append((reason, permanent))
    for _ in range(2):
        with pytest.raises(ChecksUnavailable, match="NVML") as refused:
            v.run([0], "quick")
        assert refused.value.permanent is False
    assert len(told) == 2 and all("NVML" in r and not p for r, p in told)


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
print(" ".join(m for m in sys.argv[2:] if m in sys.modules) or "none")
"""


def test_a_check_in_a_child_loads_no_check_code_here(tmp_path: Path) -> None:
    import subprocess

    from tests.daemon.test_lazy_imports import SDC_CHECKS

    # the daemon builds the accusation workflow with its checks; the rest is the child's only
    modules = [m for m in SDC_CHECKS if m != "rasd.sdc.accusation"]
    out = subprocess.run([sys.executable, "-c", CHECK_IN_A_CHILD, str(tmp_path), *modules], capture_output=True,
                         text=True, cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    result, loaded = out.stdout.split("\n")[:2]
    assert result == "pass"
    assert loaded == "none"  # on real GPUs: no CuPy, no CUDA context in the daemon


# -- what the daemon decides before a child starts ---------------------------------------------

def test_no_child_starts_for_a_gpu_the_daemon_sees_busy(tmp_path: Path, spawned: list) -> None:
    # the daemon's node runs a job on every GPU; the child's own node would be idle
    v = child_validator(tmp_path, workload="training")
    assert v.busy_pids(0)
    (row,) = v.run([0], "deep").report.gpus
    (c,) = row.checks
    assert c.name == "available" and c.result is Result.INCONCLUSIVE and "in use by pids" in c.evidence["why"]
    assert spawned == []  # no CuPy, no CUDA context beside the job


def test_a_gpu_another_check_here_holds_gets_no_child(tmp_path: Path, spawned: list) -> None:
    v = child_validator(tmp_path)
    assert v.locks.try_acquire(0, across_processes=False)  # a check of this daemon runs on GPU 0
    try:
        outcome = v.run([0, 1], "quick")
        assert v.locks.held() == {0}  # what this check held is released, the other's is not
    finally:
        v.locks.release(0)
    by_gpu = {g.gpu: g for g in outcome.report.gpus}
    assert by_gpu[0].checks[0].name == "available" and "being checked already" in by_gpu[0].checks[0].evidence["why"]
    assert by_gpu[1].result is Result.PASS and len(spawned) == 1  # the child checked GPU 1 only


def test_waiting_for_a_gpu_here_ends_when_the_daemon_stops(tmp_path: Path, spawned: list) -> None:
    v = child_validator(tmp_path)
    assert v.locks.try_acquire(0, across_processes=False)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            v.run([0], "quick", cancel=cancel, wait_seconds=60.0)
    finally:
        v.locks.release(0)
    assert time.monotonic() - t0 < 10 and spawned == []


def test_two_checks_never_run_on_one_gpu_without_a_lock_directory(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    v = child_validator(tmp_path, settings=SLOW, locks=GpuLocks(str(blocker / "locks")))  # cannot be made
    started, cancel = threading.Event(), threading.Event()
    first = threading.Thread(target=lambda: pytest.raises(Cancelled, v.run, [0], "deep",
                                                          progress=lambda *a: started.set(), cancel=cancel))
    first.start()
    try:
        assert started.wait(60)
        second = v.run([0, 1], "quick")
    finally:
        cancel.set()
        first.join(60)
    by_gpu = {g.gpu: g for g in second.report.gpus}
    assert by_gpu[0].checks[0].name == "available"  # GPU 0 is under the deep check
    assert caplog.text.count("event=sdc_lock_directory_unusable") == 1  # logged once, then counted
    assert v.locks.unusable_directory >= 1


def test_the_busy_rule_leaves_out_the_daemons_check_processes(tmp_path: Path) -> None:
    v = child_validator(tmp_path)
    seen: list[frozenset[int]] = []
    v.run([0], "quick", progress=lambda *a: seen.append(v.probe.own_pids))
    assert seen and len(seen[0]) == 1  # the child's pid, while it ran
    assert v.probe.own_pids == frozenset()  # and no more once it ended

    class Handle:  # NVML's process list of a GPU where the child holds a context beside a job
        index = 0

        def running_pids(self) -> list[int]:
            return [4242, *seen[0]]

    probe = BusyProbe({0: Handle()})
    probe.own(next(iter(seen[0])))
    assert probe.busy_pids(0) == [4242]


# -- a child that fails ------------------------------------------------------------------------

def test_a_killed_child_whose_pipe_stays_open_is_still_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               spawned: list) -> None:
    monkeypatch.setitem(isolated.LIMIT_SECONDS, "quick", 1.0)
    monkeypatch.setattr(isolated, "STOP_GRACE_SECONDS", 1.0)
    # hangs, and leaves a process behind that holds its stdout (as one stuck in the driver would)
    v = child_validator(tmp_path, python=script(tmp_path, "hung", "sleep 8 &\nexec sleep 8\n"))
    out: list = []
    t = threading.Thread(target=lambda: out.append(v.run([0], "quick")), daemon=True)
    t.start()
    t.join(15.0)  # limit 1 s, then at most twice the grace
    assert out, "run() still blocked after the child was stopped"
    (row,) = out[0].report.gpus
    assert row.checks[0].name == "process" and "did not finish within 1 s" in row.checks[0].evidence["why"]
    assert not alive(spawned[0].pid)


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                spawned: list) -> None:
    monkeypatch.setitem(isolated.LIMIT_SECONDS, "quick", 1.0)
    monkeypatch.setattr(isolated, "STOP_GRACE_SECONDS", 1.0)
    v = child_validator(tmp_path, python=script(tmp_path, "stubborn", "trap '' TERM\nexec sleep 30\n"))
    t0 = time.monotonic()
    (row,) = v.run([0], "quick").report.gpus
    assert time.monotonic() - t0 < 10
    assert row.checks[0].name == "process" and row.result is Result.INCONCLUSIVE
    assert spawned[0].returncode == -9 and not alive(spawned[0].pid)  # SIGKILL after the grace


def test_a_crashing_child_is_logged_once_then_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    v = child_validator(tmp_path, python="/bin/false")
    for _ in range(3):
        outcome = v.run([0, 1], "quick")
        assert {c.name for g in outcome.report.gpus for c in g.checks} == {"process"}
        # one inconclusive round each: an accusation decides rather than waiting as for a busy GPU
        assert outcome.rounds == {0: (Result.INCONCLUSIVE,), 1: (Result.INCONCLUSIVE,)}
    assert v.failures == 3
    assert caplog.text.count("event=sdc_check_process_failed") == 1


def test_a_gpu_lost_after_the_build_does_not_fail_the_other_gpus_checks(tmp_path: Path) -> None:
    lost = tmp_path / "lost.toml"
    lost.write_text('description = "GPU 3 is off the bus"\n[[event]]\nkind = "fall_off_bus"\nat = 0.0\ngpu = 3\n')
    be = open_backend("fake", workload="idle")  # the daemon's view when it built the checks
    handles = {g.index: g for g in be.adapter.gpus()}
    v = ChildValidator(FAST, handles, GpuLocks(str(tmp_path / "locks")), BusyProbe(handles),
                       {"kind": "fake", "scenario": str(lost)})  # what the child finds now
    outcome = v.run([0, 3], "quick", force=True)
    by_gpu = {g.gpu: g for g in outcome.report.gpus}
    assert by_gpu[0].result is Result.PASS
    (c,) = by_gpu[3].checks
    assert c.result is Result.INCONCLUSIVE and "lost" in c.evidence["why"]


def test_a_child_killed_in_a_deep_check_gets_its_power_limits_put_back(tmp_path: Path) -> None:
    settings = dataclasses.replace(SLOW, enforce_power=True, deep_power_limits_watts=(400.0,))
    v = child_validator(tmp_path, settings=settings)
    h = v.handles[0]
    before = h.power_limits().limit_watts

    def progress(*_: object) -> None:
        # on a real GPU the child's limit is the daemon's too: lowered, then the child dies
        if h.power_limits().limit_watts == before:
            h.set_power_limit(400.0)
            for pid in v.probe.own_pids:
                os.kill(pid, signal.SIGKILL)

    (row,) = v.run([0], "deep", progress=progress).report.gpus
    assert row.checks[0].name == "process"
    assert h.power_limits().limit_watts == before


def test_close_kills_the_check_processes_left(tmp_path: Path, spawned: list) -> None:
    v = child_validator(tmp_path, settings=SLOW)
    started = threading.Event()
    errors: list[BaseException] = []

    def check() -> None:
        try:
            v.run([0], "deep", progress=lambda *a: started.set())
        except BaseException as e:  # noqa: BLE001 - looked at below
            errors.append(e)

    t = threading.Thread(target=check)
    t.start()
    assert started.wait(60)
    v.close()
    assert not alive(spawned[0].pid)
    t.join(30)
    assert [type(e) for e in errors] == [Cancelled]  # stopping, not a failed check
    with pytest.raises(Cancelled):
        v.run([1], "quick")  # and none starts after


DAEMON_DIES = """
import os, sys
from rasd.backends import open_backend
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe
from tests.sdc.children import SLOW
be = open_backend("fake", workload="idle")
handles = {g.index: g for g in be.adapter.gpus()}
v = ChildValidator(SLOW, handles, GpuLocks(sys.argv[1]), BusyProbe(handles), {"kind": "fake", "scenario": None})
def progress(*a):
    print(*v.probe.own_pids, flush=True)
    os._exit(0)
v.run([0], "deep", progress=progress)
"""


def test_a_daemon_that_dies_leaves_no_check_running(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-c", DAEMON_DIES, str(tmp_path)], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    pid = int(out.stdout.split()[0])
    assert eventually(lambda: not alive(pid), 10.0)  # PR_SET_PDEATHSIG


# -- what the child is given and gives back ----------------------------------------------------

def test_a_report_from_the_child_keeps_what_the_store_keeps(tmp_path: Path) -> None:
    outcome = child_validator(tmp_path).run([0, 1], "quick")
    checks = [c for g in outcome.report.gpus for c in g.checks]
    assert all(c.evidence for c in checks if c.result is Result.PASS)  # the store keeps a pass's evidence too
    assert any(round(c.seconds, 4) != c.seconds for c in checks)  # as timed, not rounded for people
    wire = json.loads(json.dumps(child.outcome_to_wire(outcome)))
    assert child.outcome_from_wire(wire) == outcome


def test_the_child_starts_from_root_with_the_daemons_log_level_and_a_cupy_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    monkeypatch.delenv("CUPY_CACHE_DIR", raising=False)
    seen = tmp_path / "seen"
    seen.mkdir()
    python = script(tmp_path, "look", f"pwd > {seen}/cwd\nenv > {seen}/env\ncat > {seen}/request\nexit 1\n")
    with caplog.at_level(logging.DEBUG, logger="rasd"):
        child_validator(tmp_path, python=python).run([0], "quick")
    assert (seen / "cwd").read_text().strip() == "/"  # no checkout in the working directory shadows rasd
    assert f"CUPY_CACHE_DIR={tmp_path / 'cache' / 'cupy'}\n" in (seen / "env").read_text()
    request = json.loads((seen / "request").read_text())
    assert request["log_level"] == logging.DEBUG and request["parent"] == os.getpid()


def test_a_refused_request_is_answered_without_a_traceback(tmp_path: Path) -> None:
    import subprocess

    request = {"backend": {"kind": "fake", "scenario": None}, "settings": {}, "lock_dir": str(tmp_path),
               "targets": [0], "level": "bogus", "parent": os.getpid()}
    out = subprocess.run([sys.executable, "-m", "rasd.sdc.child"], input=json.dumps(request),
                         capture_output=True, text=True, cwd="/", timeout=60)
    assert json.loads(out.stdout.splitlines()[-1])["error"].startswith("ValueError: unknown level 'bogus'")
    assert "Traceback" not in out.stderr
