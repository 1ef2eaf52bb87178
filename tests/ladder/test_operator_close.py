"""A person closes what the ladder holds open (``ladder.close`` on the control socket, ``rasd
ladder close``): an RMA after the board was replaced, a decision handled by hand. The close is
stored with its reason, survives a restart, and the next fault on that GPU starts from the bottom
of the ladder; bad requests change nothing."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from rasd.control import ControlServer, request
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from rasd.telemetry.kmsg import backlog
from tests.ladder.test_xid_rules import kmsg_file

H = 3600.0
REASON = "board replaced (serial 1654922006551)"


def _service(db: Path, now: float, gpu_info=None) -> LadderService:  # type: ignore[no-untyped-def]
    return LadderService(LadderSettings(), ActionSettings(), Store(db), "n", now_wall=now,
                         gpu_info=gpu_info)


def _xid79(svc: LadderService, t: float, gpu: int = 3) -> list:  # type: ignore[type-arg]
    return svc.ingest([FaultEvent(t, gpu, FaultKind.XID, None, {"xid": 79})], t)


def _rma(svc: LadderService, gpu: int = 3, base: float = 1000.0) -> float:
    """Xid 79 five times, 4 h apart from ``base``: an RMA. Returns the time of the last Xid."""
    t = base
    for k in range(5):
        t = base + k * 4 * H
        _xid79(svc, t, gpu)
    assert [d.rung for d in svc.decisions_for(gpu)] == [Rung.RMA] and svc.is_excluded(gpu)
    return t


def _rows(db: Path) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    """Every stored fault and decision row, as SQLite holds them."""
    with sqlite3.connect(db) as c:
        return (c.execute("select * from faults order by id").fetchall(),
                c.execute("select * from decisions order by id").fetchall())


@pytest.fixture
def socket_path() -> str:
    # a short directory: a Unix socket's path is limited to 107 bytes
    return str(Path(tempfile.mkdtemp(prefix="rasd-close-")) / "c.sock")


def _serve(svc: LadderService, path: str) -> ControlServer:
    server = ControlServer(path, {"ping": lambda r: {}, **svc.handlers()})
    server.start()
    return server


def test_an_rma_closed_through_the_socket_stays_closed_and_the_ladder_starts_again(
        tmp_path: Path, socket_path: str) -> None:
    db = tmp_path / "r.db"
    # the daemon closes at its wall clock: the Xids happened in the last day
    base = time.time() - 17 * H
    svc = _service(db, base, gpu_info=lambda g: {"uuid": f"GPU-new-{g}"} if g < 8 else None)
    last = _rma(svc, base=base)
    server = _serve(svc, socket_path)
    try:
        reply = request(socket_path, {"op": "ladder.close", "gpu": 3, "reason": REASON,
                                      "by": "tech"})
    finally:
        server.close()
    assert reply["ok"] and [d["rung"] for d in reply["closed"]] == ["rma"]
    assert svc.decisions_for(3) == [] and not svc.is_excluded(3)
    states = [(r.body["rung"], r.state) for r in svc.store.decisions(gpu=3)]
    assert states == [("reboot_node", "superseded"), ("rma", "closed_by_operator")]
    (close,) = svc.store.operator_closes(3)
    assert close.event.details["reason"] == REASON and close.event.details["by"] == "tech"
    assert close.event.details["uuid"] == "GPU-new-3"
    # the close is no sign rasd was watching: a catch-up after it starts at the last fault
    assert svc.store.last_fault_time() == last
    svc.close()
    svc.store.close()

    # a restart within the Xids' window: nothing restored, and the same Xid (the sixth in
    # 24 h on that slot) is the new board's first: the rung the event alone asks for
    t = max(last, close.event.time_wall) + 2 * H
    assert t - base < 24 * H
    again = _service(db, t)
    assert again.decisions_for(3) == [] and not again.is_excluded(3)
    (d,) = _xid79(again, t)
    assert d.rung is Rung.REBOOT_NODE and not d.escalated
    again.close()
    again.store.close()


def test_without_the_close_the_same_xid_would_be_an_rma(tmp_path: Path) -> None:
    """The control for the test above: the history alone makes the sixth Xid an RMA."""
    svc = _service(tmp_path / "r.db", 0.0)
    last = _rma(svc)
    svc.close()
    svc.store.close()
    again = _service(tmp_path / "r.db", last + 2 * H)
    t = last + 2 * H
    assert _xid79(again, t) == []  # the open RMA covers it
    assert [d.rung for d in again.decisions_for(3)] == [Rung.RMA]
    again.store.close()


def test_a_link_close_leaves_the_gpu_and_its_other_links_and_forgets_that_link(
        tmp_path: Path) -> None:
    svc = _service(tmp_path / "r.db", 0.0)
    t = 1000.0

    def down(link: int, at: float) -> None:
        svc.ingest([FaultEvent(at, 1, FaultKind.NVLINK, link, {"link": link, "state": "down"})],
                   at)

    for link in (2, 5):
        down(link, t)
        down(link, t + 60)
    svc.ingest([FaultEvent(t + 61, 1, FaultKind.XID, None, {"xid": 62})], t + 61)
    assert {(d.link, d.fault) for d in svc.decisions_for(1)} == {
        (2, "nvlink_down"), (5, "nvlink_down"), (None, "xid:62")}
    closed = svc.close_by_operator(1, 2, "link 2 cable reseated", "tech", now_wall=t + 90)
    assert [(d.link, d.fault) for d in closed] == [(2, "nvlink_down")]
    # a third down within the flap window: a flap on link 5, a first down on link 2 (its two
    # downs before the close went with it)
    down(2, t + 120)
    down(5, t + 120)
    assert {(d.link, d.fault) for d in svc.decisions_for(1)} == {
        (2, "nvlink_down"), (5, "nvlink_down"), (5, "nvlink_flap"), (None, "xid:62")}
    svc.store.close()


def test_a_close_covers_a_fault_found_again_at_the_next_start(tmp_path: Path) -> None:
    """A fault present at a GPU's first poll, judged by an earlier run, is judged again after a
    person closed that GPU's decisions: still there after they handled it, it is news."""
    db = tmp_path / "r.db"
    svc = _service(db, 0.0)
    pages = {"single_bit": 0, "double_bit": 70, "at_start": True}
    ev = FaultEvent(1000.0, 4, FaultKind.RETIRED_PAGES, None, pages)
    assert svc.ingest([ev], 1000.0)
    svc.close_by_operator(4, None, "reseated by hand", now_wall=2000.0)
    svc.close()
    svc.store.close()
    again = _service(db, 3000.0)
    assert again.ingest([FaultEvent(3000.0, 4, FaultKind.RETIRED_PAGES, None, pages)], 3000.0)
    again.store.close()


