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

What the ladder remembers of past events lives in ``FaultHistory`` (history.py); the open
decisions, the one transition and expiry in ``OpenDecisions`` (transition.py); a finding's
weighing in weigh.py; remedy events and clearances in remedies.py. This module takes each event
in, classifies it and sends it on its way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rasd.ladder.classify import JUDGES
from rasd.ladder.xids import (
    CONTEXTUAL, classify_xid, known_after_48, known_repeat, known_static, parse_gpc_tpc,
)
from rasd.ladder.decision import Decision
from rasd.ladder.history import _EMPTY, _READS_HISTORY, Component, drop_before
from rasd.ladder.remedies import OPERATOR_CLOSE, Remedies
from rasd.ladder.settings import LadderSettings
from rasd.ladder.step import Closure, Outcome, Step
from rasd.model import FaultEvent, FaultKind

__all__ = ["OPERATOR_CLOSE", "Closure", "Component", "Escalator", "Outcome", "Step"]

_REMEDY, _SDC, _XID = FaultKind.REMEDY, FaultKind.SDC, FaultKind.XID
_JUDGE = JUDGES  # by the kind's value: an enum member hashes slowly
# the kinds other than Xids that leave something in the history whatever their finding
_REMEMBERED = frozenset(k.value for k in (FaultKind.NVLINK, FaultKind.RETIRED_PAGES,
                                          FaultKind.PCIE_REPLAY))
SWEEP_SECONDS = 3600.0  # event time between two sweeps of what no window reaches (``sweep``)


class Escalator(Remedies):
    """Feed events in time order; read open decisions and flags. Not thread-safe (the service
    holds the lock)."""

    def __init__(self, settings: LadderSettings | None = None, *, sweep: bool = True,
                 components: bool = True):
        """``sweep``: forget what no window reaches once an hour of event time (a caller that
        owns many escalators, such as a fleet replay, calls ``sweep`` itself instead).
        ``components``: keep the GPUs and links seen (``gpus_seen``, ``links_seen``), which the
        service's state lists; a replay's report reads neither, and over a fleet's year they
        would hold every link that ever reported an error (about 230,000 on 16,384 GPUs)."""
        super().__init__(settings or LadderSettings(), components=components)
        self._auto_sweep = sweep
        self._components = components
        self.next_sweep = float("-inf")
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

    def sweep(self, t: float) -> None:
        """Forget what no window reaches at time ``t`` (no later event than ``t`` may have been
        fed; none earlier may follow): memory stays flat in the number of events."""
        self.next_sweep = t + SWEEP_SECONDS
        self.history.sweep(t)
        open_ = self.open
        for comp in [c for c, ds in open_.items() if not ds]:
            del open_[comp]

    def feed_all(self, events: Sequence[FaultEvent]) -> list[Decision]:
        out: list[Decision] = []
        for e in events:
            out.extend(self.feed(e))
        return out


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
