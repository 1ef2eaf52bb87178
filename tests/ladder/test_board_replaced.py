"""A replaced board closes its GPU's decisions without a person: each decision is stored with the
UUID of the board it was made on, and a GPU that answers with another UUID after a start (or
when it comes back from lost) is a new board. Its open decisions close as a person's close does
(by rasd, the old and new UUIDs in the reason), and its ladder starts from the bottom. The same
board, a store from before UUIDs were kept, or a GPU that cannot be read keep what is open."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from rasd.daemon import Daemon
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Health, Rung
from rasd.store import Store
from tests.daemons import daemon_config

H = 3600.0
OLD, NEW = "GPU-0f1e2d3c-aaaa-4bbb-8ccc-000000000003", "GPU-7a6b5c4d-dddd-4eee-8fff-000000000003"
Info = Callable[[int], "Mapping[str, Any] | None"]


def _boards(gpu3: str | None) -> Info:
    """The daemon's identities: GPU 3's UUID ``gpu3`` (None: it cannot be read, lost), the
    other seven their own."""
    def info(g: int) -> Mapping[str, Any] | None:
        if g == 3:
            return None if gpu3 is None else {"uuid": gpu3, "name": "NVIDIA H100 80GB HBM3"}
        return {"uuid": f"GPU-other-{g}", "name": "NVIDIA H100 80GB HBM3"} if g < 8 else None
    return info


def _service(db: Path, now: float, gpu_info: Info | None) -> LadderService:
    return LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=now,
                         gpu_info=gpu_info)


def _xid79(svc: LadderService, t: float, gpu: int = 3) -> list:  # type: ignore[type-arg]
    return svc.ingest([FaultEvent(t, gpu, FaultKind.XID, None, {"xid": 79})], t)


def _rma(db: Path, gpu_info: Info | None) -> float:
    """Xid 79 on GPU 3 five times, 4 h apart, on the board ``gpu_info`` names: an RMA (and a
    link fault on GPU 3 beside it). Returns the time of the last Xid; the service is closed."""
    svc = _service(db, 0.0, gpu_info)
    svc.ingest([FaultEvent(500.0, 3, FaultKind.NVLINK, 2, {"link": 2, "state": "down"})], 500.0)
    t = 1000.0
    for k in range(5):
        t = 1000.0 + k * 4 * H
        _xid79(svc, t)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)} and svc.is_excluded(3)
    svc.close()
    svc.store.close()
    return t


def _restart(db: Path, t: float, gpu_info: Info, lost: list[int] | None = None) -> LadderService:
    """A start and its first tick: the pass's events (none here), then the GPUs found lost."""
    svc = _service(db, t, gpu_info)
    svc.ingest([], t)
    svc.still_lost(lost or [], t)
    return svc


def test_a_new_uuid_after_a_restart_closes_the_rma_and_the_ladder_starts_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "r.db"
    last = _rma(db, _boards(OLD))
    assert {r.body.get("uuid") for r in Store(db).decisions(gpu=3)} == {OLD}
    t = last + 2 * H  # within the Xids' window: the old board's history would make an RMA
    with caplog.at_level(logging.INFO, logger="rasd.ladder"):
        svc = _restart(db, t, _boards(NEW))
        for k in range(1, 4):  # later ticks: asked once
            svc.ingest([], t + k)
            svc.still_lost([], t + k)
    assert svc.decisions_for(3) == [] and not svc.is_excluded(3)
    reason = f"board replaced: uuid {OLD} -> {NEW}"
    (close,) = svc.store.operator_closes(3)
    assert close.event.details["reason"] == reason and close.event.details["by"] == "rasd"
    assert close.event.details["uuid"] == NEW and close.event.link is None
    rows = {(r.body["fault"], r.body["link"], r.body["rung"]): r.state
            for r in svc.store.decisions(gpu=3) if r.state != "superseded"}
    assert rows == {("xid:79", None, "rma"): "closed_by_operator",
                    ("nvlink_down", 2, "reset_gpu"): "closed_by_operator"}
    lines = [r.getMessage() for r in caplog.records if "ladder_board_replaced" in r.getMessage()]
    assert len(lines) == 1 and f"reason={reason!r}" in lines[0] and "by='rasd'" in lines[0]
    assert lines[0].startswith("event=ladder_board_replaced gpu=3 ")
    # the new board's first Xid 79: the rung the event alone asks for, not the old board's RMA
    (d,) = _xid79(svc, t + 10)
    assert d.rung is Rung.REBOOT_NODE and not d.escalated
    assert svc.store.decisions(gpu=3, open_only=True)[0].body["uuid"] == NEW
    svc.close()
    svc.store.close()
    # and a second restart on the new board restores that decision, closing nothing
    again = _restart(db, t + 20, _boards(NEW))
    assert [d.rung for d in again.decisions_for(3)] == [Rung.REBOOT_NODE]
    assert len(again.store.operator_closes(3)) == 1
    again.store.close()


