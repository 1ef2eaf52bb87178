"""The Slurm integration against a real single-node Slurm (slurmctld, slurmd, munge)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from rasd.backends.fake.clock import ManualClock
from rasd.ladder.actions import Actuator
from rasd.ladder.service import GpuInfo, LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind
from rasd.scheduler.build import build_service
from rasd.scheduler.service import SchedulerService, open_decisions
from rasd.scheduler.settings import SchedulerSettings
from rasd.store import Store
from tests.scheduler.slurmcluster import SlurmCluster

REASON = "rasd: xid 79 gpu 3 -> reboot_node"


def now_clock() -> ManualClock:
    """Hand-driven, starting now: Slurm stamps its reasons with the real time."""
    return ManualClock(time.time())


class Node:
    """One rasd on a Slurm node: ladder, synchronous actuator, scheduler service, one store.
    ``clock`` is the wall clock; ``mono``, the monotonic one, is the same clock unless given."""

    def __init__(self, slurm: SlurmCluster, db: Path, clock: Callable[[], float],
                 reboot: str = "true", enforce: bool = True,
                 commands: dict[str, tuple[str, ...]] | None = None,
                 mono: ManualClock | None = None, gpu_info: GpuInfo | None = None, **kw: Any):
        self.clock: Any = clock
        self.mono: Any = clock if mono is None else mono
        kw.setdefault("partition", slurm.partition)
        self.settings = SchedulerSettings(kind="slurm", node_name=slurm.node,
                                          slurm_conf=str(slurm.conf), retry_seconds=10,
                                          resume_hold_seconds=60, **kw)
        actions = ActionSettings(enforce=enforce, commands=commands or {"reboot_node": (reboot,)},
                                 min_interval_seconds=0)
        self.sched: SchedulerService = build_service(self.settings, enforce, str(db), wall=clock,
                                                     clock=self.mono, synchronous=True)
        act = Actuator(actions, synchronous=True, wall=clock)
        act.gate = self.sched.gate
        self.sched.submit = act.submit
        self.store = Store(db)
        self.ladder = LadderService(LadderSettings(), actions, self.store, "h", actuator=act,
                                    now_wall=clock(), gpu_info=gpu_info)

    def xid79(self, gpu: int = 3) -> None:
        self.xid(79, gpu)

    def xid(self, code: int, gpu: int) -> None:
        self.sched.on_decisions(self.ladder.ingest(
            [FaultEvent(self.clock(), gpu, FaultKind.XID, None, {"xid": code})], self.clock()))
        self.ladder.tick(self.clock())  # the remedy's result, as the daemon's next pass takes it

    def tick(self, advance: float = 0.0, watched: bool = True) -> None:
        """One pass; ``watched``: every GPU polled in time (see health_watched)."""
        self.clock.advance(advance)
        if self.mono is not self.clock:
            self.mono.advance(advance)
        self.ladder.tick(self.clock())
        self.sched.tick(self.clock(), open_decisions(self.ladder.state(self.clock())),
                        watched=watched)
        self.ladder.tick(self.clock())  # results of a retried plan

    def close(self) -> None:
        self.ladder.close()
        self.sched.close()
        self.store.close()


def sinfo(slurm: SlurmCluster, node: str) -> tuple[str, str]:
    """(state, reason); a resumed node is pinged before it answers again, so "idle*" (not
    responding yet) reads as "idle"."""
    state, reason = slurm.run("sinfo", "-h", "-N", "-n", node, "-o", "%T|%E").strip().split("|", 1)
    return state.rstrip("*"), reason


def test_drain_with_reason_then_resume_once_the_cure_held(slurm: SlurmCluster,
                                                          tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock())
    n.xid79()
    state, reason = sinfo(slurm, slurm.node)
    assert state == "drained" and reason == REASON
    assert REASON in slurm.run("sinfo", "-R", "-h", "-o", "%60E")
    # the reboot command ran and reported ok: the decision closed, the hold starts
    assert not open_decisions(n.ladder.state(n.clock()))
    n.tick()
    n.tick(30)
    assert sinfo(slurm, slurm.node)[0] == "drained"  # within the hold
    n.tick(31)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    assert n.sched.state().counts == {"drains": 1, "resumes": 1}
    n.close()


def test_failed_cure_keeps_the_node_out(slurm: SlurmCluster, tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    n.xid79()
    assert open_decisions(n.ladder.state(n.clock()))  # climbed to RMA, still open
    for _ in range(5):
        n.tick(100)
    state, reason = sinfo(slurm, slurm.node)
    assert state == "drained" and reason.startswith("rasd: xid 79 gpu 3 -> ")
    n.close()


def test_never_resumes_a_persons_drain(slurm: SlurmCluster, tmp_path: Path) -> None:
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "state=drain",
              "reason=disk swap, ticket 4711")
    n = Node(slurm, tmp_path / "rasd.db", now_clock())
    n.xid79()  # the reboot still runs: the node is out anyway
    assert sinfo(slurm, slurm.node) == ("drained", "disk swap, ticket 4711")
    for _ in range(3):
        n.tick(400)
    assert sinfo(slurm, slurm.node) == ("drained", "disk swap, ticket 4711")
    assert n.sched.state().counts.get("resumes", 0) == 0
    n.close()


def test_a_drain_a_person_relabelled_is_theirs(slurm: SlurmCluster, tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    n.xid79()
    assert sinfo(slurm, slurm.node)[1].startswith("rasd:")
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "reason=keep out: vendor case")
    n.tick(20)  # the next look at Slurm notices
    assert not n.sched.state().out_by_rasd
    n.close()


def test_a_worse_fault_right_after_a_person_relabelled_the_drain_keeps_their_reason(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    """Between two looks at Slurm a person takes rasd's drain over; a worse fault then must not
    write rasd's reason over theirs, and rasd must never resume their node."""
    n = Node(slurm, tmp_path / "rasd.db", now_clock(),
             commands={"reset_gpu": ("true",), "reboot_node": ("true",)})
    n.xid(62, 3)  # a GPU reset, with the node drained first
    assert sinfo(slurm, slurm.node) == ("drained", "rasd: xid 62 gpu 3 -> reset_gpu")
    n.tick(1)
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "reason=keep out: vendor case")
    n.clock.advance(3)  # before the next look (retry_seconds 10)
    n.xid(79, 5)  # a reboot: a higher rung than the drain's
    assert sinfo(slurm, slurm.node) == ("drained", "keep out: vendor case")
    for _ in range(4):
        n.tick(30)
    assert sinfo(slurm, slurm.node) == ("drained", "keep out: vendor case")
    assert n.sched.state().counts.get("resumes", 0) == 0 and not n.sched.state().out_by_rasd
    n.close()


