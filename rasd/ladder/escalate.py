"""Escalation: the ladder's decisions as one explicit state machine (pure, clock = event time).

Components are a GPU ``(gpu, None)`` or one NVLink port ``(gpu, link)``. A decision is open until
it is superseded, remedied, cleared, expired or closed by a person; ``_transition`` is the only
place where a decision opens or ends (its opening move is ``_open``), and each of its guards says
why the move is allowed. ``feed`` returns the ``Step`` one event caused: the decisions opened,
those superseded and those closed. Rules, in order:

* a cure that does not hold (the same fault class back on the component within
  ``cure_window_seconds`` of a remedy) repeats that remedy until it has failed to hold
  ``<rung>s_not_holding`` times, then climbs one rung; an RMA candidate goes straight to RMA;
* the same Xid on one GPU ``xid_recurrence_count`` times in its window (bursts count once) is an
  RMA for a hardware Xid, a technician flag otherwise;
* one open decision per component and fault class: a repeat at the same or a lower rung adds
  nothing; a higher rung supersedes the pending lower ones on that component (and inherits their
  degradations and investigations), never the reverse;
* a remedy that worked closes the open decisions it covers (a reboot covers the node, a GPU
  reset the GPU and its links); a process restart or GPU reset that failed climbs one rung at
  once; a reboot (or RMA request) that failed moves nothing: it did not happen, so it says
  nothing about any board, and its decisions stay open for the operator;
* a decision below RMA whose fault has not come back on its component for
  ``decision_window_seconds`` expires (closes), in a replay as in the daemon;
* a person closes a GPU's open decisions, or one link's, RMAs included (``rasd ladder close``:
  a remedy event whose action is ``operator_close``); the history of that GPU or link is
  forgotten with them, so the next fault there starts from the bottom of the ladder.

What the ladder remembers of past events lives in ``FaultHistory`` (history.py).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import replace
from typing import Any, Mapping, Sequence

from rasd.ladder.classify import JUDGES
from rasd.ladder.xids import (
    CONTEXTUAL, classify_xid, known_after_48, known_repeat, known_static, parse_gpc_tpc,
)
from rasd.ladder.decision import Decision, new_decision
from rasd.ladder.findings import EXCLUDE_GPU, TECHNICIAN, BadEvent, Finding
from rasd.ladder.history import _EMPTY, _READS_HISTORY, Component, FaultHistory, drop_before
from rasd.ladder.settings import LadderSettings
from rasd.ladder.step import Closure, Outcome, Step, new_closure
from rasd.model import FaultEvent, FaultKind, Rung, Scope

__all__ = ["Closure", "Component", "Escalator", "Outcome", "Step"]

_NO_DECISIONS: dict[str, Decision] = {}

_REMEDY, _SDC, _XID = FaultKind.REMEDY, FaultKind.SDC, FaultKind.XID
_LINK = Scope.LINK
_RMA = Rung.RMA
_push = heapq.heappush
_REBOOT = Rung.REBOOT_NODE
_NODE, _GPU = Scope.NODE, Scope.GPU
_EXPIRED = Outcome.EXPIRED._value_
_JUDGE = JUDGES  # by the kind's value: an enum member hashes slowly
_FLOOR = Rung.RESTART_PROCESS
# the kinds other than Xids that leave something in the history whatever their finding
_REMEMBERED = frozenset(k.value for k in (FaultKind.NVLINK, FaultKind.RETIRED_PAGES,
                                          FaultKind.PCIE_REPLAY))
SWEEP_SECONDS = 3600.0  # open decisions below this are flags, never superseded
# a remedy event's action when a person closed decisions by hand (the board replaced, a reboot
# they ran): stored with the other events, so a restart's replay closes them again
OPERATOR_CLOSE = "operator_close"


class Escalator:
    """Feed events in time order; read open decisions and flags. Not thread-safe (the service
    holds the lock)."""

    def __init__(self, settings: LadderSettings | None = None, *, sweep: bool = True,
                 components: bool = True):
        """``sweep``: forget what no window reaches once an hour of event time (a caller that
        owns many escalators, such as a fleet replay, calls ``sweep`` itself instead).
        ``components``: keep the GPUs and links seen (``gpus_seen``, ``links_seen``), which the
        service's state lists; a replay's report reads neither, and over a fleet's year they
        would hold every link that ever reported an error (about 230,000 on 16,384 GPUs)."""
        self.s = settings or LadderSettings()
        self._auto_sweep = sweep
        self._components = components
        self.history = FaultHistory(self.s, components=components)
        self.open: dict[Component, dict[str, Decision]] = defaultdict(dict)
        # when each (component, fault) was last reported, and a heap of expiry deadlines (an
        # entry whose fault was reported again since is stale and skipped)
        self._last_seen: dict[tuple[Component, str], float] = {}
        self._deadlines: list[tuple[float, int, int, str]] = []
        # (component, fault) whose decision does not expire until released: whether its fault is
        # still there is not known yet (a lost GPU's, after a restart, before the first poll)
        self._held: set[tuple[Component, str]] = set()
        self.next_sweep = float("-inf")
        self._window = self.s.decision_window_seconds
        self._node_window = self.s.node_remedy_window_seconds

    # ------------------------------------------------------------------ input

    def feed(self, event: FaultEvent) -> Step:
        """The step one event causes (often nothing). Raises BadEvent for malformed details."""
        step = Step()
        t = event.time_wall
        heap = self._deadlines
        if heap and heap[0][0] < t:
            self._expire(t, step)
        if self._auto_sweep and t >= self.next_sweep:
            self.sweep(t)
        h = self.history
        if t > h.last_time:  # the history's newest time and GPUs, kept here: every event passes
            h.last_time = t
        gpu = event.gpu
        if self._components:
            h.gpus_seen.add(gpu)
        kind = event.kind
        if kind is _XID:
            # most Xids read no history: their kept finding needs no context gathered; 13/31
            # and 63/64 read it only as yes/no questions, asked of the history directly
            d = event.details
            code = d.get("xid")
            message = d.get("message")
            finding = None
            if type(code) is int and (message is None or type(message) is str):
                if code == 13 or code == 31:
                    finding = known_repeat(code, message, *h.repeat_flags(
                        gpu, code, t, parse_gpc_tpc(message) if code == 13 else None), self.s)
                elif code == 63 or code == 64:
                    if not h.xid48_before(gpu, t):
                        finding = known_after_48(code, message, self.s)
                elif code not in CONTEXTUAL:
                    finding = known_static(code, message, event.link, d.get("architecture"),
                                           self.s)
            if finding is None:
                finding = classify_xid(event, h.context(event), self.s)
            h.remember(event, finding)
        elif kind is _REMEDY:
            self._remedy(event, step)
            return step
        elif kind is _SDC and event.details.get("verdict") == "cleared":
            self._sdc_cleared(event, step)
            return step
        else:
            value = kind._value_
            judge = _JUDGE.get(value)
            if judge is None:
                finding = None
            elif value in _READS_HISTORY and _reads_context(value, event.details):
                finding = judge(event, h.context(event), self.s)
            else:  # (its classification asks nothing of the past: no context gathered)
                finding = judge(event, _EMPTY, self.s)
            # (FaultHistory.remember, called only where it records something: most routine
            # reports, such as corrected ECC counts or thermal slowdowns, add nothing to it)
            if value in _REMEMBERED or (finding is not None and (
                    finding.link is not None or finding.repeat_key is not None
                    or finding.link_parity)):
                h.remember(event, finding)
        if finding is None:
            return step
        # (FaultHistory.fault, inline: a fault that asked for something, counted per GPU)
        times = h.fault_times[gpu]
        times.append(t)
        if times[0] < t - self._node_window:
            drop_before(times, t - self._node_window)
        self._decide(event, finding, step)
        return step

    def advance(self, t: float) -> Step:
        """Time passed without events (the daemon's tick): close what expired by ``t``."""
        step = Step()
        self._expire(t, step)
        return step

    def restore(self, stored: Sequence[Decision]) -> list[tuple[Decision | None, Decision | None]]:
        """After a restart's replay: make the open decisions exactly ``stored`` (those the store
        holds open, one per component and fault). The replay reaches back only so far, so it may
        rebuild a decision lower (an RMA whose five Xids fell outside it), or not at all; the
        stored one is what was decided and stays, at its rung. One the replay opened that the
        store does not hold open is withdrawn. A restored decision below RMA expires
        ``decision_window_seconds`` after its fault was last reported (as the replay saw it).
        Returns the differences, (replayed, stored), either side None where it had none.
        (The one move outside ``_transition``: it decides nothing, it puts back what was.)"""
        want = {((d.gpu, d.link), d.fault): d for d in stored}
        diffs: list[tuple[Decision | None, Decision | None]] = []
        for comp, on_comp in self.open.items():
            for fault, d in list(on_comp.items()):
                if (comp, fault) not in want:
                    del on_comp[fault]
                    self._last_seen.pop((comp, fault), None)
                    diffs.append((d, None))
        for (comp, fault), d in want.items():
            on_comp = self.open[comp]  # (a defaultdict: a component with nothing open gets one)
            current = on_comp.get(fault)
            if current == d:
                continue
            diffs.append((current, d))
            on_comp[fault] = d
            last = max(self._last_seen.get((comp, fault), d.time_wall), d.time_wall)
            self._last_seen[(comp, fault)] = last
            heapq.heappush(self._deadlines, (last + self._window, comp[0],
                                             -1 if comp[1] is None else comp[1], fault))
        return diffs

    def hold(self, comp: Component, fault: str) -> None:
        """Keep (comp, fault)'s open decision from expiring until ``release``: whether its fault
        is still there is not known yet."""
        self._held.add((comp, fault))

    def release(self, comp: Component, fault: str) -> None:
        """It is known again: the decision expires as its last report says (``still_present``
        first, where the fault is still there)."""
        self._held.discard((comp, fault))

    def _expire(self, t: float, step: Step) -> None:
        window = self._window
        heap = self._deadlines
        pop = heapq.heappop
        last_seen = self._last_seen
        open_ = self.open
        held = self._held
        kept: list[tuple[float, int, int, str]] = []
        while heap and heap[0][0] < t:
            entry = pop(heap)
            _, gpu, link, fault = entry
            comp: Component = (gpu, None if link < 0 else link)
            on_comp = open_.get(comp)
            if not on_comp:
                continue  # ended already
            d = on_comp.get(fault)
            if d is None or d.rung >= _RMA:
                continue  # ended already, or an RMA (waits for the board's replacement)
            key = (comp, fault)
            if held and key in held:
                kept.append(entry)  # due once released
                continue
            quiet = last_seen.get(key, t) + window
            if quiet > t:
                # reported again since this deadline was set: wait for the new one
                heapq.heappush(heap, (quiet, gpu, link, fault))
                continue
            # (``_transition(ending=EXPIRED)``, inline: its guards are the two tests above, and
            # a fleet's replay expires a decision for every third event)
            del on_comp[fault]
            last_seen.pop(key, None)
            if step.closed:  # (Step.close, inline)
                step.closed.append(new_closure(d, _EXPIRED, t))
            else:
                step.closed = [new_closure(d, _EXPIRED, t)]
        for entry in kept:
            heapq.heappush(heap, entry)

    def sweep(self, t: float) -> None:
        """Forget what no window reaches at time ``t`` (no later event than ``t`` may have been
        fed; none earlier may follow): memory stays flat in the number of events."""
        self.next_sweep = t + SWEEP_SECONDS
        self.history.sweep(t)
        open_ = self.open
        for comp in [c for c, ds in open_.items() if not ds]:
            del open_[comp]

    def _seen(self, comp: Component, fault: str, t: float, opened: bool = False) -> None:
        """The fault was reported on the component: its open decision stays (and expires
        ``decision_window_seconds`` after this report, unless reported again). A deadline is
        set when the decision opens; a later report moves it when it falls due."""
        self._last_seen[(comp, fault)] = t
        if opened:
            heapq.heappush(self._deadlines, (t + self._window, comp[0],
                                             -1 if comp[1] is None else comp[1], fault))

    def feed_all(self, events: Sequence[FaultEvent]) -> list[Decision]:
        out: list[Decision] = []
        for e in events:
            out.extend(self.feed(e))
        return out

    # ------------------------------------------------------------------ the one transition

    def _transition(self, step: Step, comp: Component, fault: str, t: float, *,
                    opening: Decision | None = None, ending: Outcome | None = None,
                    by: Rung = Rung.NONE, by_fault: str = "",
                    quiet_since: float = float("inf")) -> bool:
        """Open ``opening`` as (comp, fault), or end the open (comp, fault) with ``ending``
        because of a ``by`` rung (the new decision's, or the remedy's). Returns whether it moved;
        a guard that does not hold leaves the ladder as it was."""
        if opening is not None:
            self._open(step, comp, fault, t, opening)
            return True
        on_comp = self.open[comp]
        current = on_comp.get(fault)
        if current is None:
            return False  # guard: only an open decision can end
        if ending is Outcome.SUPERSEDED:
            # guard: a higher actionable rung takes over the pending lower ones on its
            # component (flags below restart_process stay: they ask nothing of the node), and a
            # new decision of the same fault class always replaces the old one (never lowering
            # it: the successor inherits the higher rung); a lower rung never supersedes
            if not ((_FLOOR <= current.rung < by) or fault == by_fault):
                return False
            del on_comp[fault]
            step.supersede(new_closure(current, ending._value_, t))
            return True
        if ending is Outcome.REMEDIED:
            # guard: a remedy covers the decisions at or below its rung; an RMA is never undone
            # by a remedy, and an SDC suspicion ends only with a clean deep check or an RMA
            if not (current.rung <= by and current.rung < Rung.RMA
                    and (fault != "sdc" or by is Rung.RMA)):
                return False
            del on_comp[fault]
            step.close(new_closure(current, ending._value_, t))
            self.history.remedied(comp, fault, by, t)
            return True
        if ending is Outcome.CLEARED:
            # guard: a clean deep check clears a suspicion, never a confirmed corruption (RMA)
            if current.rung >= Rung.RMA:
                return False
            del on_comp[fault]
            step.close(new_closure(current, ending._value_, t))
            return True
        if ending is Outcome.CLOSED_BY_OPERATOR:
            # guard: none beyond an open decision; a person handled it, whatever its rung
            del on_comp[fault]
            self._last_seen.pop((comp, fault), None)
            step.close(new_closure(current, ending._value_, t))
            return True
        if ending is Outcome.EXPIRED:
            # guard: only a fault that stayed away for the whole window expires (a stale
            # deadline, from before the fault was reported again, moves nothing), and an RMA
            # waits for the board's replacement however quiet the GPU is
            if current.rung >= Rung.RMA or quiet_since > t:
                return False
            del on_comp[fault]
            self._last_seen.pop((comp, fault), None)
            step.close(new_closure(current, ending._value_, t))
            return True
        raise ValueError(f"no transition given for {fault} on {comp}")

    def _open(self, step: Step, comp: Component, fault: str, t: float,
              opening: Decision) -> None:
        """``_transition(opening=...)`` (positional: once per decision of a fleet's replay)."""
        on_comp = self.open.get(comp)
        if on_comp is None:
            on_comp = self.open[comp] = {}
        # guard: one open decision per component and fault class; the caller ends the current
        # one (supersede) before it opens a successor
        if fault in on_comp:
            raise AssertionError(f"{fault} already open on {comp}")
        on_comp[fault] = opening
        # (``_seen(opened=True)``, inline)
        self._last_seen[(comp, fault)] = t
        heapq.heappush(self._deadlines, (t + self._window, comp[0],
                                         -1 if comp[1] is None else comp[1], fault))
        step.open(opening)

    # ------------------------------------------------------------------ decisions

    def _decide(self, e: FaultEvent, f: Finding, step: Step, *, forced: bool = False) -> None:
        """Weigh a finding against the history and move the ladder (``forced``: a failed remedy
        made it, so it counts as escalated)."""
        h = self.history
        t = e.time_wall
        gpu = e.gpu
        rung, scope = f.rung, f.scope
        comp: Component = (gpu, f.link if scope is _LINK else None)
        fault = f.fault
        # the finding's own reason and asks; copied into lists only when something adds to them
        # (most findings reach the ladder unchanged)
        reasons: list[str] | None = None
        investigate: Sequence[str] = f.investigate
        escalated = False

        # (FaultHistory.take_remedy, inline: most components have no remedy on record)
        remedied = h._remedied.get(comp)
        held = remedied.pop(fault, None) if remedied else None
        if held is not None and t - held[1] <= self.s.cure_window_seconds:
            r_rung = held[0]
            n = h.not_holding(comp, t, r_rung)
            reasons = [f.reason]
            if f.rma_candidate:
                rung, escalated = Rung.RMA, True
                reasons.append(f"came back after {r_rung.label}: recurrence confirms an RMA")
            elif n >= self._limit(r_rung) and r_rung < Rung.RMA:
                new = Rung(r_rung + 1)
                if new > rung:
                    rung, escalated = new, True
                reasons.append(f"{n} {r_rung.label} remedies did not hold: climb to {new.label}")
            else:
                if r_rung > rung:
                    rung, escalated = r_rung, True
                reasons.append(f"came back after {r_rung.label} ({n} of "
                               f"{self._limit(r_rung)} before climbing): repeat it")

        if f.xid is not None and e.kind is _XID:
            n = h.count_xid(gpu, f.xid, t)
            if n >= self.s.xid_recurrence_count:
                window = self.s.xid_recurrence_window_seconds / 3600
                if reasons is None:
                    reasons = [f.reason]
                if f.hardware or f.rma_candidate:
                    if rung < Rung.RMA:
                        rung, escalated = Rung.RMA, True
                    reasons.append(f"Xid {f.xid} {n} times in {window:g} h: RMA candidate")
                else:
                    reasons.append(f"Xid {f.xid} {n} times in {window:g} h: have it looked at")
                if TECHNICIAN not in investigate:
                    investigate = [*investigate, TECHNICIAN]

        degradations: Sequence[str] = f.degradations
        if rung is _REBOOT:
            scope, comp = _NODE, (gpu, None)
        elif rung is _RMA:  # the board goes back, not the node
            scope, comp = _GPU, (gpu, None)
            if EXCLUDE_GPU not in degradations:
                degradations = [*degradations, EXCLUDE_GPU]

        on_comp = self.open.get(comp)
        if on_comp:  # (most findings land on a component with nothing open: skip the weighing)
            existing = on_comp.get(fault)
            if existing is not None:
                self._last_seen[(comp, fault)] = t  # it came back: the decision stays open
                # (most findings ask for no investigation or degradation: no sets built)
                if existing.rung >= rung and (
                        not investigate or set(investigate) <= set(existing.investigate)) and (
                        not degradations or set(degradations) <= set(existing.degradations)):
                    return  # the open decision already covers it: nothing moves
            # (a decision at a rung below restart_process, with none of its fault open, ends
            # nothing: no rung below it is actionable)
            for key, d in list(on_comp.items()) if existing is not None or rung > _FLOOR else ():
                # (the transition's own guard, asked here first: most open decisions on a
                # component are unrelated flags, and the call costs more than the question)
                if (_FLOOR <= d.rung < rung or key == fault) and \
                        self._transition(step, comp, key, t, ending=Outcome.SUPERSEDED,
                                         by=rung, by_fault=fault):
                    # the successor inherits what the superseded decision asked for
                    investigate = _merged(investigate, d.investigate)
                    degradations = _merged(degradations, d.degradations)
                    if key == fault and d.rung > rung:
                        rung, scope = d.rung, d.scope
        decision = new_decision(  # positional: once per decision of a fleet's replay
            t, gpu, comp[1] if scope is _LINK else None, rung, scope,
            f.reason if reasons is None else "; ".join(reasons), tuple(investigate),
            tuple(degradations), fault, e.kind._value_, f.buckets, escalated or forced)
        # (``_open``, inline: the tail of every decision a fleet's replay takes)
        if on_comp is None:
            on_comp = self.open[comp] = {}
        elif fault in on_comp:  # guard: one open decision per component and fault class
            raise AssertionError(f"{fault} already open on {comp}")
        on_comp[fault] = decision
        self._last_seen[(comp, fault)] = t
        _push(self._deadlines, (t + self._window, gpu, -1 if comp[1] is None else comp[1], fault))
        if step.opened:  # (Step.open, inline)
            step.opened.append(decision)
        else:
            step.opened = [decision]

    def _limit(self, rung: Rung) -> int:
        if rung is Rung.RESTART_PROCESS:
            return self.s.restarts_not_holding
        if rung is Rung.RESET_GPU:
            return self.s.resets_not_holding
        if rung is Rung.REBOOT_NODE:
            return self.s.reboots_not_holding
        return 1

    # ------------------------------------------------------------------ remedies and clearance

    def _targets(self, e: FaultEvent, rung: Rung) -> list[Component]:
        if rung is _REBOOT:  # a reboot covers the node (an RMA only its own board)
            comps = {c for c, ds in self.open.items() if ds}
            if not self.open.get((e.gpu, None)):
                comps.add((e.gpu, None))
            return sorted(comps, key=_comp_order)
        if e.link is not None:
            return [(e.gpu, e.link)]
        # (the GPU's components are found in ``open`` itself: remedies are rare, and an index
        # kept for them would cost every decision that opens)
        comps = {c for c, ds in self.open.items() if ds and c[0] == e.gpu}
        return sorted(comps | {(e.gpu, None)}, key=_comp_order)

    def _remedy(self, e: FaultEvent, step: Step) -> None:
        action = e.details.get("action")
        if action == OPERATOR_CLOSE:
            self._close_by_operator(e, step)
            return
        result = e.details.get("result")
        try:
            rung = Rung.parse(str(action))
        except ValueError as ex:
            raise BadEvent(f"action: {ex}") from None
        if result not in ("ok", "failed"):
            raise BadEvent(f"result: {result!r} is not ok or failed")
        if result == "failed" and rung >= _REBOOT:
            # a reboot that failed did not happen (rasd is still here to read its result), and
            # an RMA request that failed was not sent: neither says anything about whether a
            # cure holds on any board, so nothing moves. The open decisions stay (the reboot
            # is still asked for, of the operator now); RMA comes only from cures that ran and
            # did not hold, from recurrence, or from a diagnostic
            return
        self.history.remedy_applied(e.time_wall)
        targets = self._targets(e, rung)
        if result == "ok":
            for comp in targets:
                for key in list(self.open.get(comp, {})):
                    self._transition(step, comp, key, e.time_wall, ending=Outcome.REMEDIED,
                                     by=rung)
                if rung is Rung.RMA:
                    self.history.forget_gpu(comp[0])
            return
        # a failed process restart or GPU reset climbs one rung at once (to a reset, a reboot)
        new = Rung(rung + 1)
        for comp in targets:
            pending = [d for d in self.open.get(comp, {}).values() if d.rung <= rung]
            if not pending and comp != (e.gpu, e.link):
                continue
            fault = max(pending, key=lambda d: d.rung).fault if pending else f"remedy:{rung.label}"
            if new is Rung.REBOOT_NODE:
                scope = Scope.NODE
            elif comp[1] is None:
                scope = Scope.GPU
            else:
                scope = Scope.LINK
            f = Finding(new, scope, fault,
                        f"{rung.label} failed: climb to {new.label}", link=comp[1],
                        degradations=tuple(sorted({x for d in pending for x in d.degradations})))
            self._decide(replace(e, gpu=comp[0], link=comp[1]), f, step, forced=True)

    def _close_by_operator(self, e: FaultEvent, step: Step) -> None:
        """A person handled what is open on the event's GPU (its links included), or on its one
        link: the board was replaced, or the reboot run by hand. Every decision there closes,
        RMAs too, and what the history holds of that GPU or link goes with them: it belongs to
        the old board, or to the fault the person dealt with, so the next fault there starts
        from the bottom of the ladder. No remedy of rasd's: it counts nothing towards the
        node's remedies."""
        for comp in self.open_on(e.gpu, e.link):
            for key in list(self.open[comp]):
                self._transition(step, comp, key, e.time_wall,
                                 ending=Outcome.CLOSED_BY_OPERATOR)
        if e.link is None:
            self.history.forget_gpu(e.gpu)
        else:
            self.history.forget_link((e.gpu, e.link))

    def _sdc_cleared(self, e: FaultEvent, step: Step) -> None:
        if not self._transition(step, (e.gpu, None), "sdc", e.time_wall, ending=Outcome.CLEARED):
            return
        # the all-clear is itself a decision (rung none) so the GPU's return is on record
        step.open(Decision(e.time_wall, e.gpu, None, Rung.NONE, Scope.GPU,
                           "SDC deep check cleared the GPU: back in service", (), (),
                           "sdc", FaultKind.SDC.value))

    # ------------------------------------------------------------------ reading

    def still_present(self, comp: Component, fault: str, t: float) -> bool:
        """The fault is still there at ``t`` without a new report (a GPU that stays lost is
        reported once, when it goes): its open decision stays open, as if reported again, so
        it never expires while the fault lasts. True where there is such a decision."""
        if fault not in self.open.get(comp, _NO_DECISIONS):
            return False
        self._seen(comp, fault, t)
        return True

    def open_on(self, gpu: int, link: int | None = None) -> list[Component]:
        """The components of GPU ``gpu`` (only its link ``link``, where given) with an open
        decision, GPU first, then its links in order."""
        return sorted((c for c, ds in self.open.items()
                       if ds and c[0] == gpu and (link is None or c[1] == link)),
                      key=_comp_order)

    def open_decisions(self) -> list[Decision]:
        return sorted((d for ds in self.open.values() for d in ds.values()),
                      key=lambda d: (d.time_wall, d.gpu, -1 if d.link is None else d.link, d.fault))

    # the history's readings, for the service's state
    @property
    def gpus_seen(self) -> set[int]:
        return self.history.gpus_seen

    @property
    def links_seen(self) -> set[Component]:
        return self.history.links_seen


def _reads_context(kind: str, details: Mapping[str, Any]) -> bool:
    """Whether the classification of an event of a kind that may read the history reads it this
    time: a PCIe replay report that gives its own window (``seconds``) does not, nor does a
    report of an NVLink that is up (only a down reads the link's earlier downs). Most of a
    fleet's routine reports are those two."""
    if kind == "pcie_replay":
        return details.get("seconds") is None
    if kind == "nvlink":
        state: object = details.get("state", "down")
        return state != "up"
    return True


def _merged(into: Sequence[Any], more: Sequence[Any]) -> Sequence[Any]:
    """``into`` with what ``more`` adds to it, in order (``into`` itself when nothing)."""
    extra = [x for x in dict.fromkeys(more) if x not in into]
    return [*into, *extra] if extra else into


def _comp_order(c: Component) -> tuple[int, int]:
    return (c[0], -1 if c[1] is None else c[1])