def test_xids_the_kernel_logged_before_an_offline_close_are_the_old_boards(
        tmp_path: Path) -> None:
    """Closed while rasd was down: the catch-up at start skips the closed GPU's Xids from
    before the close, and still judges the other GPUs' and the closed GPU's later ones."""
    boot = 1_700_000_000.0
    db = tmp_path / "r.db"
    svc = _service(db, boot)
    _xid79(svc, boot + 100.0, gpu=2)
    svc.close()
    svc.store.close()
    offline = _service(db, boot + 600.0)
    offline.close_by_operator(2, None, REASON, "tech", now_wall=boot + 600.0)
    offline.store.close()
    path = kmsg_file(tmp_path, [
        (boot + 500.0, "NVRM: Xid (PCI:0000:86:00): 79, pid=1, name=a, GPU has fallen off "
                       "the bus."),  # the old board, before the swap
        (boot + 510.0, "NVRM: Xid (PCI:0000:18:00): 62, pid=1, name=a, 0000a1e0"),  # GPU 0
        (boot + 700.0, "NVRM: Xid (PCI:0000:86:00): 62, pid=1, name=a, 0000a1e0"),  # new board
    ])
    started = _service(db, boot + 1000.0)
    logged, _ = backlog(path, boot + 100.0, boot + 1000.0, boot_wall=boot, journal=None)
    assert started.catch_up(logged, {(0, 0x18, 0): 0, (0, 0x86, 0): 2}, boot + 1000.0) == 2
    xids = [(f.event.gpu, f.event.details["xid"]) for f in started.store.faults()
            if f.event.kind is FaultKind.XID]
    assert xids == [(2, 79), (0, 62), (2, 62)]
    started.store.close()


@pytest.mark.parametrize("req, words", [
    ({"gpu": 3, "reason": "  "}, "reason is empty"),
    ({"gpu": 3}, "reason must be text"),
    ({"gpu": 5, "reason": REASON}, "nothing open for GPU 5"),
    ({"gpu": 3, "link": 4, "reason": REASON}, "nothing open on link 4"),
    ({"gpu": 12, "reason": REASON}, "no GPU 12 on this node"),
    ({"gpu": -1, "reason": REASON}, "not a GPU index"),
    ({"gpu": "3", "reason": REASON}, "not a GPU index"),
    ({"gpu": 3, "link": "x", "reason": REASON}, "not an NVLink number"),
])
def test_bad_requests_are_refused_in_one_line_and_change_nothing(
        tmp_path: Path, socket_path: str, req: dict, words: str) -> None:  # type: ignore[type-arg]
    db = tmp_path / "r.db"
    svc = _service(db, 0.0, gpu_info=lambda g: {"uuid": f"GPU-{g}"} if g < 8 else None)
    _rma(svc)
    before = _rows(db)
    server = _serve(svc, socket_path)
    try:
        reply = request(socket_path, {"op": "ladder.close", **req})
    finally:
        server.close()
    assert reply["ok"] is False and words in reply["error"], reply
    assert "\n" not in reply["error"]
    assert _rows(db) == before
    assert [d.rung for d in svc.decisions_for(3)] == [Rung.RMA]
    svc.store.close()


def test_a_gpu_lost_now_cannot_be_closed(tmp_path: Path, socket_path: str) -> None:
    """Closing a GPU the daemon finds lost at its last tick would leave a lost GPU with nothing
    open (and the node resumed): refused until the GPU answers again."""
    db = tmp_path / "r.db"
    svc = _service(db, 0.0, gpu_info=lambda g: {"uuid": f"GPU-{g}"} if g < 8 else None)
    t = _xid79(svc, 1000.0) and 1000.0
    svc.still_lost([3], t)
    before = _rows(db)
    server = _serve(svc, socket_path)
    try:
        reply = request(socket_path, {"op": "ladder.close", "gpu": 3, "reason": REASON})
        assert reply["ok"] is False and "GPU 3 is lost now" in reply["error"], reply
        assert _rows(db) == before and svc.decisions_for(3)
        svc.still_lost([], t + 60)  # it answers again (reseated, rebooted)
        reply = request(socket_path, {"op": "ladder.close", "gpu": 3, "reason": REASON})
        assert reply["ok"] is True and not svc.decisions_for(3)
    finally:
        server.close()
        svc.store.close()
