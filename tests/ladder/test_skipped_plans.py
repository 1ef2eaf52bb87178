"""Plans the actuator cannot run now (the component busy, a rate limit): asked before the gate
that takes the node out of the scheduler, and tried again while their decision is open."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rasd.backends.fake.clock import ManualClock
from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from tests.waiting import eventually
from tests.ladder.plans import Held, TakesOut

COMMANDS = {"reset_gpu": ("nvidia-smi", "-r"), "reboot_node": ("reboot",),
            "restart_process": ("restart",)}


def xid(clock: ManualClock, code: int, gpu: int = 3) -> FaultEvent:
    return FaultEvent(clock(), gpu, FaultKind.XID, None, {"xid": code})


def ladder(tmp_path: Path, runner: Any, synchronous: bool = True) -> tuple[
        ManualClock, Actuator, TakesOut, Store, LadderService]:
    """A ladder acting through ``runner`` on a hand-driven clock, its gate taking the node out."""
    clock = ManualClock(1_700_000_000.0)
    acts = ActionSettings(enforce=True, commands=COMMANDS)  # 600 s between two resets
    act = Actuator(acts, runner, synchronous=synchronous, clock=clock, wall=clock)
    gate = act.gate = TakesOut()
    store = Store(tmp_path / "r.db")
    svc = LadderService(LadderSettings(), acts, store, "n", actuator=act, now_wall=clock())
    return clock, act, gate, store, svc


def test_a_rate_limited_repeat_waits_without_a_drain_then_runs_once_the_window_passed(
        tmp_path: Path) -> None:
    runner = RecordingRunner()
    clock, act, gate, store, svc = ladder(tmp_path, runner)
    svc.ingest([xid(clock, 62)], clock())
    svc.tick(clock())
    assert runner.calls == [("nvidia-smi", "-r")] and gate.asked == [Rung.RESET_GPU]
    assert svc.rung(3) is Rung.NONE  # the reset held: remedied
    clock.advance(300)
    svc.ingest([xid(clock, 62)], clock())  # back 5 minutes later: the reset again, too soon
    assert svc.rung(3) is Rung.RESET_GPU
    assert gate.asked == [Rung.RESET_GPU]  # not asked: the node is not taken out for nothing
    assert [(d.rung, why) for d, why in act.waiting()] == [(Rung.RESET_GPU, "rate_limited")]
    st = svc.state(clock())  # what the metrics say (rasd_ladder_plans_*)
    assert dict(st.plans_skipped) == {"busy": 0, "rate_limited": 1}
    assert (st.plans_waiting, st.plans_retried) == (1, 0)
    for _ in range(4):  # within the window: still waiting, nothing run, recorded once
        clock.advance(60)
        svc.tick(clock())
    st = svc.state(clock())
    assert st.plans_waiting_oldest_seconds == 240.0 and st.plans_skipped["rate_limited"] == 1  # counted once
    assert runner.calls == [("nvidia-smi", "-r")] and gate.asked == [Rung.RESET_GPU]
    assert [(a.kind, a.result) for a in store.actions()] == \
        [("reset_gpu", "ok"), ("reset_gpu", "rate_limited")]
    clock.advance(60)  # 600 s after the first reset
    svc.tick(clock())
    svc.tick(clock())  # the retried reset's result
    assert runner.calls == [("nvidia-smi", "-r")] * 2
    assert gate.asked == [Rung.RESET_GPU] * 2
    assert svc.rung(3) is Rung.NONE and act.waiting() == []
    assert [(a.kind, a.result) for a in store.actions()] == \
        [("reset_gpu", "ok"), ("reset_gpu", "rate_limited"), ("reset_gpu", "ok")]
    assert act.counts["skipped:rate_limited"] == 1 and act.counts["retried"] == 1
    st = svc.state(clock())
    assert (st.plans_skipped["rate_limited"], st.plans_waiting, st.plans_retried) == (1, 0, 1)
    svc.close()
    store.close()


def test_a_plan_for_a_busy_gpu_waits_without_a_drain_then_runs_when_the_gpu_is_free(
        tmp_path: Path) -> None:
    runner = Held()
    clock, act, gate, store, svc = ladder(tmp_path, runner, synchronous=False)  # on the action threads
    try:
        svc.ingest([xid(clock, 13)], clock())  # restart_process on GPU 3: runs until let go
        assert runner.running.wait(10)
        clock.advance(5)
        svc.ingest([xid(clock, 79)], clock())  # the node's reboot, while the restart runs

        def ticked_until_skipped() -> bool:
            svc.tick(clock())
            return any(a.result == "busy" for a in store.actions())

        assert eventually(ticked_until_skipped, 10)
        svc.tick(clock())  # still busy: not tried again, not said again
        assert gate.asked == [Rung.RESTART_PROCESS]  # the reboot did not take the node out
        assert [(d.rung, why) for d, why in act.waiting()] == [(Rung.REBOOT_NODE, "busy")]
        runner.go.set()

        def ticked_until_rebooted() -> bool:  # the daemon's ticks: the GPU is free at one
            svc.tick(clock())
            return ("reboot",) in runner.calls

        assert eventually(ticked_until_rebooted, 10), runner.calls
        assert gate.asked == [Rung.RESTART_PROCESS, Rung.REBOOT_NODE]
        assert act.waiting() == [] and act.counts["retried"] == 1
    finally:
        runner.go.set()
        svc.close()
    kinds = [(a.kind, a.result) for a in store.actions()]
    assert kinds.count(("reboot_node", "busy")) == 1 and ("reboot_node", "ok") in kinds
    store.close()


def test_a_waiting_plan_whose_decision_closed_is_dropped(tmp_path: Path) -> None:
    runner = RecordingRunner()
    clock, act, gate, store, svc = ladder(tmp_path, runner)
    svc.ingest([xid(clock, 62)], clock())
    svc.tick(clock())
    clock.advance(300)
    svc.ingest([xid(clock, 62)], clock())
    assert len(act.waiting()) == 1
    assert act.retry_waiting([]) == 0  # no longer open (closed, superseded): forgotten
    clock.advance(3600)
    svc.tick(clock())
    assert runner.calls == [("nvidia-smi", "-r")] and gate.asked == [Rung.RESET_GPU]
    assert act.waiting() == []
    svc.close()
    store.close()


def test_a_waiting_plan_whose_commands_were_reloaded_away_leaves_the_waiting_set(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload took away the command the plan waited to run: it waits for nothing, so it
    leaves the waiting set (and the gauges) at the next pass, not when its decision closes,
    and gets what a fresh plan with no command gets: the gate alone, once; said once."""
    runner = RecordingRunner()
    clock, act, gate, store, svc = ladder(tmp_path, runner)
    svc.ingest([xid(clock, 62)], clock())
    svc.tick(clock())
    clock.advance(300)
    svc.ingest([xid(clock, 62)], clock())  # the reset again, within the 600 s limit: it waits
    assert svc.state(clock()).plans_waiting == 1
    caplog.set_level(logging.INFO, "rasd.ladder.actions")
    act.s = replace(act.s, commands={k: v for k, v in COMMANDS.items() if k != "reset_gpu"})
    clock.advance(30)  # still within the limit's window
    svc.tick(clock())
    st = svc.state(clock())
    assert (st.plans_waiting, st.plans_waiting_oldest_seconds) == (0, 0.0)
    assert act.waiting() == [] and svc.rung(3) is Rung.RESET_GPU  # open: for the operator
    assert gate.asked == [Rung.RESET_GPU] * 2  # the gate's drain alone
    for _ in range(3):  # past the window: nothing more, neither run nor gated nor said
        clock.advance(600)
        svc.tick(clock())
    assert runner.calls == [("nvidia-smi", "-r")] and gate.asked == [Rung.RESET_GPU] * 2
    said = [m for m in caplog.messages if m.startswith("action_no_longer_waiting")]
    assert len(said) == 1 and "why=rate_limited" in said[0], said
    svc.close()
    store.close()
