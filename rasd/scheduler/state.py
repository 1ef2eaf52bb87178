"""The scheduler integration's part of the snapshot (immutable; formatted by the exporter)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job (Slurm) or pod (Kubernetes) with a process on a GPU."""

    kind: str  # slurm, kubernetes, none (a process outside any job)
    id: str  # Slurm job id, or the pod's UID
    name: str = ""  # the pod's namespace/name when the kubelet said
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "pid": self.pid}

    @property
    def label(self) -> str:
        if self.kind == "slurm":
            return f"slurm job {self.id}"
        if self.kind == "kubernetes":
            return f"pod {self.name or self.id}"
        return f"pid {self.pid}"


@dataclass(frozen=True, slots=True)
class SchedulerState:
    kind: str
    node: str
    enforced: bool
    out_by_rasd: bool  # rasd took the node out and it is still out
    reason: str
    out_since_wall: float | None
    breaker_tripped: bool
    breaker_since_wall: float | None
    breaker_why: str
    deferred: tuple[tuple[str, float, int, dict[str, Any]], ...]  # (why, since, tries, decision)
    scope_nodes: int | None  # at the last look (None before the first)
    scope_out: int | None  # nodes of the scope out for rasd's reasons
    budget_limit: int | None
    counts: Mapping[str, int] = field(default_factory=dict)
    jobs: Mapping[int, tuple[JobRef, ...]] = field(default_factory=dict)  # per GPU, now
    jobs_metric: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "node": self.node, "enforced": self.enforced,
            "out_by_rasd": self.out_by_rasd, "reason": self.reason,
            "out_since": self.out_since_wall,
            "breaker": {"tripped": self.breaker_tripped, "since": self.breaker_since_wall,
                        "why": self.breaker_why},
            "deferred": [{"why": w, "since": t, "tries": n, "decision": d}
                         for w, t, n, d in self.deferred],
            "scope": {"nodes": self.scope_nodes, "out_for_rasd": self.scope_out,
                      "max_nodes_out": self.budget_limit},
            "counts": dict(self.counts),
            "jobs": {str(g): [j.to_dict() for j in js] for g, js in self.jobs.items()},
        }
