"""A plan skipped by the actuator's rate limit, against a real single-node Slurm: the node is
never left drained with nothing done for it."""

from __future__ import annotations

from pathlib import Path

from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind
from rasd.scheduler.build import build_service
from rasd.scheduler.service import open_decisions
from rasd.scheduler.settings import SchedulerSettings
from rasd.store import Store
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import now_clock, sinfo


def test_a_reset_repeated_too_soon_runs_once_the_window_passed_then_the_node_returns(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    clock = now_clock()
    settings = SchedulerSettings(kind="slurm", node_name=slurm.node, slurm_conf=str(slurm.conf),
                                 partition=slurm.partition, retry_seconds=10,
                                 resume_hold_seconds=600)
    actions = ActionSettings(enforce=True, commands={"reset_gpu": ("nvidia-smi", "-r")})
    runner = RecordingRunner()  # (no GPU to reset here; the command's result is scripted)
    sched = build_service(settings, True, str(tmp_path / "rasd.db"), wall=clock,
                          clock=clock, synchronous=True)
    act = Actuator(actions, runner, synchronous=True, clock=clock, wall=clock)
    act.gate = sched.gate
    sched.submit = act.submit
    store = Store(tmp_path / "rasd.db")
    ladder = LadderService(LadderSettings(), actions, store, "h", actuator=act,
                           now_wall=clock())

    def xid62() -> None:
        sched.on_decisions(ladder.ingest(
            [FaultEvent(clock(), 3, FaultKind.XID, None, {"xid": 62})], clock()))
        ladder.tick(clock())

    def tick(advance: float) -> None:
        clock.advance(advance)
        ladder.tick(clock())
        sched.tick(clock(), open_decisions(ladder.state(clock())))
        ladder.tick(clock())

    try:
        xid62()  # drained, reset, remedied: the hold runs
        assert runner.calls == [("nvidia-smi", "-r")]
        assert sinfo(slurm, slurm.node)[0] == "drained"
        tick(60)
        clock.advance(240)
        xid62()  # back 5 minutes after the reset: the reset again, within its 600 s limit
        assert runner.calls == [("nvidia-smi", "-r")]
        assert open_decisions(ladder.state(clock()))
        tick(200)  # still within the limit: waiting, the node kept out for it
        assert runner.calls == [("nvidia-smi", "-r")]
        assert sinfo(slurm, slurm.node)[0] == "drained"
        tick(100)  # 600 s after the first reset: the reset runs, the decision is remedied
        assert runner.calls == [("nvidia-smi", "-r")] * 2
        assert not open_decisions(ladder.state(clock()))
        for _ in range(11):  # the hold (600 s) after the last cure, then back in service
            tick(60)
        assert sinfo(slurm, slurm.node) == ("idle", "none")
        assert [(a.kind, a.result) for a in store.actions()] == \
            [("reset_gpu", "ok"), ("reset_gpu", "rate_limited"), ("reset_gpu", "ok")]
    finally:
        ladder.close()
        sched.close()
        store.close()