def test_the_same_uuid_keeps_the_rma(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    last = _rma(db, _boards(OLD))
    svc = _restart(db, last + 2 * H, _boards(OLD))
    svc.still_lost([3], last + 3 * H)  # lost and back: the same board answers
    svc.still_lost([], last + 4 * H)
    svc.ingest([], last + 4 * H)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)} and svc.is_excluded(3)
    assert svc.store.operator_closes(3) == []
    assert _xid79(svc, last + 4 * H) == []  # the open RMA covers it
    svc.store.close()


def test_a_store_without_uuids_keeps_the_rma(tmp_path: Path) -> None:
    """Decisions stored before UUIDs were kept (here: made with no identity to read) never
    match a board, so they never close by themselves."""
    db = tmp_path / "r.db"
    last = _rma(db, None)
    assert all("uuid" not in r.body for r in Store(db).decisions())
    svc = _restart(db, last + 2 * H, _boards(NEW))
    svc.still_lost([3], last + 3 * H)
    svc.still_lost([], last + 4 * H)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)} and svc.is_excluded(3)
    assert svc.store.operator_closes(3) == []
    svc.store.close()


def test_a_lost_gpu_keeps_the_rma_until_it_answers_with_its_uuid(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    last = _rma(db, _boards(OLD))
    t = last + 2 * H
    boards = {"gpu3": None}  # lost: its UUID cannot be read
    svc = _restart(db, t, lambda g: _boards(boards["gpu3"])(g), lost=[3])
    for k in range(1, 10):  # lost for a while: never taken as replaced
        svc.ingest([], t + k * 60)
        svc.still_lost([3], t + k * 60)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)}
    assert svc.store.operator_closes(3) == []
    # back, another board in the slot: the tick that finds it back compares the UUIDs
    boards["gpu3"] = NEW
    svc.ingest([], t + H)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)}  # still said to be lost
    svc.still_lost([], t + H)
    assert svc.decisions_for(3) == []
    (close,) = svc.store.operator_closes(3)
    assert close.event.details["reason"] == f"board replaced: uuid {OLD} -> {NEW}"
    svc.store.close()


def test_a_gpu_whose_uuid_reads_as_none_but_is_not_lost_waits_for_it(tmp_path: Path) -> None:
    """Before a GPU's first poll the daemon has no UUID for it: the comparison waits for one
    (asked again each tick), and is made once it is read."""
    db = tmp_path / "r.db"
    last = _rma(db, _boards(OLD))
    t = last + 2 * H
    boards: dict[str, str | None] = {"gpu3": None}
    svc = _restart(db, t, lambda g: _boards(boards["gpu3"])(g))
    svc.ingest([], t + 1)
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)}
    boards["gpu3"] = NEW
    svc.ingest([], t + 2)
    assert svc.decisions_for(3) == []
    svc.store.close()


# ---------------------------------------------------------------------------- the daemon


