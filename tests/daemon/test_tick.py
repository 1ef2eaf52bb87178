"""Daemon.tick, in-process over a fake node: the stages, their guards and what the snapshot shows."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from exporters.sections.daemon import collect
from rasd import config
from rasd.daemon import Daemon
from rasd.model import FaultEvent, FaultKind, Health
from rasd.stages import STAGES

FAULT = """
[[event]]
kind = "ecc"
at = 1.0
gpu = 1
type = "uncorrected"
count = 1
"""


@pytest.fixture
def daemon(fake, clock, tmp_path: Path):
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp_path / "rasd.db"), control_socket=str(tmp_path / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )

    def make(scenario: str | None = None) -> Daemon:
        d = Daemon(cfg, fake(scenario, clock=clock), hostname="node-t", wall=lambda: 1.7e9 + clock())
        made.append(d)
        return d

    made: list[Daemon] = []
    yield make
    for d in made:
        d.stop()


def poll(d: Daemon) -> None:
    for p in d.pollers:
        p.poll_once()
    d.sampler.round()


def stage(snap, name):
    return next(s for s in snap.stages if s.stage == name)


def test_a_tick_builds_the_snapshot_from_every_stage(daemon, clock):
    d = daemon(FAULT)
    poll(d)
    d.tick()
    clock.advance(2.0)  # the ECC error comes between the two polls
    for p in d.pollers:
        p.want_slow()  # ECC is a slow counter: read it now, as after an Xid
    poll(d)
    snap = d.tick()
    assert d.snapshot is snap and snap.health_polls == 2
    assert [g.index for g in snap.gpus] == [g.index for g in d.gpus]
    assert all(g.health is Health.UP for g in snap.gpus)
    assert snap.ladder is not None and snap.ladder.gpus[1].open  # the ECC fault was decided on
    assert snap.sdc is not None and snap.power is not None and snap.self_stats is not None
    assert [s.stage for s in snap.stages] == list(STAGES)
    # notify runs after the snapshot is built: it shows from the next one on
    assert all(s.ok and s.failures_total == 0 for s in snap.stages)


def test_a_failing_ladder_leaves_the_other_stages_running(daemon, caplog, monkeypatch):
    d = daemon()
    poll(d)
    first = d.tick()

    def locked(events, now):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(d.ladder, "ingest", locked)
    caplog.set_level(logging.ERROR, logger="rasd.daemon")
    for _ in range(3):
        poll(d)
        snap = d.tick()
    assert snap.health_polls == 4 and snap.time_wall >= first.time_wall
    assert snap.ladder is first.ladder  # the last good ladder state stays in the snapshot
    assert snap.power is not None and snap.sdc is not None and len(snap.gpus) == len(d.gpus)
    ladder = stage(snap, "ladder")
    assert not ladder.ok and ladder.failures_total == 3
    assert all(s.ok for s in snap.stages if s.stage != "ladder")
    failed = [r for r in caplog.records if "event=stage_failed stage=ladder" in r.getMessage()]
    assert len(failed) == 1  # a repeating failure is logged once, then counted
    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="rasd.daemon")
    poll(d)
    snap = d.tick()
    ladder = stage(snap, "ladder")
    assert ladder.ok and ladder.failures_total == 3
    assert any("event=stage_recovered stage=ladder" in r.getMessage() for r in caplog.records)


def test_a_failing_aggregate_keeps_the_last_gpu_states(daemon, monkeypatch):
    d = daemon()
    poll(d)
    first = d.tick()

    def broken(*a, **kw):
        raise RuntimeError("aggregator bug")

    monkeypatch.setattr(d.aggregator, "update", broken)
    snap = d.tick()
    assert snap.gpus == first.gpus
    assert not stage(snap, "aggregate").ok and stage(snap, "ladder").ok


def test_stage_metrics_are_exported(daemon, monkeypatch):
    d = daemon()
    poll(d)
    d.tick()
    monkeypatch.setattr(d.power, "tick", lambda now: 1 / 0)
    snap = d.tick()
    fams = {f.name: f for f in collect(snap)}
    ok = {s.labels["stage"]: s.value for s in fams["rasd_daemon_stage_success"].samples}
    failed = {s.labels["stage"]: s.value for s in fams["rasd_daemon_stage_failures"].samples
              if s.name.endswith("_total")}
    assert ok["power"] == 0 and ok["ladder"] == 1 and failed["power"] == 1 and failed["ladder"] == 0
    assert set(ok) == set(STAGES)


def test_sdc_verdicts_reach_the_ladder(daemon):
    d = daemon()
    poll(d)
    d.tick()
    d._emit([FaultEvent(d.wall(), 2, FaultKind.SDC, None, {"verdict": "confirmed", "check": "golden_gemm"})])
    snap = d.tick()
    assert snap.ladder is not None and snap.ladder.gpus[2].open


def test_a_gpu_lost_before_the_start_does_not_stop_the_daemon(daemon):
    d = daemon("""
        [[event]]
        kind = "fall_off_bus"
        at = 0.0
        gpu = 3
        """)
    poll(d)
    snap = d.tick()
    health = {g.index: g.health for g in snap.gpus}
    assert health[3] is Health.LOST and all(h is Health.UP for i, h in health.items() if i != 3)
    checks = d.sdc.checks()  # built on first use
    assert 3 not in checks.gpus and 2 in checks.gpus


def test_a_lost_gpus_decision_stays_open_for_as_long_as_the_gpu_stays_lost(fake, clock, tmp_path: Path):
    """The loss is one event; the daemon's ticks keep its decision from expiring while the
    GPU stays lost (longer than the decision window), as the ladder's state shows."""
    window = 600.0  # a short window: the fake node's model steps through the time that passes
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp_path / "rasd.db"), control_socket=str(tmp_path / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
        ladder=replace(cfg.ladder, decision_window_seconds=window),
    )
    scenario = """
        [[event]]
        kind = "fall_off_bus"
        at = 0.0
        gpu = 3
        """
    d = Daemon(cfg, fake(scenario, clock=clock), hostname="node-t", wall=lambda: 1.7e9 + clock())
    try:
        poll(d)
        snap = d.tick()
        assert snap.ladder is not None and snap.ladder.gpus[3].open
        for _ in range(3):
            clock.advance(window / 2)
            poll(d)
            snap = d.tick()
        assert {g.index: g.health for g in snap.gpus}[3] is Health.LOST
        assert snap.ladder is not None and snap.ladder.gpus[3].open  # 1.5 windows after the loss
    finally:
        d.stop()
