"""A person closes open decisions by hand (``rasd ladder close``): the board replaced, a reboot run
by hand. Nothing else ends an RMA, and a decision the operator dealt with would otherwise keep
the GPU excluded (and the node out) until it expires, or for ever for an RMA.

The close is an event of the history, a remedy whose action is ``operator_close`` carrying the
reason and who gave it, stored with the step it caused in one transaction: a restart's replay
closes the same decisions and forgets the same history (escalate.py), so nothing is restored
that a person closed, and the next fault on that GPU starts from the bottom of the ladder.

A replaced board closes its GPU's decisions the same way, by rasd (``close_replaced``): each
decision is stored with the UUID of the board it was made on, and a GPU whose board answers
with another UUID (at the first poll after a start, or when it comes back from lost) is a new
board, whose history owes nothing to the old one's faults.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rasd.ladder.decision import Decision
from rasd.ladder.escalate import OPERATOR_CLOSE
from rasd.ladder.step import Outcome
from rasd.model import FaultEvent, FaultKind

if TYPE_CHECKING:
    from rasd.ladder.escalate import Escalator
    from rasd.ladder.service import LadderService

log = logging.getLogger("rasd.ladder")

_CLOSED = Outcome.CLOSED_BY_OPERATOR.value


@dataclass(slots=True)
class Boards:
    """The service's replaced-board bookkeeping (``close_replaced``): the GPUs whose board was
    compared with their open decisions' since the start or their last loss, and whether one is
    still to be compared."""

    due: bool
    seen: set[int] = field(default_factory=set)


def close_by_operator(svc: LadderService, gpu: int, link: int | None, reason: str,
                      by: str = "", now_wall: float | None = None,
                      what: str = "ladder_closed_by_operator") -> list[Decision]:
    """Close every open decision of GPU ``gpu`` (its links included), or of its link ``link``
    alone, RMAs too, as ``closed_by_operator``; ``now_wall``: Unix seconds (default: now);
    ``what``: the log line's event. Returns the decisions closed. Raises ValueError naming the
    problem and the fix (an empty reason, no such GPU, nothing open there); nothing is stored
    then."""
    reason = reason.strip()
    if not reason:
        raise ValueError('the reason is empty; say what was done, e.g. --reason "board '
                         'replaced (serial ...)"')
    uuid = svc.identity(gpu).get("uuid")
    with svc.locked() as esc:
        if not esc.open_on(gpu, link):
            raise ValueError(nothing_open(svc, esc, gpu, link))
        details: dict[str, Any] = {"action": OPERATOR_CLOSE, "result": "closed",
                                   "reason": reason, "by": by}
        if uuid:
            details["uuid"] = uuid  # the board in the slot when the person closed it
        # never before an event already fed: a restart's replay goes in time order
        now = time.time() if now_wall is None else now_wall
        e = FaultEvent(max(now, esc.history.last_time), gpu, FaultKind.REMEDY, link, details)
        step = esc.feed(e)
        svc.store.record_step(e, [d.to_dict() for d in step.opened], [
            (d.time_wall, d.gpu, d.link, d.fault, c.outcome, c.time_wall, d.rung.label)
            for c in step.ended for d in (c.decision,)])
    closed = [c.decision for c in step.closed if c.outcome == _CLOSED]
    log.info("event=%s gpu=%s link=%s by=%r reason=%r closed=%s", what, gpu, link, by, reason,
             ",".join(f"{d.fault}:{d.rung.label}" for d in closed))
    return closed


def close_replaced(svc: LadderService, now_wall: float) -> list[Decision]:
    """Close the open decisions of each GPU whose board is not the one they were made on, as a
    person's close does (by ``rasd``, reason ``board replaced: uuid OLD -> NEW``). Asked once per
    GPU with open decisions after a start, and again after each of its losses, as soon as its
    UUID can be read; a GPU that is lost, or whose UUID cannot be read, is never taken as
    replaced, nor is one whose decisions were stored without a UUID (an older store). Returns
    the decisions closed."""
    closed: list[Decision] = []
    with svc.locked() as esc:
        boards = svc.boards
        due = {d.gpu for d in esc.open_decisions()} - svc.lost_now - boards.seen
        pending = False
        for gpu in sorted(due):
            new = svc.uuid_of(gpu)
            if new is None:
                pending = True  # not read yet (no poll, or lost since): asked again next pass
                continue
            boards.seen.add(gpu)
            old = _made_on(svc, esc, gpu, new)
            if old is None:
                continue
            try:
                closed += close_by_operator(svc, gpu, None, f"board replaced: uuid {old} -> {new}",
                                            "rasd", now_wall, what="ladder_board_replaced")
            except ValueError:  # (nothing open after all: no decision to close)
                continue
        boards.due = pending
    return closed


def _made_on(svc: LadderService, esc: Escalator, gpu: int, uuid: str) -> str | None:
    """The UUID of another board that an open decision of GPU ``gpu`` was made on (the newest
    such decision's), or None: all were made on board ``uuid``, or stored without one. Only
    the decisions the ladder holds open count (an SDC all-clear stays open in the store as a
    record of the old board's return, and says nothing about the board in the slot now). Where
    decisions of both boards are open, the old board's are stale whatever the new one's say,
    and the GPU is closed as a person would close it."""
    held = {(d.time_wall, d.link, d.fault) for d in esc.open_decisions() if d.gpu == gpu}
    old = None
    for row in svc.store.decisions(gpu=gpu, open_only=True):
        b = row.body
        made = b.get("uuid")
        if isinstance(made, str) and made != uuid and (b.get("time"), b.get("link"), b.get("fault")) in held:
            old = made  # (rows come oldest first: the newest wins)
    return old


def nothing_open(svc: LadderService, esc: Escalator, gpu: int, link: int | None) -> str:
    """Why a close found nothing to close there, and what to do instead (``esc``: the service's
    escalator, its lock held)."""
    others = esc.open_on(gpu)
    if link is not None and others:
        where = ", ".join("the GPU itself" if c[1] is None else f"link {c[1]}" for c in others)
        return (f"GPU {gpu} has nothing open on link {link} (open: {where}); leave out --link "
                f"to close all of GPU {gpu}'s, or name one of those links")
    if _no_such_gpu(svc, esc, gpu):
        return (f"no GPU {gpu} on this node (rasd has never seen it); check the index with "
                "rasd status")
    on = f"GPU {gpu}" + (f" link {link}" if link is not None else "")
    return (f"nothing open for {on}; rasd ladder shows what is open, rasd history --gpu {gpu} "
            "what was decided")


def handle(svc: LadderService, req: dict[str, Any]) -> dict[str, Any]:
    """The control socket's ``ladder.close``: ``gpu``, optional ``link``, ``reason``, ``by``."""
    gpu, link, reason = req.get("gpu"), req.get("link"), req.get("reason")
    if type(gpu) is not int or gpu < 0:
        raise ValueError(f"gpu {gpu!r} is not a GPU index; give a number such as 0")
    if link is not None and (type(link) is not int or link < 0):
        raise ValueError(f"link {link!r} is not an NVLink number; give one such as 0, or none "
                         "for the whole GPU")
    if not isinstance(reason, str):
        raise ValueError('reason must be text saying what was done, e.g. "board replaced '
                         '(serial ...)"')
    if gpu in svc.lost_now:
        raise ValueError(f"GPU {gpu} is lost now (NVML cannot reach it): closing its decisions would hide "
                         "that; reseat or replace the board and reboot first, then close")
    closed = close_by_operator(svc, gpu, link, reason, str(req.get("by", "")))
    return {"gpu": gpu, "link": link, "closed": [d.to_dict() for d in closed]}


def _no_such_gpu(svc: LadderService, esc: Escalator, gpu: int) -> bool:
    """Neither seen by the ladder nor ever decided about, nor polled by the daemon (offline:
    beyond ``[ladder] gpus_per_node``)."""
    if gpu in esc.history.gpus_seen or svc.store.decisions(gpu=gpu, limit=1):
        return False
    if svc.polls_gpus:
        return not svc.identity(gpu)
    return gpu >= svc.settings.gpus_per_node
