"""Stopping the daemon: the ladder's actuator ends before the scheduler closes. Plans running
finish and are recorded; plans still queued are cancelled, each logged, and never reach the
scheduler's gate (no drain while rasd stops, no write to a closed ledger). Against a real Slurm."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from rasd.daemon import close_order
from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind
from rasd.scheduler.build import build_service
from rasd.service import Bound
from rasd.store import Store
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import now_clock, sinfo
from tests.waiting import eventually


def test_close_order_puts_the_scheduler_after_the_ladder() -> None:
    services = [Bound(name, object(), lambda c: c)  # type: ignore[arg-type]
                for name in ("ladder", "sdc", "power", "scheduler")]
    assert [b.name for b in close_order(services)] == ["power", "sdc", "ladder", "scheduler"]


def test_queued_plans_are_cancelled_and_logged_at_stop(slurm: SlurmCluster, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = now_clock()
    db = tmp_path / "rasd.db"
    settings_kw: dict[str, Any] = {"kind": "slurm", "node_name": slurm.node,
                                   "slurm_conf": str(slurm.conf), "partition": slurm.partition}
    from rasd.scheduler.settings import SchedulerSettings

    sched = build_service(SchedulerSettings(**settings_kw), True, str(db), wall=clock,
                          clock=clock, synchronous=True)
    actions = ActionSettings(enforce=True, min_interval_seconds=0, commands={
        "reboot_node": ("reboot",), "restart_process": ("restart",)})
    runner = RecordingRunner(seconds=0.5)
    act = Actuator(actions, runner, wall=clock)  # four action threads, as the daemon's
    act.gate = sched.gate
    sched.submit = act.submit
    store = Store(db)
    ladder = LadderService(LadderSettings(), actions, store, "h", actuator=act, now_wall=clock())
    for gpu, xid in ((0, 13), (1, 13), (2, 13), (4, 13), (3, 79)):  # the reboot waits its turn
        ladder.ingest([FaultEvent(clock(), gpu, FaultKind.XID, None, {"xid": xid})], clock())
    services = [Bound("ladder", ladder, lambda c: c), Bound("scheduler", sched, lambda c: c)]
    for b in close_order(services):  # as Daemon.stop() closes them
        b.service.close()
    store.close()
    assert runner.calls.count(("restart",)) == 4  # those running finished
    assert ("reboot",) not in runner.calls
    assert sinfo(slurm, slurm.node) == ("idle", "none")  # and the node was not taken out for it
    cancelled = [r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("action_cancelled")]
    assert cancelled == ["action_cancelled gpu=3 link=None rung=reboot_node why=shutdown "
                         "detail='not run; the decision stays open'"]
    assert "scheduler_pass_failed" not in caplog.text and "Traceback" not in caplog.text


def test_a_plan_cancelled_at_stop_is_planned_again_after_the_restart(
        slurm: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reboot cancelled while rasd stopped: its decision stays open, and the next start
    plans it again through the scheduler's gate (the node taken out first), once."""
    caplog.set_level(logging.INFO)
    clock = now_clock()
    db = tmp_path / "rasd.db"
    from rasd.scheduler.settings import SchedulerSettings

    settings = SchedulerSettings(kind="slurm", node_name=slurm.node, slurm_conf=str(slurm.conf),
                                 partition=slurm.partition, retry_seconds=10)
    actions = ActionSettings(enforce=True, min_interval_seconds=0, commands={
        "reboot_node": ("reboot",), "restart_process": ("restart",)})

    def start(runner: RecordingRunner) -> tuple[Any, LadderService, Store]:
        sched = build_service(settings, True, str(db), wall=clock, clock=clock,
                              synchronous=True)
        act = Actuator(actions, runner, wall=clock)
        act.gate = sched.gate
        sched.submit = act.submit
        store = Store(db)
        return sched, LadderService(LadderSettings(), actions, store, "h", actuator=act,
                                    now_wall=clock()), store

    first = RecordingRunner(seconds=0.5)
    sched, ladder, store = start(first)
    for gpu, xid in ((0, 13), (1, 13), (2, 13), (4, 13), (3, 79)):  # the reboot waits its turn
        ladder.ingest([FaultEvent(clock(), gpu, FaultKind.XID, None, {"xid": xid})], clock())
    for b in close_order([Bound("ladder", ladder, lambda c: c),
                          Bound("scheduler", sched, lambda c: c)]):
        b.service.close()
    store.close()
    assert ("reboot",) not in first.calls and sinfo(slurm, slurm.node) == ("idle", "none")
    clock.advance(30)
    again = RecordingRunner()
    sched, ladder, store = start(again)
    for _ in range(3):  # the daemon's passes: the ladder's stage, then the scheduler's
        ladder.tick(clock())
        assert eventually(lambda: ("reboot",) in again.calls, 10)
        sched.tick(clock(), ladder.decisions_for(3))
        clock.advance(11)
    ladder.close()
    assert again.calls == [("reboot",)]  # the restarts that ran are not repeated
    assert sinfo(slurm, slurm.node) == ("drained", "rasd: xid 79 gpu 3 -> reboot_node")
    assert ladder.decisions_for(3) == []  # the reboot worked: remedied
    assert sum("event=ladder_resubmitted" in r.getMessage() for r in caplog.records) == 1
    sched.close()
    store.close()
