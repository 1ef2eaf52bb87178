"""Validate jobs and accusations: every client gets its own result; a stop never decides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rasd.sdc.service import SdcService
from rasd.store import Store
from tests.waiting import eventually


def _wait(cond: Callable[[], object], timeout: float = 60.0) -> bool:
    return eventually(cond, timeout)


def test_thirty_concurrent_validations_each_keep_their_result(fake, fast, tmp_path: Path) -> None:
    svc = SdcService(fast, fake(workload="idle", gpus=2), Store(":memory:"), lambda ev: None,
                     lock_dir=str(tmp_path / "locks"))
    try:
        op = svc.handlers()["validate"]
        jobs = [op({"gpus": [i % 2], "level": "quick"})["job"] for i in range(30)]
        # clients poll slowly: every job finishes before any client reads its result
        assert _wait(lambda: all(op({"job": j})["done"] for j in jobs[-1:]) and
                     all(svc._jobs[j].done for j in jobs))
        for i, j in enumerate(jobs):
            reply = op({"job": j})
            assert reply["done"] and reply["report"] is not None, (j, reply)
            assert [g["gpu"] for g in reply["report"]["gpus"]] == [i % 2]
    finally:
        svc.close()


def test_a_stop_leaves_a_waiting_accusation_open_and_a_restart_resumes_it(fake, fast, tmp_path: Path) -> None:
    path = str(tmp_path / "rasd.db")
    events: list = []
    # the accused GPU is still running the job's processes: the check waits for it to be idle
    busy = fake(gpus=2)
    svc = SdcService(fast, busy, Store(path), events.extend, lock_dir=str(tmp_path / "locks"))
    svc.handlers()["accuse"]({"gpu": 1, "reason": "loss spike"})
    time.sleep(0.3)
    svc.close(timeout=10.0)  # the daemon stops
    store = Store(path)
    (acc,) = store.accusations(gpu=1)
    assert acc.verdict is None, f"stored {acc.verdict!r} with evidence {acc.evidence} on stop"
    assert [e.details["verdict"] for e in events if e.gpu == 1] == ["suspect"]
    # after the restart the GPU is idle: the accusation resumes and gets a real verdict
    events.clear()
    svc2 = SdcService(fast, fake(workload="idle", gpus=2), store, events.extend, lock_dir=str(tmp_path / "locks"))
    try:
        assert 1 in svc2.state().suspects
        assert _wait(lambda: any(e.details.get("verdict") == "cleared" for e in events))
        (acc,) = store.accusations(gpu=1)
        assert acc.verdict == "cleared" and acc.evidence["rounds"]
    finally:
        svc2.close()