@pytest.fixture
def node(fake, clock, tmp_path: Path):  # type: ignore[no-untyped-def]
    """node(seed, scenario=None) -> a Daemon over a fake node on one state file (the fake node's
    UUIDs come from its seed: another seed is another set of boards)."""
    cfg = daemon_config(tmp_path)
    base = time.time() - 20 * H
    made: list[Daemon] = []

    def make(seed: int, scenario: str | None = None) -> Daemon:
        d = Daemon(cfg, fake(scenario, clock=clock, seed=seed), hostname="node-t",
                   wall=lambda: base + 20 * H + clock())
        made.append(d)
        return d

    make.base = base  # type: ignore[attr-defined]
    yield make
    for d in made:
        d.stop()


def _poll(d: Daemon) -> None:
    for p in d.pollers:
        p.poll_once()
    d.sampler.round()


def _daemon_rma(d: Daemon, base: float) -> str:
    """An RMA of GPU 3 made by the daemon ``d`` (after a poll read the boards); returns the
    UUID of that board."""
    _poll(d)
    d.tick()
    for k in range(5):
        _xid79(d.ladder, base + k * 4 * H)
    assert Rung.RMA in {x.rung for x in d.ladder.decisions_for(3)}
    uuid = d.ladder.uuid_of(3)
    assert uuid is not None
    return uuid


@pytest.mark.parametrize("seed, replaced", [(1, True), (0, False)])
def test_a_daemon_started_over_another_board_closes_its_rma(node, seed: int,  # type: ignore[no-untyped-def]
                                                            replaced: bool) -> None:
    first = node(0)
    old = _daemon_rma(first, node.base)
    first.stop()
    d = node(seed)
    snap = d.tick()  # before the first poll: no UUID read, nothing compared
    assert snap.ladder is not None and snap.ladder.gpus[3].open
    _poll(d)
    snap = d.tick()
    new = d.ladder.uuid_of(3)
    assert snap.ladder is not None and (new != old) is replaced
    if replaced:
        assert not snap.ladder.gpus[3].open
        (close,) = d.store.operator_closes(3)
        assert close.event.details["reason"] == f"board replaced: uuid {old} -> {new}"
    else:
        assert {x.rung for x in d.ladder.decisions_for(3)} == {Rung.RMA}
        assert d.store.operator_closes(3) == []


def test_a_gpu_back_from_lost_as_another_board_closes_its_rma(node, clock) -> None:  # type: ignore[no-untyped-def]
    """Fallen off the bus, then back (a reset here): the poll that finds it back reads its
    identity again, and a new UUID closes the old board's decisions."""
    d = node(0, """
        [[event]]
        kind = "fall_off_bus"
        at = 10.0
        gpu = 3

        [[event]]
        kind = "reset"
        at = 100.0
        gpu = 3
        """)
    old = _daemon_rma(d, node.base)
    clock.advance(20.0)
    _poll(d)
    snap = d.tick()
    assert {g.index: g.health for g in snap.gpus}[3] is Health.LOST
    assert snap.ladder is not None and snap.ladder.gpus[3].open
    fake_node = d.backend.fake_node
    new = "GPU-" + "5" * 8 + "-0000-4000-8000-" + "0" * 12
    fake_node.identities = tuple(replace(x, uuid=new) if i == 3 else x
                                 for i, x in enumerate(fake_node.identities))
    assert d.ladder.uuid_of(3) == old  # while lost, the board it last read
    clock.advance(100.0)
    _poll(d)
    snap = d.tick()
    assert {g.index: g.health for g in snap.gpus}[3] is Health.UP
    assert d.ladder.uuid_of(3) == new
    assert snap.ladder is not None and not snap.ladder.gpus[3].open
    (close,) = d.store.operator_closes(3)
    assert close.event.details["reason"] == f"board replaced: uuid {old} -> {new}"


def test_a_uuid_nvml_could_not_read_is_no_board(tmp_path: Path) -> None:
    """Where nvmlDeviceGetUUID fails the adapter names the GPU ``unknown-<index>``: that is no
    board's UUID, and the RMA stays."""
    db = tmp_path / "r.db"
    last = _rma(db, _boards(OLD))
    svc = _restart(db, last + 2 * H, lambda g: {"uuid": f"unknown-{g}"})
    assert Rung.RMA in {d.rung for d in svc.decisions_for(3)}
    assert svc.uuid_of(3) is None and svc.store.operator_closes(3) == []
    svc.store.close()
