"""A restart keeps the ladder's open decisions as the store holds them: the same rung, the same
degradations, the same rows open. The replay of recent events rebuilds the history the next
decisions weigh; it never lowers a stored decision nor closes a row it did not open."""

from __future__ import annotations

from pathlib import Path

from rasd.ladder.decision import Decision
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung, Scope
from rasd.store import Store

H, D = 3600.0, 86400.0


def _service(db: Path, now: float) -> LadderService:
    return LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=now)


def _rma_by_recurrence(db: Path, gpu: int = 3) -> float:
    """Xid 79 five times, 4 h apart (past the 3 h burst): an RMA. Returns when it opened."""
    svc = _service(db, 0.0)
    for k in range(5):
        t = 1000.0 + k * 4 * H
        svc.ingest([FaultEvent(t, gpu, FaultKind.XID, None, {"xid": 79})], t)
    assert [d.rung for d in svc.decisions_for(gpu)] == [Rung.RMA]
    assert svc.is_excluded(gpu)
    t_rma = svc.decisions_for(gpu)[0].time_wall
    svc.close()
    svc.store.close()
    return t_rma


def _agree(svc: LadderService) -> None:
    """The store's open rows are the ladder's open decisions, field for field (the all-clear of
    an SDC deep check aside: a record of the GPU's return, stored open, held by no ladder)."""
    rows = [r for r in svc.store.decisions(open_only=True)
            if not (r.body["fault"] == "sdc" and r.body["rung"] == "none"
                    and not r.body["investigate"])]
    stored = sorted((Decision.from_dict(r.body) for r in rows),
                    key=lambda d: (d.time_wall, d.gpu, -1 if d.link is None else d.link, d.fault))
    assert stored == svc._esc.open_decisions()


def _rma_rows(svc: LadderService, gpu: int) -> list[str]:
    return [r.state for r in svc.store.decisions(gpu=gpu) if r.body["rung"] == "rma"]


def test_an_rma_older_than_the_horizon_survives_a_restart(tmp_path):
    db = tmp_path / "r.db"
    t_rma = _rma_by_recurrence(db)
    # the board is not yet swapped 8 days later: the five Xids lie outside the replay
    svc = _service(db, t_rma + 8 * D)
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA]
    assert svc.decisions_for(3)[0].time_wall == t_rma
    assert svc.is_excluded(3)
    assert _rma_rows(svc, 3) == ["open"]
    _agree(svc)
    svc.ingest([], t_rma + 30 * D)  # an RMA waits for the board however quiet it is
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA] and _rma_rows(svc, 3) == ["open"]
    _agree(svc)
    svc.store.close()


def test_an_rma_within_the_horizon_is_not_lowered_by_the_replay(tmp_path):
    db = tmp_path / "r.db"
    t_rma = _rma_by_recurrence(db)
    # 6.5 days later the replay reaches back to only three of the five Xids (a reboot_node)
    svc = _service(db, t_rma + 6.5 * D)
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA]
    assert svc.is_excluded(3)
    _agree(svc)
    svc.ingest([], t_rma + 7.1 * D)  # what a reboot_node would expire at
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA] and _rma_rows(svc, 3) == ["open"]
    _agree(svc)
    # the Xid back: the open RMA covers it, nothing new opens
    t = t_rma + 7.2 * D
    assert svc.ingest([FaultEvent(t, 3, FaultKind.XID, None, {"xid": 79})], t) == []
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA]
    _agree(svc)
    svc.store.close()


def test_a_second_restart_keeps_the_rma(tmp_path):
    db = tmp_path / "r.db"
    t_rma = _rma_by_recurrence(db)
    for days in (6.5, 8.0, 40.0):
        svc = _service(db, t_rma + days * D)
        assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA], days
        _agree(svc)
        svc.close()
        svc.store.close()


