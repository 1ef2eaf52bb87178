"""The ladder's restart path: rebuild the escalator from the store when rasd starts.

History is event-sourced (service.py): every fault event is stored with the step it caused, so
after a restart the escalator is rebuilt by replaying the stored events of the escalation
horizon (or since the oldest still-open decision), without re-storing or re-acting. The open
decisions are then those the store holds open. An open decision whose plan never ran (it waited,
was cancelled at shutdown, or rasd died first) is named here, for the service to plan again on
its first pass through the same actuator path as a new one; and a fault found already present at
a GPU's first poll that an earlier run judged is not judged again.

Functions over the escalator, the store and the actuator the service hands them; the caller
holds the lock that guards the escalator.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from rasd.ladder.actions import RAN, RUNG_ACTIONS, Actuator
from rasd.ladder.classify import LOST_FAULT
from rasd.ladder.decision import Decision
from rasd.ladder.escalate import OPERATOR_CLOSE, Escalator
from rasd.ladder.findings import BadEvent
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import ActionRecord, Store

log = logging.getLogger("rasd.ladder")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restart rebuilt: ``events`` replayed; ``held_lost``: the lost GPUs' components
    whose decisions wait for the first tick that says whether they still are lost;
    ``unplanned``: the open decisions whose plan never ran (planned again on the first pass)."""

    events: int
    held_lost: list[tuple[int, int | None]]
    unplanned: list[Decision]


def rebuild(esc: Escalator, store: Store, actuator: Actuator, horizon_seconds: float,
            now_wall: float, booted_wall: float | None,
            advance: Callable[[float], None]) -> Restored:
    """Rebuild the ladder after a restart. The stored events of the escalation horizon (or
    since the oldest still-open decision) are replayed for the history the next decisions
    weigh; the open decisions are then those the store holds open, at their stored rung:
    a replay that reaches back less far than the events that decided them (the five Xids
    of an RMA) must not lower or end them. Nothing of the replay itself is written; only
    what expired while rasd was down is news to the store (``advance``: the service's, which
    closes and stores what expired by a time, Unix s)."""
    since = now_wall - horizon_seconds
    oldest = store.oldest_open_decision()
    if oldest is not None:
        since = min(since, oldest)
    n = 0
    for row in store.faults(since=since):
        try:
            esc.feed(row.event)  # its step was stored when it arrived
        except BadEvent:
            continue  # it was counted when it first arrived
        n += 1
    for replayed, stored in esc.restore(stored_open(store, now_wall)):
        d = stored or replayed
        if d is not None:  # (a difference has at least one side)
            log.info("ladder_restore_kept_stored gpu=%s link=%s fault=%s stored=%s "
                     "replayed=%s", d.gpu, d.link, d.fault,
                     stored.rung.label if stored else "none",
                     replayed.rung.label if replayed else "none")
    # a lost GPU's decision is kept open by the ticks that find it still lost, which are
    # not stored: it waits for the first tick that says whether it still is
    held_lost: list[tuple[int, int | None]] = [
        (d.gpu, None) for d in esc.open_decisions() if d.fault == LOST_FAULT and d.link is None]
    for comp in held_lost:
        esc.hold(comp, LOST_FAULT)
    advance(now_wall)
    open_now = esc.open_decisions()
    unplanned = not_run(open_now, now_wall, store, actuator, booted_wall)
    log.info("ladder_restored events=%d since=%.0f open=%d not_run=%d", n, since,
             len(open_now), len(unplanned))
    return Restored(n, held_lost, unplanned)


def not_run(decisions: Sequence[Decision], now: float, store: Store, actuator: Actuator,
            booted_wall: float | None) -> list[Decision]:
    """The open decisions whose plan did not run since they were decided: no run (ok or
    failed) of the plan's last command, nor a failed one of any of its commands, on the
    decision's component (a reboot's on any GPU) at or after its time. Skips (busy, rate
    limited) are not runs. The rate limits are fed the stored runs, so a plan planned
    again waits as it would have. ``booted_wall``: when the node last booted (Unix s; None:
    the kernel's boot time, read when a reboot decision asks).

    A plan with no command (none configured for its kinds) leaves no run in the store: it is
    the gate's drain alone, and rasd may have died before the gate was asked. Where enforced
    with a gate it is planned again too, unless the gate let it through before (the scheduler
    keeps which it did): a node a person returned to service while the decision stays open is
    not taken out again at every start. Where that is not known, the gate asks the scheduler
    afresh, so a node rasd already took out for it is not taken out twice."""
    oldest = min((d.time_wall for d in decisions), default=None)
    reach = max(3600.0, actuator.s.min_interval_seconds)
    since = now - reach if oldest is None else min(oldest, now - reach)
    runs = [a for a in store.actions(since=since) if a.result in RAN]
    actuator.remember_runs((a.time_wall, a.gpu, a.link, a.kind) for a in runs)
    out = []
    for d in decisions:
        kinds = actuator.kinds(d)
        if not kinds and (actuator.gate is None or not actuator.enforced):
            continue  # nothing to run and no node to take out: there is no plan
        if not kinds and actuator.gated is not None and actuator.gated(d):
            continue  # its gate's drain happened: the plan ran
        if kinds and any(_ran_for(a, d, kinds) for a in runs):
            continue
        if d.rung is Rung.REBOOT_NODE:
            if booted_wall is None:
                booted_wall = _boot_time()
            booted = booted_wall
            if booted is None or booted > d.time_wall:
                # the node rebooted since (or it cannot be told): a reboot that ended rasd
                # before its result was stored must not run again at every start
                log.warning("event=ladder_not_resubmitted gpu=%s link=%s rung=%s fault=%s "
                            "decided=%.0f why=%s detail=%r", d.gpu, d.link, d.rung.label,
                            d.fault, d.time_wall,
                            "boot_time_unknown" if booted is None else "booted_since",
                            "the decision stays open for the operator")
                continue
        out.append(d)
    return out


