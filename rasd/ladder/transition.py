"""The ladder's open decisions and their lifetimes (pure, clock = event time): which decision is
open on each component and fault class, the one transition that opens or ends one (with its
guards), and when each expires (``decision_window_seconds`` after its fault was last reported,
unless held). The escalator (escalate.py) builds on it; a restart puts the stored decisions back
here (``restore``).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.history import Component, FaultHistory
from rasd.ladder.settings import LadderSettings
from rasd.ladder.step import Outcome, Step, new_closure
from rasd.model import Rung

_NO_DECISIONS: dict[str, Decision] = {}

_RMA = Rung.RMA
_EXPIRED = Outcome.EXPIRED._value_
_FLOOR = Rung.RESTART_PROCESS  # open decisions below this are flags, never superseded


class OpenDecisions:
    """The open decisions, their expiry deadlines and the one transition. Not thread-safe (the
    service holds the lock)."""

    def __init__(self, settings: LadderSettings, *, components: bool = True):
        """``components``: whether the history keeps the GPUs and links seen (see
        ``Escalator``)."""
        self.s = settings
        self.history = FaultHistory(self.s, components=components)
        self.open: dict[Component, dict[str, Decision]] = defaultdict(dict)
        # when each (component, fault) was last reported, and a heap of expiry deadlines (an
        # entry whose fault was reported again since is stale and skipped)
        self._last_seen: dict[tuple[Component, str], float] = {}
        self._deadlines: list[tuple[float, int, int, str]] = []
        # (component, fault) whose decision does not expire until released: whether its fault is
        # still there is not known yet (a lost GPU's, after a restart, before the first poll)
        self._held: set[tuple[Component, str]] = set()
        self._window = self.s.decision_window_seconds

    # ------------------------------------------------------------------ time and expiry

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

    def _seen(self, comp: Component, fault: str, t: float, opened: bool = False) -> None:
        """The fault was reported on the component: its open decision stays (and expires
        ``decision_window_seconds`` after this report, unless reported again). A deadline is
        set when the decision opens; a later report moves it when it falls due."""
        self._last_seen[(comp, fault)] = t
        if opened:
            heapq.heappush(self._deadlines, (t + self._window, comp[0],
                                             -1 if comp[1] is None else comp[1], fault))

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


def _comp_order(c: Component) -> tuple[int, int]:
    return (c[0], -1 if c[1] is None else c[1])
