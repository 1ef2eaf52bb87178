"""Only a cure that was carried out says whether it holds: a reboot (or RMA request) that could
not be run escalates nothing, and a fault still present at start after a cure is judged again."""

from __future__ import annotations

import logging
from pathlib import Path

from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.escalate import Escalator
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store

E, K = FaultEvent, FaultKind


def remedy(t: float, gpu: int, action: str, result: str) -> FaultEvent:
    return E(t, gpu, K.REMEDY, None, {"action": action, "result": result})


def open_rungs(esc: Escalator) -> list[tuple[int, str, str]]:
    return [(d.gpu, d.rung.label, d.fault) for d in esc.open_decisions()]


def node_with_three_faults() -> Escalator:
    esc = Escalator()
    esc.feed(E(100.0, 1, K.XID, None, {"xid": 43}))  # an application's exception on GPU 1
    esc.feed(E(110.0, 6, K.XID, None, {"xid": 13}))  # restart the process on GPU 6
    esc.feed(E(120.0, 3, K.XID, None, {"xid": 79}))  # GPU 3 fell off the bus: reboot
    return esc


def test_a_reboot_that_failed_sends_no_gpu_to_rma() -> None:
    esc = node_with_three_faults()
    before = open_rungs(esc)
    assert (3, "reboot_node", "xid:79") in before
    step = esc.feed(remedy(130.0, 3, "reboot_node", "failed"))
    assert list(step) == [] and not step.ended  # nothing opens, nothing ends
    assert open_rungs(esc) == before  # the reboot is still asked for; no board climbed
    assert not esc.history.node_remedies  # it did not happen: not a remedy on the node
    # once a reboot is carried out it covers the node as always
    step = esc.feed(remedy(200.0, 3, "reboot_node", "ok"))
    assert sorted(c.decision.gpu for c in step.closed) == [1, 3, 6]
    # and the fault back after it repeats the reboot (1 of 2 before an RMA), no RMA yet
    d = esc.feed(E(300.0, 3, K.XID, None, {"xid": 79}))[0]
    assert d.rung is Rung.REBOOT_NODE and "came back after reboot_node" in d.reason


def test_an_rma_request_concerns_its_own_board_only() -> None:
    esc = node_with_three_faults()
    for i in range(1, 5):  # GPU 3 off the bus 5 times in a day (its bursts: 3 h): RMA
        esc.feed(E(120.0 + i * 4 * 3600, 3, K.XID, None, {"xid": 79}))
    assert (3, "rma", "xid:79") in open_rungs(esc)
    others = [r for r in open_rungs(esc) if r[0] != 3]
    assert esc.feed(remedy(16 * 3600.0 + 100, 3, "rma", "failed")) == []
    assert [r for r in open_rungs(esc) if r[0] != 3] == others  # no other board sent back
    step = esc.feed(remedy(16 * 3600.0 + 200, 3, "rma", "ok"))
    assert all(c.decision.gpu == 3 for c in step.closed)
    assert [r for r in open_rungs(esc) if r[0] != 3] == others  # nor remedied by it


def test_a_failed_reset_still_climbs_to_a_reboot() -> None:
    esc = Escalator()
    esc.feed(E(0.0, 2, K.XID, None, {"xid": 62}))
    d = esc.feed(remedy(5.0, 2, "reset_gpu", "failed"))[0]
    assert d.rung is Rung.REBOOT_NODE and d.escalated


