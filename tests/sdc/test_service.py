from __future__ import annotations

import time
from typing import Callable

import pytest

from rasd.model import FaultKind
from rasd.sdc.service import SdcService
from rasd.store import Store
from tests.waiting import eventually

SDC_GPU1 = """
[workload]
kind = "idle"
[[sdc_fault]]
gpu = 1
kind = "gemm_bitflip"
bit = 29
dtypes = ["float32"]
"""



def _wait(cond: Callable[[], object], timeout: float = 30.0) -> bool:
    return eventually(cond, timeout)


@pytest.fixture
def service(fake, fast, tmp_path):
    made = []

    def make(text=None, store=None, settings=fast, **kw):
        be = fake(text, **kw) if text is not None else fake(workload="idle", **kw)
        events = []
        svc = SdcService(settings, be, store or Store(":memory:"), events.extend, lock_dir=str(tmp_path / "locks"))
        made.append(svc)
        return svc, events

    yield make
    for svc in made:
        svc.close()


def _verdicts(events, gpu):
    return [e.details["verdict"] for e in events if e.gpu == gpu and e.kind is FaultKind.SDC]


def test_accusation_of_a_corrupting_gpu_is_confirmed_with_evidence(service) -> None:
    store = Store(":memory:")
    svc, events = service(SDC_GPU1, store=store)
    reply = svc.handlers()["accuse"]({"gpu": 1, "reason": "loss spike at step 1200"})
    assert reply["verdict"] == "suspect"
    assert 1 in svc.state().suspects
    assert _wait(lambda: len(_verdicts(events, 1)) == 2)
    assert _verdicts(events, 1) == ["suspect", "confirmed"]
    evidence = events[-1].details["evidence"]
    assert evidence["rounds"].count("fail") >= 2 and evidence["failures"]
    assert 1 not in svc.state().suspects
    (acc,) = store.accusations(gpu=1)
    assert acc.verdict == "confirmed" and acc.reason == "loss spike at step 1200"
    assert any(r.result == "fail" for r in store.sdc_results(gpu=1))


def test_accusation_of_a_healthy_gpu_is_cleared_but_kept(service) -> None:
    store = Store(":memory:")
    svc, events = service(store=store)
    svc.handlers()["accuse"]({"gpu": 0, "reason": "nan in loss"})
    assert _wait(lambda: len(_verdicts(events, 0)) == 2)
    assert _verdicts(events, 0) == ["suspect", "cleared"]
    assert [a.verdict for a in store.accusations(gpu=0)] == ["cleared"]
    assert svc.state().accusations[(0, "cleared")] == 1


def test_repeated_unreproduced_accusations_flag_a_technician(service) -> None:
    store = Store(":memory:")
    now = time.time()
    for i in range(2):
        aid = store.add_accusation(0, "old", now - 3600 * (i + 1))
        store.close_accusation(aid, "cleared", {}, now - 3000 * (i + 1))
    svc, events = service(store=store)
    reply = svc.accuse(0, "third time")
    assert reply["escalated"]
    assert _wait(lambda: len(_verdicts(events, 0)) == 2)
    assert events[-1].details["evidence"]["technician"] is True
    assert 0 in svc.state().technician


def test_open_accusation_survives_a_restart(service, tmp_path) -> None:
    path = str(tmp_path / "rasd.db")
    store = Store(path)
    store.add_accusation(1, "before restart", time.time())
    svc, events = service(SDC_GPU1, store=store)
    assert 1 in svc.state().suspects
    assert _wait(lambda: "confirmed" in _verdicts(events, 1))


def test_periodic_check_never_blocks_and_accuses_on_failure(service) -> None:
    svc, events = service(SDC_GPU1)
    t0 = time.perf_counter()
    svc.maybe_run_periodic(time.time())
    assert time.perf_counter() - t0 < 0.5
    assert _wait(lambda: "confirmed" in _verdicts(events, 1))
    st = svc.state()
    assert {c.check for c in st.checks if c.gpu == 0} >= {"golden_gemm", "memory"}
    assert all(c.result == "pass" for c in st.checks if c.gpu == 0)
    before = sum(st.runs.values())
    svc.maybe_run_periodic(time.time())  # not due again for periodic_interval_seconds
    time.sleep(0.2)
    assert all(j["kind"] != "periodic" or j["done"] for j in svc.handlers()["sdc_status"]({})["jobs"])
    assert sum(svc.state().runs.values()) >= before


def test_validate_op_runs_a_job_and_reports(service) -> None:
    svc, _ = service(SDC_GPU1)
    job = svc.handlers()["validate"]({"gpus": "all", "level": "quick"})
    assert _wait(lambda: svc.handlers()["validate"]({"job": job["job"]})["done"])
    report = svc.handlers()["validate"]({"job": job["job"]})["report"]
    assert report["result"] == "fail"
    assert [g["gpu"] for g in report["gpus"] if g["result"] == "fail"] == [1]


def test_bad_requests_are_refused_with_a_reason(service) -> None:
    svc, _ = service()
    h = svc.handlers()
    with pytest.raises(ValueError, match="reason"):
        h["accuse"]({"gpu": 0, "reason": " "})
    with pytest.raises(ValueError, match="no GPU 42"):
        h["accuse"]({"gpu": 42, "reason": "x"})
    with pytest.raises(ValueError, match="level"):
        h["validate"]({"level": "extreme"})
    with pytest.raises(ValueError, match="no job"):
        h["validate"]({"job": 999})


def test_a_busy_gpu_is_not_asked_again_every_poll(service) -> None:
    """A node running a job: one look at the processes, then none until the recheck time."""
    from rasd.sdc.service import BUSY_RECHECK_SECONDS

    svc, _ = service("[workload]\nkind = \"training\"\n")
    now = time.time()
    svc.maybe_run_periodic(now)
    assert _wait(lambda: all(j["done"] for j in svc.handlers()["sdc_status"]({})["jobs"]))
    jobs = len(svc.handlers()["sdc_status"]({})["jobs"])
    assert jobs == 1
    for k in range(1, 5):  # the next polls start no worker and ask NVML nothing
        svc.maybe_run_periodic(now + k)
    assert len(svc.handlers()["sdc_status"]({})["jobs"]) == jobs
    svc.maybe_run_periodic(now + BUSY_RECHECK_SECONDS + 1)
    assert len(svc.handlers()["sdc_status"]({})["jobs"]) == jobs + 1
