"""The ladder's part of the snapshot: an immutable view of what is in force right now.

Built by ``build_state`` from the escalator (under the service's lock) and handed to the
exporters; nothing here changes after construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from rasd.ladder.decision import Decision
from rasd.ladder.findings import EXCLUDE_GPU, SDC_CHECK, TECHNICIAN
from rasd.model import Rung, Scope


# Why the actuator skips a plan (rasd/ladder/actions.py): every reason is exported from the start,
# at 0 until it happens, so a rate over it needs no first occurrence.
PLAN_SKIP_REASONS = ("busy", "rate_limited")


@dataclass(frozen=True, slots=True)
class ComponentState:
    """One GPU (``link`` None) or one NVLink port: the rung in force and why."""

    gpu: int
    link: int | None
    rung: Rung
    scope: Scope
    reason: str
    open: tuple[Decision, ...]
    degradations: tuple[str, ...]
    technician: tuple[str, ...]  # fault keys a technician should look at

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "link": self.link, "rung": self.rung.label,
                "scope": self.scope.value, "reason": self.reason,
                "degradations": list(self.degradations), "technician": list(self.technician),
                "open": [d.to_dict() for d in self.open]}


@dataclass(frozen=True, slots=True)
class RmaEntry:
    gpu: int
    fault: str
    reason: str
    since_wall: float
    capacity_lost_gpus: float  # GPUs out of service while it waits (a node reboot: the node)
    recurrence: int  # faults on this GPU within the node-remedy window


@dataclass(frozen=True, slots=True)
class LadderState:
    time_wall: float
    gpus: Mapping[int, ComponentState]
    links: Mapping[tuple[int, int], ComponentState]
    node_rung: Rung
    excluded: frozenset[int]
    suspect: frozenset[int]
    rma_queue: tuple[RmaEntry, ...]  # the technician's order: most capacity, most recurrence
    node_technician: tuple[str, ...]  # node-level reasons (too many remedies)
    faults: Mapping[tuple[int, str, str], int]  # (gpu, kind, rung) -> events since start
    actions: Mapping[tuple[int, str, str], int]  # (gpu, action, result) -> runs since start
    decisions_total: int = 0
    # Plans the actuator could not run when decided: skipped since start by why (busy: another
    # of rasd's remedies still runs on the component; rate_limited), tried again since start,
    # waiting to be tried now, and how long the longest-waiting one has waited
    plans_skipped: Mapping[str, int] = field(default_factory=dict)
    plans_retried: int = 0
    plans_waiting: int = 0
    plans_waiting_oldest_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time_wall,
            "node_rung": self.node_rung.label,
            "gpus": [c.to_dict() for _, c in sorted(self.gpus.items())],
            "links": [c.to_dict() for _, c in sorted(self.links.items())],
            "excluded": sorted(self.excluded),
            "suspect": sorted(self.suspect),
            "rma_queue": [{"gpu": r.gpu, "fault": r.fault, "reason": r.reason,
                           "since": r.since_wall, "capacity_lost_gpus": r.capacity_lost_gpus,
                           "recurrence": r.recurrence} for r in self.rma_queue],
            "node_technician": list(self.node_technician),
        }


def component_state(gpu: int, link: int | None, decisions: Iterable[Decision]) -> ComponentState:
    ds = tuple(sorted(decisions, key=lambda d: (d.time_wall, d.fault)))
    if not ds:
        return ComponentState(gpu, link, Rung.NONE, Scope.LINK if link is not None else Scope.GPU,
                              "", (), (), ())
    # the highest rung is in force; among equals the latest says why
    top = max(ds, key=lambda d: (d.rung, d.time_wall))
    degr = tuple(dict.fromkeys(x for d in ds for x in d.degradations))
    tech = tuple(d.fault for d in ds if TECHNICIAN in d.investigate)
    return ComponentState(gpu, link, top.rung, top.scope, top.reason, ds, degr, tech)


def build_state(
    open_decisions: Iterable[Decision],
    now_wall: float,
    gpus: Iterable[int] = (),
    links: Iterable[tuple[int, int | None]] = (),
    *,
    node_remedies: int = 0,
    node_remedy_limit: int = 5,
    fault_times: Mapping[int, list[float]] | None = None,
    gpus_per_node: int = 8,
    nvlinks_per_gpu: int = 18,
    faults: Mapping[tuple[int, str, str], int] | None = None,
    actions: Mapping[tuple[int, str, str], int] | None = None,
    decisions_total: int = 0,
    plans: Mapping[str, int] | None = None,
    plans_waiting: int = 0,
    plans_waiting_oldest_seconds: float = 0.0,
) -> LadderState:
    """``plans``: the actuator's counts (``skipped:<why>``, ``retried``)."""
    by_comp: dict[tuple[int, int | None], list[Decision]] = {}
    for d in open_decisions:
        comp = (d.gpu, d.link if d.scope is Scope.LINK else None)
        by_comp.setdefault(comp, []).append(d)
    gpu_ids = set(gpus) | {g for g, _ in by_comp}
    link_ids: set[tuple[int, int]] = {(g, ln) for g, ln in links if ln is not None}
    link_ids |= {(g, ln) for g, ln in by_comp if ln is not None}
    gstates = {g: component_state(g, None, by_comp.get((g, None), ())) for g in sorted(gpu_ids)}
    lstates = {k: component_state(k[0], k[1], by_comp.get(k, ())) for k in sorted(link_ids)}
    all_open = [d for ds in by_comp.values() for d in ds]
    node_rung = max((d.rung for d in all_open), default=Rung.NONE)
    excluded = frozenset(d.gpu for d in all_open if EXCLUDE_GPU in d.degradations)
    suspect = frozenset(d.gpu for d in all_open
                        if d.fault == "sdc" and d.rung < Rung.RMA and SDC_CHECK in d.investigate)
    node_gpus = max(gpus_per_node, len(gpu_ids))
    rma = []
    for d in all_open:
        if d.rung is not Rung.RMA:
            continue
        if d.scope is Scope.NODE:
            lost = float(node_gpus)
        elif d.scope is Scope.LINK:
            lost = 1.0 / nvlinks_per_gpu
        else:
            lost = 1.0
        recur = len((fault_times or {}).get(d.gpu, ()))
        rma.append(RmaEntry(d.gpu, d.fault, d.reason, d.time_wall, lost, recur))
    rma.sort(key=lambda r: (-r.capacity_lost_gpus, -r.recurrence, r.since_wall, r.gpu))
    node_tech: tuple[str, ...] = ()
    if node_remedies >= node_remedy_limit:
        node_tech = (f"{node_remedies} remedies on this node within the window",)
    return LadderState(
        time_wall=now_wall,
        gpus=MappingProxyType(gstates),
        links=MappingProxyType(lstates),
        node_rung=node_rung,
        excluded=excluded,
        suspect=suspect,
        rma_queue=tuple(rma),
        node_technician=node_tech,
        faults=MappingProxyType(dict(faults or {})),
        actions=MappingProxyType(dict(actions or {})),
        decisions_total=decisions_total,
        plans_skipped=MappingProxyType({why: (plans or {}).get(f"skipped:{why}", 0) for why in PLAN_SKIP_REASONS}),
        plans_retried=(plans or {}).get("retried", 0),
        plans_waiting=plans_waiting,
        plans_waiting_oldest_seconds=plans_waiting_oldest_seconds,
    )
