"""A plan with no command (no reboot command configured: the node is drained, the operator
reboots) after a restart, against a real Slurm: where rasd died between storing the decision
and gating it, the restart drains the node; where the drain happened, a restart does not drain
it again (the gate asks the scheduler afresh and finds it out for rasd), nor once a person
returned the node to service with the decision still open (the scheduler keeps which decisions
its gate let through)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from rasd.ladder.actions import Actuator
from rasd.ladder.escalate import Escalator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.backends.fake.clock import ManualClock
from rasd.scheduler.build import build_service
from rasd.scheduler.cluster import NodeOut, NodeView, ScopeView
from rasd.scheduler.settings import SchedulerSettings
from rasd.store import Store
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import now_clock, sinfo


def test_a_plan_with_no_command_drains_once_across_restarts(
        slurm: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = now_clock()
    db = tmp_path / "rasd.db"
    settings = SchedulerSettings(kind="slurm", node_name=slurm.node, slurm_conf=str(slurm.conf),
                                 partition=slurm.partition, retry_seconds=10)
    actions = ActionSettings(enforce=True, commands={"restart_process": ("restart",)})
    # what the store holds where rasd died between storing the reboot and gating it
    e = FaultEvent(clock(), 3, FaultKind.XID, None, {"xid": 79})
    store = Store(db)
    store.record_step(e, [d.to_dict() for d in Escalator(LadderSettings()).feed(e).opened], ())
    store.close()
    assert sinfo(slurm, slurm.node) == ("idle", "none")

    def run(passes: int) -> Any:
        """One rasd from start to stop: the daemon's passes, the ladder's then the scheduler's."""
        runner = RecordingRunner()
        sched = build_service(settings, True, str(db), wall=clock, clock=clock,
                              synchronous=True)
        act = Actuator(actions, runner, synchronous=True, wall=clock)
        act.gate, act.gated = sched.gate, sched.gated
        sched.submit = act.submit
        store = Store(db)
        ladder = LadderService(LadderSettings(), actions, store, "h", actuator=act,
                               now_wall=clock(), booted_wall=0.0)
        for _ in range(passes):
            ladder.tick(clock())
            sched.tick(clock(), ladder.decisions_for(3))
            clock.advance(11)
        assert runner.calls == [] and [d.rung for d in ladder.decisions_for(3)] == \
            [Rung.REBOOT_NODE]  # open: the operator reboots
        ladder.close()
        sched.close()
        store.close()
        return sched

    clock.advance(30)
    first = run(3)
    assert first.counts["drains"] == 1
    assert sinfo(slurm, slurm.node) == ("drained", "rasd: xid 79 gpu 3 -> reboot_node")
    clock.advance(60)
    again = run(3)  # the drain happened: the node stays as it is
    assert again.counts["drains"] == 0
    assert sinfo(slurm, slurm.node) == ("drained", "rasd: xid 79 gpu 3 -> reboot_node")
    # a person returns the node to service, the decision stays open (they reboot later): the
    # next start does not take it out again
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "state=resume")
    assert sinfo(slurm, slurm.node)[0] == "idle"
    clock.advance(60)
    after = run(3)
    assert after.counts["drains"] == 0
    assert sinfo(slurm, slurm.node)[0] == "idle"
    assert sum("event=ladder_resubmitted" in r.getMessage() for r in caplog.records) == 1
    assert "scheduler_pass_failed" not in caplog.text and "Traceback" not in caplog.text


class Mem:
    """A cluster of one node in memory: what the gate asks and does."""

    kind = "slurm"

    def __init__(self) -> None:
        self.reason = ""
        self.drains = 0

    def node(self) -> NodeView:
        return NodeView("n1", bool(self.reason), self.reason)

    def scope(self) -> ScopeView:
        return ScopeView(10, tuple([NodeOut("n1", self.reason, 0.0)] if self.reason else []))

    def take_out(self, reason: str) -> None:
        self.reason = reason
        self.drains += 1

    def bring_back(self) -> None:
        self.reason = ""

    def report(self, *a: object) -> None:
        pass


def test_a_decision_passed_while_out_for_someone_else_is_drained_after_they_resume(tmp_path: Path) -> None:
    # The gate let it through taking nothing (the node was out for an admin); once the admin
    # returns the node with the reboot still open, the next start takes it out for rasd.
    clock = ManualClock(1_800_000_000.0)
    db = tmp_path / "rasd.db"
    cluster = Mem()
    cluster.reason = "admin: bios update"
    settings = SchedulerSettings(kind="slurm", node_name="n1", retry_seconds=10)
    actions = ActionSettings(enforce=True, commands={"restart_process": ("restart",)})
    e = FaultEvent(clock(), 3, FaultKind.XID, None, {"xid": 79})
    store = Store(db)
    store.record_step(e, [d.to_dict() for d in Escalator(LadderSettings()).feed(e).opened], ())
    store.close()

    def run(passes: int) -> list[Rung]:
        sched = build_service(settings, True, str(db), cluster=cluster, wall=clock, clock=clock, synchronous=True)
        act = Actuator(actions, RecordingRunner(), synchronous=True, wall=clock)
        act.gate, act.gated = sched.gate, sched.gated
        sched.submit = act.submit
        store = Store(db)
        ladder = LadderService(LadderSettings(), actions, store, "h", actuator=act, now_wall=clock(),
                               booted_wall=0.0)
        for _ in range(passes):
            ladder.tick(clock())
            sched.tick(clock(), ladder.decisions_for(3))
            clock.advance(11)
        opened = [d.rung for d in ladder.decisions_for(3)]
        ladder.close()
        sched.close()
        store.close()
        return opened

    clock.advance(30)
    assert run(3) == [Rung.REBOOT_NODE]
    assert cluster.drains == 0  # passed: the node was already out, for the admin
    cluster.reason = ""  # the admin returns the node; the reboot is still open
    clock.advance(60)
    assert run(3) == [Rung.REBOOT_NODE]
    assert cluster.drains == 1 and cluster.reason.startswith("rasd: ")
