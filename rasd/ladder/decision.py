"""A decision of the ladder: what to do about one fault on one component, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, cast

from rasd.model import Rung, Scope



@dataclass(frozen=True, slots=True)
class Decision:
    time_wall: float  # Unix seconds of the event that caused it
    gpu: int
    link: int | None  # None unless scope is link
    rung: Rung
    scope: Scope
    reason: str
    investigate: tuple[str, ...]  # e.g. ("sdc_check",), ("technician",)
    degradations: tuple[str, ...]  # "drain", "stop_p2p", "disable_link", "exclude_gpu"
    fault: str  # fault class key (e.g. "xid:79", "nvlink_down"); one open decision per key
    source: str  # the FaultKind value of the event ("xid", "remedy", ...)
    buckets: tuple[str, ...] = ()  # catalog buckets the rung came from (Xids)
    escalated: bool = False  # history raised it above what the event alone asks for

    def __init__(self, time_wall: float, gpu: int, link: int | None, rung: Rung, scope: Scope,
                 reason: str, investigate: tuple[str, ...], degradations: tuple[str, ...],
                 fault: str, source: str, buckets: tuple[str, ...] = (),
                 escalated: bool = False) -> None:
        # written out rather than generated, each field through its slot's own setter (bound
        # below the class): the generated one looks up object.__setattr__ per field, and a
        # fleet's replay builds a decision for every other event
        _set_time_wall(self, time_wall)
        _set_gpu(self, gpu)
        _set_link(self, link)
        _set_rung(self, rung)
        _set_scope(self, scope)
        _set_reason(self, reason)
        _set_investigate(self, investigate)
        _set_degradations(self, degradations)
        _set_fault(self, fault)
        _set_source(self, source)
        _set_buckets(self, buckets)
        _set_escalated(self, escalated)

    @property
    def component(self) -> tuple[int, int | None]:
        return (self.gpu, self.link)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time_wall,
            "gpu": self.gpu,
            "link": self.link,
            "rung": self.rung.label,
            "scope": self.scope.value,
            "reason": self.reason,
            "investigate": list(self.investigate),
            "degradations": list(self.degradations),
            "fault": self.fault,
            "source": self.source,
            "buckets": list(self.buckets),
            "escalated": self.escalated,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Decision":
        return cls(
            time_wall=float(d["time"]), gpu=int(d["gpu"]), link=d.get("link"),
            rung=Rung.parse(d["rung"]), scope=Scope(d["scope"]), reason=d["reason"],
            investigate=tuple(d.get("investigate", ())),
            degradations=tuple(d.get("degradations", ())), fault=d["fault"],
            source=d["source"], buckets=tuple(d.get("buckets", ())),
            escalated=bool(d.get("escalated", False)),
        )


# the slots' setters the written-out ``Decision.__init__`` writes its fields with (what
# object.__setattr__ would find for each, found once)
(_set_time_wall, _set_gpu, _set_link, _set_rung, _set_scope, _set_reason, _set_investigate,
 _set_degradations, _set_fault, _set_source, _set_buckets, _set_escalated) = (
    Decision.__dict__[name].__set__ for name in (
        "time_wall", "gpu", "link", "rung", "scope", "reason", "investigate", "degradations",
        "fault", "source", "buckets", "escalated"))


class _DecisionDraft:
    """A Decision written field by field as a plain slotted object, then made a Decision.

    A frozen dataclass writes each field through the slot's descriptor, a C call with its
    arguments packed each time; a plain slotted class writes one in a single specialised
    instruction. This class has Decision's slots in the same order (the same memory layout), so
    the finished object can take Decision as its class, which Python allows between classes of
    one layout: what comes out is an ordinary, frozen Decision. About half the cost of
    ``Decision(...)``, which a fleet's replay calls for every other event."""

    __slots__ = Decision.__slots__  # type: ignore[attr-defined]

    def __init__(self, time_wall: float, gpu: int, link: int | None, rung: Rung, scope: Scope,
                 reason: str, investigate: tuple[str, ...], degradations: tuple[str, ...],
                 fault: str, source: str, buckets: tuple[str, ...] = (),
                 escalated: bool = False) -> None:
        self.time_wall = time_wall
        self.gpu = gpu
        self.link = link
        self.rung = rung
        self.scope = scope
        self.reason = reason
        self.investigate = investigate
        self.degradations = degradations
        self.fault = fault
        self.source = source
        self.buckets = buckets
        self.escalated = escalated
        self.__class__ = Decision  # type: ignore[assignment]


# ``Decision(...)``'s arguments, positional, the cheaper way (see _DecisionDraft)
new_decision = cast(Callable[..., Decision], _DecisionDraft)
