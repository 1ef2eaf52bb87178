"""Escalation: a state machine per component over the fault history (pure, clock = event time).

Components are a GPU ``(gpu, None)`` or one NVLink port ``(gpu, link)``. Rules, in order:

* a cure that does not hold (the same fault class back on the component within
  ``cure_window_seconds`` of a remedy) repeats that remedy until it has failed to hold
  ``<rung>s_not_holding`` times, then climbs one rung; an RMA candidate goes straight to RMA;
* the same Xid on one GPU ``xid_recurrence_count`` times in its window (bursts count once) is an
  RMA for a hardware Xid, a technician flag otherwise;
* one open decision per component and fault class: a repeat at the same or a lower rung adds
  nothing; a higher rung supersedes the pending lower ones on that component (and inherits their
  degradations and investigations), never the reverse;
* a remedy that worked closes the open decisions it covers (a reboot covers the node, a GPU
  reset the GPU and its links); one that failed climbs one rung at once.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, replace
from typing import Sequence

from rasd.ladder.classify import classify
from rasd.ladder.decision import Decision
from rasd.ladder.findings import EXCLUDE_GPU, TECHNICIAN, BadEvent, Context, Finding, XidSeen
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xids import parse_gpc_tpc, parse_link
from rasd.model import FaultEvent, FaultKind, Rung, Scope

Component = tuple[int, "int | None"]
_FLOOR = Rung.RESTART_PROCESS  # open decisions below this are flags, never superseded


@dataclass(frozen=True, slots=True)
class Closure:
    """An open decision that ended: ``outcome`` is remedied, superseded, cleared or replaced."""

    decision: Decision
    outcome: str
    time_wall: float


class Escalator:
    """Feed events in time order; read open decisions and flags. Not thread-safe (the service
    holds the lock)."""

    def __init__(self, settings: LadderSettings | None = None):
        self.s = settings or LadderSettings()
        self.open: dict[Component, dict[str, Decision]] = defaultdict(dict)
        self.closures: list[Closure] = []  # drained by the service
        self._remedied: dict[Component, dict[str, tuple[Rung, float]]] = defaultdict(dict)
        self._not_held: dict[Component, list[tuple[float, Rung]]] = defaultdict(list)
        self._xid_counted: dict[tuple[int, int], list[float]] = defaultdict(list)
        self._xid_last: dict[tuple[int, int], float] = {}
        self._link_downs: dict[Component, list[float]] = defaultdict(list)
        self._parity: dict[Component, int] = defaultdict(int)
        self._dbe: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self._pcie_last: dict[int, float] = {}
        self.node_remedies: list[float] = []
        self._gpu_comps: dict[int, set[Component]] = defaultdict(set)  # index for remedies
        self._recent_gpu: dict[int, deque[XidSeen]] = defaultdict(deque)
        self._recent_code: dict[int, deque[XidSeen]] = defaultdict(deque)
        self.fault_times: dict[int, list[float]] = defaultdict(list)  # recurrence, per GPU
        self.gpus_seen: set[int] = set()
        self.links_seen: set[Component] = set()
        self.last_time = float("-inf")

    # ------------------------------------------------------------------ input

    def feed(self, event: FaultEvent) -> list[Decision]:
        """Decisions caused by one event (often none). Raises BadEvent for malformed details."""
        self.last_time = max(self.last_time, event.time_wall)
        self.gpus_seen.add(event.gpu)
        if event.kind is FaultKind.REMEDY:
            return self._remedy(event)
        if event.kind is FaultKind.SDC and event.details.get("verdict") == "cleared":
            return self._sdc_cleared(event)
        ctx = self._context(event)
        finding = classify(event, ctx, self.s)
        self._remember(event, finding)
        if finding is None:
            return []
        times = self.fault_times[event.gpu]
        times.append(event.time_wall)
        cut = event.time_wall - self.s.node_remedy_window_seconds
        while times and times[0] < cut:
            times.pop(0)
        return self._decide(event, finding)

    # ------------------------------------------------------------------ history for classify

    def _context(self, e: FaultEvent) -> Context:
        recent: tuple[XidSeen, ...] = ()
        if e.kind is FaultKind.XID:
            keep = e.time_wall - max(self.s.xid_repeat_window_seconds,
                                     self.s.xid_companion_seconds)
            mine = self._recent_gpu[e.gpu]
            while mine and mine[0].time_wall < keep:
                mine.popleft()
            same = self._recent_code[_xid_code(e)]
            while same and same[0].time_wall < keep:
                same.popleft()
            # classification asks about this GPU's Xids and the same code on other GPUs only
            recent = tuple(sorted(set(mine) | set(same), key=lambda x: x.time_wall))
        link = e.link if e.link is not None else e.details.get("link")
        if e.kind is FaultKind.XID and link is None:
            link = parse_link(e.details.get("message"))
        comp = (e.gpu, link)
        return Context(
            recent_xids=recent,
            link_downs=tuple(self._link_downs.get(comp, ())),
            link_parity_hits=self._parity.get(comp, 0),
            retired_dbe=tuple(self._dbe.get(e.gpu, ())),
            pcie_last_time=self._pcie_last.get(e.gpu),
        )

    def _remember(self, e: FaultEvent, f: Finding | None) -> None:
        k = e.kind
        if k is FaultKind.XID:
            msg = e.details.get("message")
            seen = XidSeen(e.time_wall, e.gpu, int(e.details["xid"]),
                           parse_gpc_tpc(msg) if e.details["xid"] == 13 else None)
            self._recent_gpu[e.gpu].append(seen)
            self._recent_code[seen.xid].append(seen)
        elif k is FaultKind.NVLINK and e.details.get("state", "down") == "down" and f is not None:
            downs = self._link_downs[(e.gpu, f.link)]
            downs.append(e.time_wall)
            cut = e.time_wall - self.s.link_flap_window_seconds
            downs[:] = [t for t in downs if t >= cut]
        elif k is FaultKind.RETIRED_PAGES:
            hist = self._dbe[e.gpu]
            hist.append((e.time_wall, int(e.details.get("double_bit", 0))))
            cut = e.time_wall - 2 * self.s.retired_dbe_recent_seconds
            # keep one reading older than the week: it is the baseline for "new this week"
            while len(hist) > 1 and hist[1][0] < cut:
                hist.pop(0)
        elif k is FaultKind.PCIE_REPLAY:
            self._pcie_last[e.gpu] = e.time_wall
        if f is not None and f.link_parity:
            self._parity[(e.gpu, f.link)] += 1
        if f is not None and f.link is not None:
            self.links_seen.add((e.gpu, f.link))

    # ------------------------------------------------------------------ decisions

    def _decide(self, e: FaultEvent, f: Finding) -> list[Decision]:
        comp: Component = (e.gpu, f.link if f.scope is Scope.LINK else None)
        rung, scope = f.rung, f.scope
        reasons = [f.reason]
        investigate = list(f.investigate)
        escalated = False

        held = self._remedied[comp].pop(f.fault, None)
        if held is not None and e.time_wall - held[1] <= self.s.cure_window_seconds:
            r_rung, r_time = held
            hist = self._not_held[comp]
            hist.append((e.time_wall, r_rung))
            cut = e.time_wall - self.s.not_holding_memory_seconds
            hist[:] = [x for x in hist if x[0] >= cut]
            n = sum(1 for _, r in hist if r == r_rung)
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

        if f.xid is not None and e.kind is FaultKind.XID:
            n = self._count_xid(e.gpu, f.xid, e.time_wall)
            if n >= self.s.xid_recurrence_count:
                window = self.s.xid_recurrence_window_seconds / 3600
                if f.hardware or f.rma_candidate:
                    if rung < Rung.RMA:
                        rung, escalated = Rung.RMA, True
                    reasons.append(f"Xid {f.xid} {n} times in {window:g} h: RMA candidate")
                else:
                    reasons.append(f"Xid {f.xid} {n} times in {window:g} h: have it looked at")
                if TECHNICIAN not in investigate:
                    investigate.append(TECHNICIAN)

        if rung is Rung.REBOOT_NODE:
            scope, comp = Scope.NODE, (e.gpu, None)
        elif rung is Rung.RMA:  # the board goes back, not the node
            scope, comp = Scope.GPU, (e.gpu, None)
        degradations = list(f.degradations)
        if rung is Rung.RMA and EXCLUDE_GPU not in degradations:
            degradations.append(EXCLUDE_GPU)

        existing = self.open[comp].get(f.fault)
        if existing is not None and existing.rung >= rung and \
                set(investigate) <= set(existing.investigate) and \
                set(degradations) <= set(existing.degradations):
            return []  # the open decision already covers it
        # supersede the pending lower actionable decisions on this component
        for key, d in list(self.open[comp].items()):
            if (d.rung < rung and d.rung >= _FLOOR) or key == f.fault:
                for x in d.investigate:
                    if x not in investigate:
                        investigate.append(x)
                for x in d.degradations:
                    if x not in degradations:
                        degradations.append(x)
                if key == f.fault and d.rung > rung:
                    rung, scope = d.rung, d.scope
                del self.open[comp][key]
                self.closures.append(Closure(d, "superseded", e.time_wall))
        decision = Decision(
            time_wall=e.time_wall, gpu=e.gpu, link=comp[1] if scope is Scope.LINK else None,
            rung=rung, scope=scope, reason="; ".join(reasons), investigate=tuple(investigate),
            degradations=tuple(degradations), fault=f.fault, source=e.kind.value,
            buckets=f.buckets, escalated=escalated)
        self.open[comp][f.fault] = decision
        self._gpu_comps[comp[0]].add(comp)
        return [decision]

    def _limit(self, rung: Rung) -> int:
        if rung is Rung.RESTART_PROCESS:
            return self.s.restarts_not_holding
        if rung is Rung.RESET_GPU:
            return self.s.resets_not_holding
        if rung is Rung.REBOOT_NODE:
            return self.s.reboots_not_holding
        return 1

    def _count_xid(self, gpu: int, xid: int, t: float) -> int:
        """Occurrences within the recurrence window, a burst counting once."""
        burst = self.s.xid_long_burst_seconds if xid in self.s.long_burst_codes() \
            else self.s.xid_burst_seconds
        key = (gpu, xid)
        counted = self._xid_counted[key]
        last = self._xid_last.get(key)
        self._xid_last[key] = t
        if last is None or t - last > burst:
            counted.append(t)
        cut = t - self.s.xid_recurrence_window_seconds
        counted[:] = [x for x in counted if x >= cut]
        return len(counted)

    # ------------------------------------------------------------------ remedies and clearance

    def _targets(self, e: FaultEvent, rung: Rung) -> list[Component]:
        if rung >= Rung.REBOOT_NODE:  # a reboot covers the node
            comps = {c for c, ds in self.open.items() if ds}
            if not self.open.get((e.gpu, None)):
                comps.add((e.gpu, None))
            return sorted(comps, key=_comp_order)
        if e.link is not None:
            return [(e.gpu, e.link)]
        comps = {c for c in self._gpu_comps.get(e.gpu, ()) if self.open.get(c)}
        return sorted(comps | {(e.gpu, None)}, key=_comp_order)

    def _remedy(self, e: FaultEvent) -> list[Decision]:
        action = e.details.get("action")
        result = e.details.get("result")
        try:
            rung = Rung.parse(str(action))
        except ValueError as ex:
            raise BadEvent(f"action: {ex}") from None
        if result not in ("ok", "failed"):
            raise BadEvent(f"result: {result!r} is not ok or failed")
        self.node_remedies.append(e.time_wall)
        cut = e.time_wall - self.s.node_remedy_window_seconds
        self.node_remedies[:] = [t for t in self.node_remedies if t >= cut]
        targets = self._targets(e, rung)
        if result == "ok":
            for comp in targets:
                for key, d in list(self.open.get(comp, {}).items()):
                    if d.rung <= rung and d.rung < Rung.RMA and (key != "sdc" or rung is Rung.RMA):
                        del self.open[comp][key]
                        self.closures.append(Closure(d, "remedied", e.time_wall))
                        self._remedied[comp][key] = (rung, e.time_wall)
                if rung is Rung.RMA:
                    self._forget_gpu(comp[0], e.time_wall)
            return []
        # a failed remedy climbs one rung at once
        new = Rung(min(rung + 1, Rung.RMA))
        out: list[Decision] = []
        for comp in targets:
            pending = [d for d in self.open.get(comp, {}).values() if d.rung <= rung]
            if not pending and comp != (e.gpu, e.link):
                continue
            fault = max(pending, key=lambda d: d.rung).fault if pending else f"remedy:{rung.label}"
            if new is Rung.REBOOT_NODE:
                scope = Scope.NODE
            elif new is Rung.RMA or comp[1] is None:
                scope = Scope.GPU
            else:
                scope = Scope.LINK
            f = Finding(new, scope, fault,
                        f"{rung.label} failed: climb to {new.label}", link=comp[1],
                        degradations=tuple(sorted({x for d in pending for x in d.degradations})))
            ev = replace(e, gpu=comp[0], link=comp[1])
            for d in self._decide(ev, f):
                out.append(replace(d, escalated=True) if not d.escalated else d)
                self.open[(d.gpu, d.link)][d.fault] = out[-1]
        return out

    def _sdc_cleared(self, e: FaultEvent) -> list[Decision]:
        d = self.open.get((e.gpu, None), {}).pop("sdc", None)
        if d is None:
            return []
        if d.rung >= Rung.RMA:  # a confirmed corruption is not undone by one clean run
            self.open[(e.gpu, None)]["sdc"] = d
            return []
        self.closures.append(Closure(d, "cleared", e.time_wall))
        return [Decision(e.time_wall, e.gpu, None, Rung.NONE, Scope.GPU,
                         "SDC deep check cleared the GPU: back in service", (), (), "sdc",
                         FaultKind.SDC.value)]

    def _forget_gpu(self, gpu: int, t: float) -> None:
        """The GPU was replaced: its history belongs to the old board."""
        for table in (self._not_held, self._remedied, self._link_downs, self._parity):
            for comp in [c for c in table if c[0] == gpu]:
                del table[comp]
        for key in [k for k in self._xid_counted if k[0] == gpu]:
            del self._xid_counted[key]
            self._xid_last.pop(key, None)
        self._dbe.pop(gpu, None)

    # ------------------------------------------------------------------ reading

    def open_decisions(self) -> list[Decision]:
        return sorted((d for ds in self.open.values() for d in ds.values()),
                      key=lambda d: (d.time_wall, d.gpu, -1 if d.link is None else d.link, d.fault))

    def feed_all(self, events: Sequence[FaultEvent]) -> list[Decision]:
        out: list[Decision] = []
        for e in events:
            out.extend(self.feed(e))
        return out


def _xid_code(e: FaultEvent) -> int:
    code = e.details.get("xid")
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


def _comp_order(c: Component) -> tuple[int, int]:
    return (c[0], -1 if c[1] is None else c[1])