def test_a_fault_right_after_a_person_resumed_the_node_drains_it_again(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    """A person returned the node to service between two looks; the next fault's remedy must not
    run on a node taking jobs: rasd drains it again first."""
    n = Node(slurm, tmp_path / "rasd.db", now_clock(),
             commands={"reset_gpu": ("true",), "reboot_node": ("true",)})
    n.xid(62, 3)
    n.tick(1)
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "state=resume")
    n.clock.advance(3)
    n.xid(62, 1)  # another GPU's reset, which needs the node drained
    assert sinfo(slurm, slurm.node) == ("drained", "rasd: xid 62 gpu 1 -> reset_gpu")
    assert n.sched.state().counts.get("drains") == 2
    n.close()


def test_state_survives_a_restart_and_agrees_with_slurm(slurm: SlurmCluster,
                                                        tmp_path: Path) -> None:
    db, clock = tmp_path / "rasd.db", now_clock()
    n = Node(slurm, db, clock)
    n.xid79()
    n.close()
    again = Node(slurm, db, clock)
    st = again.sched.state()
    assert st.out_by_rasd and st.reason == REASON
    again.tick()
    again.tick(61)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    again.close()


def test_a_person_resuming_while_rasd_was_down_wins(slurm: SlurmCluster, tmp_path: Path) -> None:
    db, clock = tmp_path / "rasd.db", now_clock()
    n = Node(slurm, db, clock, reboot="false")
    n.xid79()
    n.close()
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "state=resume")
    again = Node(slurm, db, clock, reboot="false")
    assert not again.sched.state().out_by_rasd
    again.close()


def test_advisory_changes_nothing_in_slurm(slurm: SlurmCluster, tmp_path: Path,
                                           caplog: Any) -> None:
    caplog.set_level("INFO", logger="rasd.scheduler")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), enforce=False)
    n.xid79()
    n.tick(100)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    assert f"would=take_out reason='{REASON}'" in caplog.text
    assert not n.sched.state().deferred
    n.close()


def test_an_unreachable_scheduler_defers_and_a_fixed_config_acts(slurm: SlurmCluster,
                                                                 tmp_path: Path) -> None:
    from dataclasses import replace

    n = Node(slurm, tmp_path / "rasd.db", now_clock(), sinfo="/nonexistent/sinfo")
    n.xid79()
    st = n.sched.state()
    assert [w for w, *_ in st.deferred] == ["scheduler_error"] and st.counts["errors"] >= 1
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.sched.reconfigure(replace(n.settings, sinfo="sinfo"))  # SIGHUP with the right path
    n.tick(11)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.close()


def test_a_slow_scheduler_never_stalls_the_main_loop(slurm: SlurmCluster, tmp_path: Path) -> None:
    slow = tmp_path / "slow-sinfo"
    slow.write_text('#!/bin/sh\nsleep 2\nexec sinfo "$@"\n')
    slow.chmod(0o755)
    settings = SchedulerSettings(kind="slurm", node_name=slurm.node, slurm_conf=str(slurm.conf),
                                 sinfo=str(slow), retry_seconds=0.1)
    svc = build_service(settings, True, str(tmp_path / "rasd.db"))  # as the daemon builds it
    t0 = time.monotonic()
    for _ in range(10):
        svc.tick(time.time(), [])
    assert time.monotonic() - t0 < 1.0  # the passes wait on sinfo on the worker, not here
    svc.close()
