"""The SDC service with every check in a child process (rasd.sdc.isolated), as on real GPUs:
what the daemon decides before a child starts, what it learns from one, and its shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rasd.backends import open_backend
from rasd.sdc.accusation import AccusationWorkflow
from rasd.sdc.history import SdcHistory
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.locks import GpuLocks
from rasd.sdc.service import SdcService
from rasd.store import Store
from tests.sdc.children import SLOW, alive, child_validator
from tests.sdc.conftest import FAST
from tests.waiting import eventually


def service(tmp_path: Path, settings=FAST, **kw) -> SdcService:  # type: ignore[no-untyped-def]
    return SdcService(settings, open_backend("fake", workload="idle"), Store(":memory:"), [].extend,
                      lock_dir=str(tmp_path / "locks"), isolate=True, **kw)


def test_checks_found_unavailable_by_a_child_are_not_retried_every_poll(
        tmp_path: Path, spawned: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # the child's NVML cannot load
    svc = service(tmp_path)
    try:
        checks = svc.checks()
        assert isinstance(checks, ChildValidator)
        checks.backend = {"kind": "nvml"}
        for _ in range(3):  # three health polls
            svc.maybe_run_periodic(time.time())
            assert eventually(lambda: not svc._periodic_running, 60.0)
        assert len(spawned) == 1  # one child; later polls only count
        assert svc.unavailable is not None and "NVML" in svc.unavailable  # known, as when a build here fails
        assert svc.unavailable_polls == 2
        with pytest.raises(ValueError, match="NVML"):
            svc.handlers()["validate"]({"gpus": [0]})  # and said to every request
    finally:
        svc.close()


def test_periodic_check_skips_a_gpu_a_validate_job_holds(tmp_path: Path, spawned: list) -> None:
    svc = service(tmp_path, SLOW)
    try:
        job = svc.handlers()["validate"]({"gpus": [0], "level": "deep"})["job"]
        assert eventually(lambda: svc._jobs[job].progress[1] > 0, 60.0)  # its child checks GPU 0
        assert 0 in svc.locks.held()  # as the in-process service holds it
        svc.maybe_run_periodic(time.time())
        assert eventually(lambda: not svc._periodic_running, 60.0)
        (periodic,) = [j for j in svc._jobs.values() if j.kind == "periodic"]
        assert periodic.result is not None and 0 not in periodic.result["checked"]
        assert len(spawned) == 1  # the deep check took the other GPUs as witnesses: no child for nothing
        assert svc._busy_until.get(0, 0.0) > time.time()  # asked again later, not every poll
    finally:
        svc.close(timeout=30)


def test_close_leaves_no_child_behind(tmp_path: Path, spawned: list) -> None:
    other = GpuLocks(str(tmp_path / "locks"))  # a standalone `rasd validate` holds GPU 0
    assert other.try_acquire(0)
    svc = service(tmp_path, close_timeout=1.5)  # as rasd.daemon builds it
    try:
        svc.handlers()["validate"]({"gpus": [0], "level": "quick", "wait_seconds": 120})
        assert eventually(lambda: bool(spawned), 30.0)
        assert not eventually(lambda: spawned[0].poll() is not None, 1.0)  # it waits for the lock
        svc.close()  # the daemon stops
        assert not alive(spawned[0].pid), "the child outlived close()"
    finally:
        other.release(0)


def test_an_accusation_does_not_retry_a_crashing_child_as_if_the_gpu_were_busy(
        tmp_path: Path, spawned: list) -> None:
    v = child_validator(tmp_path, python="/bin/false")
    wf = AccusationWorkflow(FAST, v, SdcHistory(Store(":memory:")), [].extend)
    finding = wf.investigate(wf.open(0, "job saw NaNs"), idle_wait_seconds=11.0)
    assert len(spawned) == 1
    assert finding.verdict.value == "inconclusive"
    assert "process ended with status 1" in finding.evidence["why"]  # not "GPU in use"


def test_a_periodic_check_whose_process_crashes_is_counted_as_the_check_process(tmp_path: Path,
                                                                                 spawned: list) -> None:
    from prometheus_client import CollectorRegistry

    from exporters.sections import sdc as section
    from rasd.model import NodeIdentity
    from rasd.snapshot import Snapshot

    svc = service(tmp_path)
    try:
        checks = svc.checks()
        assert isinstance(checks, ChildValidator)
        checks.python = "/bin/false"
        now = time.time()
        for _ in range(2):  # the second poll: the GPUs were checked (inconclusive), not due again yet
            svc.maybe_run_periodic(now)
            assert eventually(lambda: not svc._periodic_running, 60.0)
        assert len(spawned) == 1 and svc.unavailable is None
        snap = Snapshot(time_wall=now, node=NodeIdentity("n", "fake", None, None, None), gpus=(), sdc=svc.state())
        reg = CollectorRegistry()
        reg.register(type("C", (), {"collect": lambda self: section.collect(snap)})())
        labels = {"gpu": "0", "check": "process", "result": "inconclusive"}
        assert reg.get_sample_value("rasd_sdc_check_runs_total", labels) == 1
        assert svc.state().accusations == {}  # inconclusive accuses nobody
    finally:
        svc.close()
