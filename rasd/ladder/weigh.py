"""A finding weighed against the history (pure, clock = event time): whether an earlier remedy
failed to hold (repeat it, or climb), whether the Xid recurred often enough for an RMA or a
technician, which open decisions on the component it supersedes, and the decision it opens.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

from rasd.ladder.decision import new_decision
from rasd.ladder.findings import EXCLUDE_GPU, TECHNICIAN, Finding
from rasd.ladder.history import Component
from rasd.ladder.step import Outcome, Step
from rasd.ladder.transition import OpenDecisions
from rasd.model import FaultEvent, FaultKind, Rung, Scope

_XID = FaultKind.XID
_LINK = Scope.LINK
_RMA = Rung.RMA
_push = heapq.heappush
_REBOOT = Rung.REBOOT_NODE
_NODE, _GPU = Scope.NODE, Scope.GPU
_FLOOR = Rung.RESTART_PROCESS  # open decisions below this are flags, never superseded


class Weighing(OpenDecisions):
    """Turns findings into decisions on the open ones (``_decide``)."""

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


def _merged(into: Sequence[Any], more: Sequence[Any]) -> Sequence[Any]:
    """``into`` with what ``more`` adds to it, in order (``into`` itself when nothing)."""
    extra = [x for x in dict.fromkeys(more) if x not in into]
    return [*into, *extra] if extra else into

