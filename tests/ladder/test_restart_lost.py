"""A lost GPU's decision is kept open by the daemon's ticks that find the GPU still lost (the loss
is reported once); those are not stored. A restart longer than the decision window after the
loss must not expire it before the first poll has said whether the GPU is still lost: still
lost, it stays open; back, it expires then, as it would have."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rasd.daemon import Daemon
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Health, Rung
from rasd.store import Store
from tests.daemons import daemon_config

H, D = 3600.0, 86400.0
LOST_AT = 1000.0


def _service(db: Path, now: float) -> LadderService:
    return LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=now)


def _lost_for_days(db: Path, days: float) -> float:
    """GPU 3 lost, and still lost at every tick for ``days`` (its reboot held back: advisory
    mode), then the daemon stops. Returns when it stopped."""
    svc = _service(db, LOST_AT)
    svc.ingest([FaultEvent(LOST_AT, 3, FaultKind.GPU_LOST, None, {"reason": "GPU is lost"})],
               LOST_AT)
    assert svc.rung(3) is Rung.REBOOT_NODE
    t = LOST_AT
    while t < LOST_AT + days * D:
        t += H
        svc.ingest([], t)
        svc.still_lost([3], t)
    assert svc.rung(3) is Rung.REBOOT_NODE
    svc.close()
    svc.store.close()
    return t


def _states(svc: LadderService) -> list[str]:
    return [r.state for r in svc.store.decisions(gpu=3)]


def test_a_restart_keeps_a_lost_gpus_decision_until_the_first_poll_says(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    stopped = _lost_for_days(db, 8)  # past the 7-day decision window
    t = stopped + 10 * 60
    svc = _service(db, t)
    assert svc.rung(3) is Rung.REBOOT_NODE and _states(svc) == ["open"]
    svc.ingest([], t)  # the first tick's pass comes before its lost GPUs are told
    assert svc.rung(3) is Rung.REBOOT_NODE and _states(svc) == ["open"]
    svc.still_lost([3], t)  # still lost
    for k in range(1, 5):
        svc.ingest([], t + k * D)
        svc.still_lost([3], t + k * D)
    assert svc.rung(3) is Rung.REBOOT_NODE and _states(svc) == ["open"]
    svc.store.close()


def test_a_gpu_back_at_the_first_poll_expires_its_decision_then(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    stopped = _lost_for_days(db, 8)
    t = stopped + 10 * 60
    svc = _service(db, t)
    svc.ingest([], t)
    svc.still_lost([], t)  # back (the node was rebooted, the GPU reseated)
    assert svc.rung(3) is Rung.NONE
    (row,) = svc.store.decisions(gpu=3)
    assert row.state == "expired" and row.closed_wall == t
    svc.store.close()


def test_a_gpu_not_polled_yet_keeps_its_decision_held(tmp_path: Path) -> None:
    """A tick before the GPU's first poll knows nothing of it: the decision waits for a tick
    that does."""
    db = tmp_path / "r.db"
    stopped = _lost_for_days(db, 8)
    t = stopped + 10 * 60
    svc = _service(db, t)
    svc.ingest([], t)
    svc.still_lost([], t, unknown=[3])
    svc.ingest([], t + 1)
    assert svc.rung(3) is Rung.REBOOT_NODE and _states(svc) == ["open"]
    svc.still_lost([], t + 2)
    assert svc.rung(3) is Rung.NONE and _states(svc) == ["expired"]
    svc.store.close()


def test_other_decisions_still_expire_at_the_restart(tmp_path: Path) -> None:
    """Only the lost GPU's decision waits: another GPU's quiet decision expires at the start as
    before."""
    db = tmp_path / "r.db"
    svc = _service(db, 0.0)
    svc.ingest([FaultEvent(500.0, 1, FaultKind.XID, None, {"xid": 62})], 500.0)
    svc.close()
    svc.store.close()
    stopped = _lost_for_days(db, 8)
    svc = _service(db, stopped + 60)
    assert [r.state for r in svc.store.decisions(gpu=1)] == ["expired"]
    assert svc.rung(3) is Rung.REBOOT_NODE
    svc.store.close()


# ---------------------------------------------------------------------------- the daemon

LOST_SCENARIO = """
[[event]]
kind = "fall_off_bus"
at = 0.0
gpu = 3
"""


@pytest.mark.parametrize("still_lost", [True, False])
def test_a_daemon_restarted_days_later_asks_the_first_poll(fake, clock, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          still_lost: bool) -> None:
    cfg = daemon_config(tmp_path)
    base = time.time() - 9 * D
    first = Daemon(cfg, fake(LOST_SCENARIO, clock=clock), hostname="node-t",
                   wall=lambda: base + clock())
    try:
        for p in first.pollers:
            p.poll_once()
        snap = first.tick()
        assert snap.ladder is not None and snap.ladder.gpus[3].open
    finally:
        first.stop()
    later = base + 8 * D  # the previous run's ticks kept it open meanwhile (not stored)
    d = Daemon(cfg, fake(LOST_SCENARIO if still_lost else None, clock=clock), hostname="node-t",
               wall=lambda: later + clock())
    try:
        snap = d.tick()  # before the first poll: nothing known of GPU 3 yet
        assert snap.ladder is not None and snap.ladder.gpus[3].open
        for p in d.pollers:
            p.poll_once()
        snap = d.tick()
        assert {g.index: g.health for g in snap.gpus}[3] is (
            Health.LOST if still_lost else Health.UP)
        assert snap.ladder is not None and bool(snap.ladder.gpus[3].open) is still_lost
        (row,) = d.store.decisions(gpu=3)
        assert row.state == ("open" if still_lost else "expired")
    finally:
        d.stop()