def stored_open(store: Store, now_wall: float) -> list[Decision]:
    """The decisions the store holds open, one per component and fault (an SDC all-clear
    aside: stored open as a record, never held by the ladder). Where an older store holds
    two, the higher rung (then the later) stays and the other is closed as superseded, so
    that the store and the ladder agree."""
    kept: dict[tuple[int, int | None, str], Decision] = {}
    extra: list[Decision] = []
    for row in store.decisions(open_only=True):
        try:
            d = Decision.from_dict(row.body)
        except (KeyError, TypeError, ValueError) as e:
            log.warning("event=stored_decision_unreadable id=%d problem=%r (left open in "
                        "the store, not in the ladder)", row.id, str(e))
            continue
        if _is_all_clear(d):
            continue  # a record of the GPU's return, never a decision the ladder holds open
        key = (d.gpu, d.link, d.fault)
        other = kept.get(key)
        if other is not None and (other.rung, other.time_wall) > (d.rung, d.time_wall):
            d, other = other, d
        if other is not None:
            extra.append(other)
        kept[key] = d
    if extra:
        log.warning("event=stored_decisions_duplicate count=%d (the lower closed as "
                    "superseded)", len(extra))
        store.record_step(None, (), [
            (d.time_wall, d.gpu, d.link, d.fault, "superseded", now_wall, d.rung.label)
            for d in extra])
    return list(kept.values())


def still_open(unplanned: Sequence[Decision], open_now: Sequence[Decision]) -> list[Decision]:
    """The decisions open at the restart whose plan never ran, still open now (``open_now``):
    planned again as new decisions are (the same gates, limits and advisory mode), each said
    once."""
    still = set(open_now)
    out = [d for d in unplanned if d in still]
    for d in out:
        log.info("event=ladder_resubmitted gpu=%s link=%s rung=%s fault=%s decided=%.0f "
                 "detail=%r", d.gpu, d.link, d.rung.label, d.fault, d.time_wall,
                 "open at the restart, its plan never ran (or has no command, its gate "
                 "asks the scheduler afresh): planned again")
    return out


def judged_before_start(store: Store, e: FaultEvent) -> bool:
    """A fault found already present at a GPU's first poll (``at_start``) that an earlier
    run stored with the same details was judged then: a restart does not judge it again.
    Unless a remedy that covers it worked since (a reboot covers the node, any other the
    GPU, or only its link): the fault still there after the cure is news, the cure did not
    hold."""
    if not e.details.get("at_start"):
        return False
    want = json.loads(json.dumps(dict(e.details), sort_keys=True, default=str))
    judged = max((f.event.time_wall for f in store.faults(gpu=e.gpu)
                  if f.event.kind is e.kind and f.event.link == e.link
                  and dict(f.event.details) == want), default=None)
    if judged is None:
        return False
    return not any(_covers(f.event, e) for f in store.faults(since=judged))


def _covers(remedy: FaultEvent, e: FaultEvent) -> bool:
    """Whether ``remedy`` is a remedy that worked on ``e``'s component (or a person closed
    what was open on it: a fault there after it is news)."""
    if remedy.kind is not FaultKind.REMEDY:
        return False
    if remedy.details.get("action") == OPERATOR_CLOSE:
        return remedy.gpu == e.gpu and remedy.link in (None, e.link)
    if remedy.details.get("result") != "ok":
        return False
    if remedy.details.get("action") == Rung.REBOOT_NODE.label:
        return True
    return remedy.gpu == e.gpu and remedy.link in (None, e.link)


def _ran_for(a: ActionRecord, d: Decision, kinds: Sequence[str]) -> bool:
    """Whether the stored run ``a`` (a command that ran) was ``d``'s plan, run through or
    stopped by a failure: its last command, or a failed one, on its component since it was
    decided. A reboot is the node's, whichever GPU's decision ran it."""
    if a.time_wall < d.time_wall or a.kind not in kinds:
        return False
    if a.kind != kinds[-1] and a.result == "ok":
        return False  # an earlier step (a drain) that went on to the next
    if a.kind == RUNG_ACTIONS[Rung.REBOOT_NODE]:
        return True
    return a.gpu == d.gpu and a.link == d.link


def _boot_time(path: str = "/proc/stat") -> float | None:
    """When the node booted (Unix s: the kernel's ``btime``); None where it cannot be read.
    (Read here rather than through psutil: a daemon at its defaults does not load psutil.)"""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_all_clear(d: Decision) -> bool:
    """The decision a clean SDC deep check leaves (rung none, asking nothing): the ladder emits
    it so the GPU's return is on record, and holds it open nowhere (a suspicion of the same fault
    always asks for its deep check and excludes the GPU)."""
    return d.fault == "sdc" and d.rung is Rung.NONE and not d.investigate and not d.degradations