def test_service_reboot_that_cannot_run_or_times_out_is_reported_once(
        tmp_path: Path, caplog) -> None:
    runs = []
    for argv in (("/nonexistent/rasd-reboot",), ("sleep", "30")):  # cannot run; times out
        acts = ActionSettings(enforce=True, timeout_seconds=0.5, min_interval_seconds=0,
                              commands={"reboot_node": argv})
        svc = LadderService(LadderSettings(), acts, Store(tmp_path / f"{len(runs)}.db"), "n",
                            actuator=Actuator(acts, synchronous=True, wall=lambda: 140.0),
                            now_wall=0)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rasd.ladder"):
            out = svc.ingest([E(100.0, 1, K.XID, None, {"xid": 43}),
                              E(110.0, 6, K.XID, None, {"xid": 13}),
                              E(120.0, 3, K.XID, None, {"xid": 79}),
                              E(130.0, 5, K.XID, None, {"xid": 79})], 130.0)
        result = "error" if argv[0].startswith("/") else "timeout"
        assert [a.result for a in svc.store.actions() if a.kind == "reboot_node"] == \
            [result, result]  # both reboots tried, neither carried out
        assert all(d.rung < Rung.RMA for d in out)
        assert [(g, [d.rung.label for d in svc.decisions_for(g)]) for g in (1, 3, 5, 6)] == [
            (1, ["exception"]), (3, ["reboot_node"]), (5, ["reboot_node"]),
            (6, ["restart_process"])]  # still asked for, of the operator now
        state = svc.state(140.0)
        assert state.node_rung is Rung.REBOOT_NODE and not state.rma_queue
        assert state.actions[(5, "reboot_node", result)] == 1
        said = [r.getMessage() for r in caplog.records if "remedy_not_done" in r.getMessage()]
        assert len(said) == 1 and f"result={result}" in said[0], said
        svc.close()
        svc.store.close()
        runs.append(result)


def at_start(t: float, gpu: int = 2) -> FaultEvent:
    """The driver asks for a node reboot (NVML's recovery action) at the GPU's first poll."""
    return E(t, gpu, K.RECOVERY_ACTION, None,
             {"action": "node_reboot", "code": 2, "at_start": True})


def boot(db: Path, t: float, runner: RecordingRunner) -> LadderService:
    acts = ActionSettings(enforce=True, min_interval_seconds=0, commands={
        "reboot_node": ("reboot",), "reset_gpu": ("nvidia-smi", "-r")})
    return LadderService(LadderSettings(), acts, Store(db), "n",
                         actuator=Actuator(acts, runner, synchronous=True, wall=lambda: t + 1),
                         now_wall=t)


def test_fault_still_present_at_start_after_the_cure_did_not_hold(tmp_path: Path) -> None:
    db, runner = tmp_path / "r.db", RecordingRunner()
    svc = boot(db, 1000.0, runner)
    assert [d.rung for d in svc.ingest([at_start(1000.0)], 1000.0)] == [Rung.REBOOT_NODE]
    assert runner.calls == [("reboot",)] and not svc.decisions_for(2)  # rebooted, remedied
    svc.close()
    svc.store.close()
    # the next boot: the driver still asks for a reboot, so the reboot did not hold
    svc = boot(db, 1900.0, runner)
    d = svc.ingest([at_start(1900.0)], 1900.0)
    assert [x.rung for x in d] == [Rung.REBOOT_NODE]
    assert "came back after reboot_node" in d[0].reason
    assert runner.calls == [("reboot",)] * 2
    svc.close()
    svc.store.close()
    # and again: two reboots did not hold, the board goes back
    svc = boot(db, 2800.0, runner)
    d = svc.ingest([at_start(2800.0)], 2800.0)
    assert [x.rung for x in d] == [Rung.RMA] and svc.is_excluded(2)
    svc.close()
    svc.store.close()


def test_fault_at_start_with_no_cure_since_is_not_judged_again(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    svc = LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=1000.0)
    assert svc.ingest([at_start(1000.0)], 1000.0)  # advisory: nothing ran, decision open
    # a reset of another GPU that worked is no cure for GPU 2
    svc.ingest([remedy(1100.0, 4, "reset_gpu", "ok")], 1100.0)
    svc.close()
    svc.store.close()
    svc = LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=1900.0)
    assert svc.ingest([at_start(1900.0)], 1900.0) == []  # judged already
    assert [d.rung for d in svc.decisions_for(2)] == [Rung.REBOOT_NODE]  # still open
    svc.close()
    svc.store.close()
