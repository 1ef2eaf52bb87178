"""What rasd needs from a scheduler, whichever it is: see this node and its scope, take the
node out with a reason, bring it back, and tell people about decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Every reason rasd writes starts with this: it is how rasd (and people) tell rasd's drains
# from anyone else's.
REASON_PREFIX = "rasd:"


class SchedulerError(RuntimeError):
    """The scheduler did not answer or refused; the message names the command and the cause."""


@dataclass(frozen=True, slots=True)
class NodeOut:
    """One node of the scope that is out of service (drained, cordoned or tainted)."""

    name: str
    reason: str
    since_wall: float | None  # when the reason was set, when the scheduler says

    @property
    def by_rasd(self) -> bool:
        return self.reason.startswith(REASON_PREFIX)


@dataclass(frozen=True, slots=True)
class ScopeView:
    """The budget's scope as the scheduler sees it right now."""

    nodes: int
    out: tuple[NodeOut, ...]  # every node out, whoever took it out

    def rasd_out(self, exclude: str = "") -> list[NodeOut]:
        return [n for n in self.out if n.by_rasd and n.name != exclude]


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    out: bool
    reason: str  # "" when in service

    @property
    def by_rasd(self) -> bool:
        return self.out and self.reason.startswith(REASON_PREFIX)


class Cluster(Protocol):
    kind: str

    def node(self) -> NodeView: ...

    def scope(self) -> ScopeView: ...

    def take_out(self, reason: str) -> None:
        """Stop new work on the node; ``reason`` starts with REASON_PREFIX."""

    def bring_back(self) -> None:
        """Undo take_out (only called for a node rasd took out)."""

    def report(self, decision: dict[str, object], reason: str, out: bool) -> None:
        """Tell the scheduler's users about a decision (Kubernetes Events and conditions)."""
