"""Remedy events and clearances (pure, clock = event time): a remedy that worked closes the
open decisions it covers, a failed process restart or GPU reset climbs one rung, a person's
close (``operator_close``) ends a GPU's or a link's decisions and forgets their history, and a
clean SDC deep check clears a suspicion.
"""

from __future__ import annotations

from dataclasses import replace

from rasd.ladder.decision import Decision
from rasd.ladder.findings import BadEvent, Finding
from rasd.ladder.history import Component
from rasd.ladder.step import Outcome, Step
from rasd.ladder.transition import _comp_order
from rasd.ladder.weigh import Weighing
from rasd.model import FaultEvent, FaultKind, Rung, Scope

_REBOOT = Rung.REBOOT_NODE
# a remedy event's action when a person closed decisions by hand (the board replaced, a reboot
# they ran): stored with the other events, so a restart's replay closes them again
OPERATOR_CLOSE = "operator_close"


class Remedies(Weighing):
    """Remedy events (``_remedy``) and SDC clearances (``_sdc_cleared``) on the open
    decisions."""

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