def test_a_lower_decision_still_expires_while_rasd_was_down(tmp_path):
    db = tmp_path / "r.db"
    svc = _service(db, 0.0)
    svc.ingest([FaultEvent(100.0, 2, FaultKind.XID, None, {"xid": 79})], 100.0)
    assert [d.rung for d in svc.decisions_for(2)] == [Rung.REBOOT_NODE]
    svc.store.close()
    again = _service(db, 100.0 + 8 * D)  # quiet for more than the 7-day window
    assert again.decisions_for(2) == []
    assert [r.state for r in again.store.decisions(gpu=2)] == ["expired"]
    _agree(again)
    again.store.close()


def test_a_decision_the_replay_does_not_rebuild_is_kept_open(tmp_path):
    db = tmp_path / "r.db"
    svc = _service(db, 0.0)
    svc.ingest([FaultEvent(100.0, 2, FaultKind.XID, None, {"xid": 79})], 100.0)
    svc.store.close()
    # a reset_gpu opened on GPU 5 by a rule whose reasons the replay cannot see again (here:
    # written directly, as an earlier rasd would have stored it)
    store = Store(db)
    kept = Decision(150.0, 5, None, Rung.RESET_GPU, Scope.GPU, "kept", (), ("drain",), "xid:48",
                    "xid")
    store.add_decision(kept.to_dict())
    store.close()
    again = _service(db, 200.0)
    assert again.decisions_for(5) == [kept]
    _agree(again)
    again.ingest([], 150.0 + 7.1 * D)  # its fault stayed away 7 days: it expires like any other
    assert again.decisions_for(5) == []
    assert [r.state for r in again.store.decisions(gpu=5)] == ["expired"]
    _agree(again)
    again.store.close()


def test_the_store_closes_a_decision_only_at_its_rung(tmp_path):
    store = Store(tmp_path / "r.db")
    body = Decision(5.0, 1, None, Rung.RMA, Scope.GPU,
                    "r", (), ("exclude_gpu",), "xid:79", "xid").to_dict()
    store.add_decision(body)
    assert store.close_decision(5.0, 1, None, "xid:79", "expired", 9.0, rung="reboot_node") == 0
    store.record_step(None, (), [(5.0, 1, None, "xid:79", "expired", 9.0, "reboot_node")])
    assert [r.state for r in store.decisions()] == ["open"]
    assert store.close_decision(5.0, 1, None, "xid:79", "remedied", 9.0, rung="rma") == 1
    assert [r.state for r in store.decisions()] == ["remedied"]
    store.close()


def test_an_sdc_suspicion_stays_and_an_all_clear_is_not_reopened(tmp_path):
    db = tmp_path / "r.db"
    svc = _service(db, 0.0)
    svc.ingest([FaultEvent(10.0, 4, FaultKind.SDC, None, {"verdict": "suspect"}),
                FaultEvent(12.0, 6, FaultKind.SDC, None, {"verdict": "suspect"}),
                FaultEvent(20.0, 6, FaultKind.SDC, None, {"verdict": "cleared"})], 20.0)
    assert svc.is_excluded(4) and not svc.is_excluded(6) and svc.decisions_for(6) == []
    svc.store.close()
    again = _service(db, 100.0)
    assert again.is_excluded(4)
    assert again.decisions_for(6) == [] and not again.is_excluded(6)
    _agree(again)
    again.store.close()


def test_two_stored_open_rows_of_one_fault_leave_the_higher(tmp_path):
    # what an earlier rasd could leave: its replay reopened the fault lower beside a stale RMA
    store = Store(tmp_path / "r.db")
    rma = Decision(50.0, 3, None, Rung.RMA, Scope.GPU, "five Xid 79", ("technician",),
                   ("exclude_gpu",), "xid:79", "xid")
    low = Decision(60.0, 3, None, Rung.REBOOT_NODE, Scope.NODE, "Xid 79", (), (), "xid:79", "xid")
    store.add_decision(rma.to_dict())
    store.add_decision(low.to_dict())
    store.close()
    svc = _service(tmp_path / "r.db", 100.0)
    assert svc.decisions_for(3) == [rma] and svc.is_excluded(3)
    assert [(r.body["rung"], r.state) for r in svc.store.decisions(gpu=3)] == \
        [("rma", "open"), ("reboot_node", "superseded")]
    _agree(svc)
    svc.store.close()
