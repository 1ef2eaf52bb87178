"""After a restart, an open decision whose plan never ran (it waited on a rate limit or a busy
GPU, was cancelled at shutdown, or rasd died between storing it and running it) is planned again
through the actuator, as a new decision is: once, behind the same gate and limits. One whose
plan ran, well or not, is not run again."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from rasd.backends.fake.clock import ManualClock
from rasd.ladder.actions import Actuator
from rasd.ladder.escalate import Escalator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from tests.waiting import eventually
from tests.ladder.plans import Held, TakesOut

COMMANDS = {"reset_gpu": ("nvidia-smi", "-r"), "reboot_node": ("reboot",),
            "restart_process": ("restart",)}
T0 = 1_700_000_000.0
RESET, REBOOT = ("nvidia-smi", "-r"), ("reboot",)


class Rasd:
    """One run of the ladder on the state at ``db``: a fresh actuator (its monotonic clock
    starts anew, as a new process's does) over the same store, acting through ``runner``."""

    def __init__(self, db: Path, wall: ManualClock, runner: Any, *, enforce: bool = True,
                 synchronous: bool = True, booted_wall: float = 0.0,
                 commands: dict[str, tuple[str, ...]] = COMMANDS) -> None:
        self.wall = wall
        self.mono = ManualClock(50.0)
        acts = ActionSettings(enforce=enforce, commands=commands)  # 600 s between two resets
        self.act = Actuator(acts, runner, synchronous=synchronous, clock=self.mono, wall=wall)
        self.gate = self.act.gate = TakesOut()
        self.store = Store(db)
        self.svc = LadderService(LadderSettings(), acts, self.store, "n", actuator=self.act,
                                 now_wall=wall(), booted_wall=booted_wall)

    def advance(self, seconds: float) -> None:
        self.wall.advance(seconds)
        self.mono.advance(seconds)

    def xid(self, code: int, gpu: int = 3) -> None:
        self.svc.ingest([FaultEvent(self.wall(), gpu, FaultKind.XID, None, {"xid": code})],
                        self.wall())

    def tick(self) -> None:
        self.svc.tick(self.wall())

    def stop(self) -> None:
        self.svc.close()
        self.store.close()

    def open_rungs(self, gpu: int = 3) -> list[Rung]:
        return [Rung.parse(r.body["rung"]) for r in self.store.decisions(gpu=gpu, open_only=True)]


def _died_after_storing(db: Path, wall: ManualClock, code: int, gpu: int = 3) -> None:
    """What the store holds where rasd died between storing a decision and running its plan:
    the event and the decision it opened, in the one transaction the service writes."""
    e = FaultEvent(wall(), gpu, FaultKind.XID, None, {"xid": code})
    step = Escalator(LadderSettings()).feed(e)
    assert step.opened
    store = Store(db)
    store.record_step(e, [d.to_dict() for d in step.opened], ())
    store.close()


def test_a_decision_stored_before_rasd_died_is_run_once_after_the_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, wall = tmp_path / "r.db", ManualClock(T0)
    _died_after_storing(db, wall, 62)  # a GPU reset
    wall.advance(120)
    runner = RecordingRunner()
    caplog.set_level(logging.INFO, "rasd.ladder")
    r = Rasd(db, wall, runner)
    assert runner.calls == []  # nothing acts before the first pass
    for _ in range(3):
        r.tick()
        r.advance(30)
    assert runner.calls == [RESET] and r.gate.asked == [Rung.RESET_GPU]
    assert r.open_rungs() == []  # the reset worked: remedied
    assert [(a.kind, a.result) for a in r.store.actions()] == [("reset_gpu", "ok")]
    said = [m for m in caplog.messages if "event=ladder_resubmitted" in m]
    assert len(said) == 1 and "gpu=3" in said[0] and "rung=reset_gpu" in said[0], said
    r.stop()
    again = RecordingRunner()  # a second restart: nothing left to run
    r = Rasd(db, wall, again)
    r.tick()
    assert again.calls == []
    r.stop()


def test_a_plan_with_no_command_is_gated_once_after_the_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No reboot command configured: the reboot's plan is the gate's drain alone, the operator
    reboots. rasd died between storing the decision and gating it: the restart gates it, once,
    as a new decision is; in advisory mode it does not."""
    db, wall = tmp_path / "r.db", ManualClock(T0)
    _died_after_storing(db, wall, 79)
    wall.advance(120)
    no_reboot = {k: v for k, v in COMMANDS.items() if k != "reboot_node"}
    r = Rasd(db, wall, RecordingRunner(), enforce=False, commands=no_reboot)
    r.tick()
    assert r.gate.asked == []
    r.stop()
    caplog.set_level(logging.INFO, "rasd.ladder")
    runner = RecordingRunner()
    r = Rasd(db, wall, runner, commands=no_reboot)
    assert r.gate.asked == []  # nothing acts before the first pass
    for _ in range(3):
        r.tick()
        r.advance(600)
    assert r.gate.asked == [Rung.REBOOT_NODE] and runner.calls == []
    assert r.open_rungs() == [Rung.REBOOT_NODE]  # open: the operator reboots
    said = [m for m in caplog.messages if "event=ladder_resubmitted" in m]
    assert len(said) == 1 and "rung=reboot_node" in said[0], said
    r.act.submit(r.svc.decisions_for(3)[0], {})  # handed over again in this run (a retry)
    assert r.gate.asked == [Rung.REBOOT_NODE]  # the gate let it through: done
    r.stop()


def test_a_plan_with_no_command_the_gate_deferred_is_gated_again() -> None:
    """Once per decision means once let through: a deferral (the budget spent) is the gate's
    to resubmit, and the resubmission reaches it."""
    act = Actuator(ActionSettings(enforce=True, commands={}), RecordingRunner(),
                   synchronous=True)
    answers = [False, True]
    asked: list[Rung] = []

    def gate(d: Any, info: Any) -> bool:
        asked.append(d.rung)
        return answers.pop(0)

    act.gate = gate
    reboot = Escalator().feed(FaultEvent(T0, 2, FaultKind.XID, None, {"xid": 79})).opened[0]
    for _ in range(3):
        act.submit(reboot, {})
    assert asked == [Rung.REBOOT_NODE] * 2


def test_a_plan_cancelled_at_shutdown_runs_after_the_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, wall = tmp_path / "r.db", ManualClock(T0)
    held = Held()
    r = Rasd(db, wall, held, synchronous=False)  # on the actuator's 4 action threads
    try:
        for gpu in range(4):  # four process restarts fill the action threads
            r.xid(13, gpu)
        assert eventually(lambda: len(held.calls) == 4, 10), held.calls
        r.xid(62, 4)  # GPU 4's reset waits in the queue
        stopping = threading.Thread(target=r.svc.close)
        stopping.start()
        assert eventually(lambda: "action_cancelled" in caplog.text, 10)
    finally:
        held.go.set()
    stopping.join(10)
    assert not stopping.is_alive()
    r.store.close()
    wall.advance(60)
    runner = RecordingRunner()
    r = Rasd(db, wall, runner)
    assert r.open_rungs(4) == [Rung.RESET_GPU]
    r.tick()
    r.tick()
    assert runner.calls == [RESET]  # GPU 4's reset; the restarts that ran are not repeated
    assert r.open_rungs(4) == []
    r.stop()


def test_a_rate_limited_plan_waiting_at_shutdown_runs_after_the_restart_once_allowed(
        tmp_path: Path) -> None:
    db, wall = tmp_path / "r.db", ManualClock(T0)
    runner = RecordingRunner()
    r = Rasd(db, wall, runner)
    r.xid(62)
    r.tick()
    assert runner.calls == [RESET] and r.open_rungs() == []
    r.advance(300)
    r.xid(62)  # back 5 minutes later: a reset again, within the 600 s limit: it waits
    assert [(d.rung, why) for d, why in r.act.waiting()] == [(Rung.RESET_GPU, "rate_limited")]
    r.stop()  # the daemon stops with the plan waiting
    r.wall.advance(60)
    after = RecordingRunner()
    r = Rasd(db, wall, after)  # 360 s after the first reset
    r.tick()
    r.advance(120)
    r.tick()
    assert after.calls == [] and r.gate.asked == []  # the limit holds across the restart
    assert [(d.rung, why) for d, why in r.act.waiting()] == [(Rung.RESET_GPU, "rate_limited")]
    r.advance(120)  # 600 s after the first reset
    r.tick()
    r.tick()
    assert after.calls == [RESET] and r.gate.asked == [Rung.RESET_GPU]
    assert r.open_rungs() == [] and r.act.waiting() == []
    r.advance(3600)
    r.tick()
    assert after.calls == [RESET]
    r.stop()


def test_a_failed_reboot_is_not_run_again_after_a_restart(tmp_path: Path) -> None:
    db, wall = tmp_path / "r.db", ManualClock(T0)
    runner = RecordingRunner({"reboot": 1})
    r = Rasd(db, wall, runner)
    r.xid(79)
    r.tick()
    assert runner.calls == [REBOOT] and r.open_rungs() == [Rung.REBOOT_NODE]  # for the operator
    r.stop()
    wall.advance(3 * 3600)  # past every rate limit
    again = RecordingRunner()
    r = Rasd(db, wall, again)
    for _ in range(3):
        r.tick()
        r.advance(600)
    assert again.calls == [] and r.gate.asked == []
    assert r.open_rungs() == [Rung.REBOOT_NODE]
    r.stop()


def test_a_reset_whose_run_is_stored_is_not_run_again(tmp_path: Path) -> None:
    """rasd died after storing the reset's run, before its result reached the ladder (the
    decision is still open): the run is what counts, the reset is not repeated."""
    db, wall = tmp_path / "r.db", ManualClock(T0)
    _died_after_storing(db, wall, 62)
    store = Store(db)
    store.add_action(T0 + 5, 3, None, "reset_gpu", RESET, "ok", 0, 4.0, "")
    store.close()
    wall.advance(3 * 3600)  # past every rate limit
    runner = RecordingRunner()
    r = Rasd(db, wall, runner)
    assert r.open_rungs() == [Rung.RESET_GPU]
    r.tick()
    r.tick()
    assert runner.calls == [] and r.gate.asked == []
    r.stop()


def test_a_reboot_decided_before_the_node_booted_is_not_run_again(tmp_path: Path) -> None:
    """A reboot that ended rasd before its result was stored (``reboot -f``) must not loop."""
    db, wall = tmp_path / "r.db", ManualClock(T0)
    _died_after_storing(db, wall, 79)
    wall.advance(300)
    runner = RecordingRunner()
    r = Rasd(db, wall, runner, booted_wall=T0 + 200)
    r.tick()
    r.tick()
    assert runner.calls == [] and r.open_rungs() == [Rung.REBOOT_NODE]
    r.stop()
    r = Rasd(db, wall, runner, booted_wall=T0 - 200)  # not rebooted since: the reboot runs
    r.tick()
    assert runner.calls == [REBOOT]
    r.stop()


def test_an_advisory_restart_only_says_what_it_would_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, wall = tmp_path / "r.db", ManualClock(T0)
    _died_after_storing(db, wall, 62)
    caplog.set_level(logging.INFO, "rasd.ladder")
    runner = RecordingRunner()
    r = Rasd(db, wall, runner, enforce=False)
    r.tick()
    r.tick()
    assert runner.calls == [] and r.gate.asked == []
    assert sum("would_run=reset_gpu" in m for m in caplog.messages) == 1
    r.stop()


def test_the_actuator_runs_one_decision_once(tmp_path: Path) -> None:
    """Two owners may hand it the same decision (a restart and the scheduler's retry of a
    deferral): it runs once; a decision whose reboot failed stays open and is not run again."""
    runner = RecordingRunner({"reboot": 1})
    act = Actuator(ActionSettings(enforce=True, commands=COMMANDS, min_interval_seconds=0),
                   runner, synchronous=True)
    reset = Escalator().feed(FaultEvent(T0, 3, FaultKind.XID, None, {"xid": 62})).opened[0]
    reboot = Escalator().feed(FaultEvent(T0, 2, FaultKind.XID, None, {"xid": 79})).opened[0]
    for _ in range(2):
        act.submit(reset, {})
        act.submit(reboot, {})
    assert runner.calls == [RESET, REBOOT]


def test_the_boot_time_is_the_kernels_and_unknown_where_unreadable(tmp_path: Path) -> None:
    from rasd.ladder.restore import _boot_time

    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nbtime 1700000123\nprocesses 9\n")
    assert _boot_time(str(stat)) == 1700000123.0
    stat.write_text("cpu  1 2 3\n")
    assert _boot_time(str(stat)) is None
    assert _boot_time(str(tmp_path / "absent")) is None
