"""Bringing the node back once the cure held: the hold counts only what this rasd saw (a
restart starts it again, from the first pass with every GPU polled), and retries, looks at the
scheduler and the hold run on the monotonic clock -- a step of the wall clock, either way,
neither stalls nor hurries them. Against a real Slurm."""

from __future__ import annotations

from pathlib import Path

from rasd.backends.fake.clock import ManualClock
from rasd.scheduler.service import open_decisions
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_budget import drain
from tests.scheduler.test_slurm import REASON, Node, now_clock, sinfo


class SteppedWall:
    """A wall clock that NTP can step either way (a ManualClock only goes forward)."""

    def __init__(self, start: float):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_the_hold_starts_again_after_a_restart(slurm: SlurmCluster, tmp_path: Path) -> None:
    db, clock = tmp_path / "rasd.db", now_clock()
    n = Node(slurm, db, clock)
    n.xid79()  # drained, the reboot command ran ok: the decision closed
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.tick()  # clear: the hold starts
    n.tick(30)
    n.close()
    clock.advance(900)  # the reboot takes 15 minutes: longer than the hold, rasd not running
    again = Node(slurm, db, clock)  # a new process: its monotonic clock knows nothing of before
    again.tick()  # its first pass, before any GPU is polled
    again.tick(1, watched=False)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert again.sched.ledger.get("node")["clear_since"] is None  # the ledger says so too
    again.tick(1)  # every GPU polled, no open decision: the hold starts here
    assert again.sched.ledger.get("node")["clear_since"] == clock()
    again.tick(59)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    again.tick(2)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    again.close()


def test_a_pass_without_every_gpu_polled_starts_the_hold_again(slurm: SlurmCluster,
                                                                tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock())
    n.xid79()
    n.tick()
    n.tick(50)
    n.tick(5, watched=False)  # a poll hung past its deadline: rasd does not know it is clear
    n.tick(5)
    n.tick(55)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.tick(6)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.close()


def test_a_wall_clock_step_back_does_not_stall_the_retry(slurm: SlurmCluster,
                                                         tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 48 gpu 0 -> reset_gpu")
    wall = SteppedWall(now_clock()())
    n = Node(slurm, tmp_path / "rasd.db", wall, mono=ManualClock(1000.0), max_nodes_out="1")
    n.xid79()  # the budget is spent: deferred
    assert [w for w, *_ in n.sched.state().deferred] == ["budget"]
    n.tick(11)  # retried, still no room
    assert n.sched.state().deferred[0][2] == 2
    wall.advance(-3600)  # NTP steps the clock back an hour
    slurm.run("scontrol", "update", "nodename=rasdx1", "state=resume")
    n.tick(11)  # retry_seconds later by the monotonic clock: retried, and there is room now
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert not n.sched.state().deferred
    assert not open_decisions(n.ladder.state(wall()))  # the reboot ran after the drain
    n.close()


def test_a_wall_clock_step_forward_does_not_cut_the_hold(slurm: SlurmCluster,
                                                         tmp_path: Path) -> None:
    wall = SteppedWall(now_clock()())
    n = Node(slurm, tmp_path / "rasd.db", wall, mono=ManualClock(1000.0))
    n.xid79()
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.tick()  # the hold starts
    wall.advance(3600)  # NTP steps the clock forward an hour
    n.tick(1)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    st = n.sched.state()
    assert st.out_by_rasd and st.out_since_wall is not None and st.out_since_wall < wall() - 3600
    n.tick(60)  # the hold has now passed by the monotonic clock
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.close()


def test_health_watched_needs_every_gpu_polled_in_time() -> None:
    from rasd.model import GpuState, Health
    from rasd.scheduler.service import health_watched

    def gpu(i: int, health: Health, polled: float | None) -> GpuState:
        return GpuState(index=i, identity=None, health=health, sample=None,
                        last_update_wall=polled)

    assert health_watched([gpu(0, Health.UP, 1.0), gpu(1, Health.UP, 2.0)])
    assert not health_watched([])  # nothing polled yet (or no GPU seen): not known clear
    assert not health_watched([gpu(0, Health.UP, 1.0), gpu(1, Health.STALE, None)])
    assert not health_watched([gpu(0, Health.UP, 1.0), gpu(1, Health.STALE, 2.0)])
    assert not health_watched([gpu(0, Health.LOST, 1.0)])
