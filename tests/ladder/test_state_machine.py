"""The ladder as a state machine: steps, the one transaction per event, remedy results queued."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RunOutcome
from rasd.ladder.escalate import Escalator, Outcome
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store

E, K = FaultEvent, FaultKind


def test_step_names_opened_superseded_and_closed():
    esc = Escalator()
    s1 = esc.feed(E(0, 0, K.XID, None, {"xid": 62}))
    assert [d.rung for d in s1.opened] == [Rung.RESET_GPU] and not s1.ended
    s2 = esc.feed(E(1, 0, K.GPU_LOST, None, {}))
    assert [d.fault for d in s2.opened] == ["gpu_lost"]
    assert [(c.decision.fault, c.outcome) for c in s2.superseded] == [("xid:62", "superseded")]
    assert not s2.closed
    s3 = esc.feed(E(2, 0, K.REMEDY, None, {"action": "reboot_node", "result": "ok"}))
    assert not s3.opened and not s3.superseded
    assert [(c.decision.fault, c.outcome) for c in s3.closed] == [("gpu_lost", "remedied")]
    assert esc.open_decisions() == []


def test_lower_rung_never_supersedes_and_rma_is_never_remedied():
    esc = Escalator()
    esc.feed(E(0, 0, K.REMAP, None, {"failure": True}))  # RMA
    step = esc.feed(E(1, 0, K.XID, None, {"xid": 62}))  # a reset: below it
    assert not step.superseded
    step = esc.feed(E(2, 0, K.REMEDY, None, {"action": "reset_gpu", "result": "ok"}))
    assert [c.decision.fault for c in step.closed] == ["xid:62"]
    assert [d.fault for d in esc.open_decisions()] == ["remap_failure"]


def test_sdc_clearance_is_a_transition():
    esc = Escalator()
    esc.feed(E(0, 4, K.SDC, None, {"verdict": "suspect"}))
    step = esc.feed(E(1, 4, K.SDC, None, {"verdict": "cleared"}))
    assert [c.outcome for c in step.closed] == [Outcome.CLEARED.value]
    assert step.opened[0].rung is Rung.NONE


def test_event_and_its_decisions_are_one_transaction(tmp_path):
    store = Store(tmp_path / "r.db")
    # a decision body the decisions table refuses (NOT NULL rung): the event must not stay behind
    with pytest.raises(sqlite3.IntegrityError):
        store.record_step(E(1.0, 0, K.THERMAL, None, {}),
                          [{"time": 1.0, "gpu": 0, "link": None, "rung": None, "scope": "gpu",
                            "fault": "thermal", "source": "thermal", "reason": "x"}], [])
    assert store.faults() == [] and store.decisions() == []
    svc = LadderService(LadderSettings(), ActionSettings(), store, "n", now_wall=0)
    svc.ingest([E(2.0, 0, K.XID, None, {"xid": 62}), E(3.0, 0, K.GPU_LOST, None, {})], 3.0)
    assert len(store.faults()) == 2
    assert [(r.body["fault"], r.state) for r in store.decisions()] == \
        [("xid:62", "superseded"), ("gpu_lost", "open")]


class _Gate:
    """A runner that waits until the test lets it finish (the action thread is busy meanwhile)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.threads: list[str] = []

    def __call__(self, argv, timeout, tail_bytes):
        self.threads.append(threading.current_thread().name)
        self.go.wait(5)
        return RunOutcome("ok", 0, "", 0.0)


def test_remedy_results_wait_for_the_tick_never_reenter_from_the_action_thread(tmp_path):
    runner = _Gate()
    acts = ActionSettings(enforce=True, min_interval_seconds=0,
                          commands={"reset_gpu": ("nvidia-smi", "-r")})
    actuator = Actuator(acts, runner)
    store = Store(tmp_path / "r.db")
    now = time.time()  # the actuator stamps results with the wall clock
    svc = LadderService(LadderSettings(), acts, store, "n", actuator=actuator, now_wall=now)
    ds = svc.ingest([E(now, 0, K.XID, None, {"xid": 62})], now)
    assert [d.rung for d in ds] == [Rung.RESET_GPU]
    runner.go.set()
    actuator._pool.shutdown(wait=True)  # the reset ran and reported on the action thread
    assert runner.threads and runner.threads[0].startswith("rasd-action")
    # nothing reached the ladder or the store from the action thread
    assert store.actions() == [] and svc.rung(0) is Rung.RESET_GPU
    assert all(f.event.kind is not K.REMEDY for f in store.faults())
    svc.tick(time.time())
    assert [(a.kind, a.result) for a in store.actions()] == [("reset_gpu", "ok")]
    assert svc.rung(0) is Rung.NONE
    assert [r.state for r in store.decisions()] == ["remedied"]
