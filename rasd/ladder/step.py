"""What one event does to the ladder: the decisions it opens and those it ends, and how they end."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

from rasd.ladder.decision import Decision



class Outcome(enum.Enum):
    """How an open decision ended (the store's decision state)."""

    SUPERSEDED = "superseded"  # a higher rung on the component took over
    REMEDIED = "remedied"  # a remedy at or above its rung worked
    CLEARED = "cleared"  # evidence cleared it (a clean SDC deep check)
    EXPIRED = "expired"  # its fault did not come back within the decision window
    CLOSED_BY_OPERATOR = "closed_by_operator"  # a person handled it (`rasd ladder close`)


@dataclass(frozen=True, slots=True)
class Closure:
    """An open decision that ended: ``outcome`` is an ``Outcome`` value."""

    decision: Decision
    outcome: str
    time_wall: float

    def __init__(self, decision: Decision, outcome: str, time_wall: float) -> None:
        # written out, each field through its slot's own setter (bound below the class; the
        # generated one looks up object.__setattr__ per field): a fleet's replay ends a
        # decision for every third event
        _set_decision(self, decision)
        _set_outcome(self, outcome)
        _set_time_wall(self, time_wall)


# the slots' setters the written-out ``Closure.__init__`` writes its fields with (what
# object.__setattr__ would find for each, found once)
(_set_decision, _set_outcome, _set_time_wall) = (
    Closure.__dict__[name].__set__ for name in ("decision", "outcome", "time_wall"))


class _ClosureDraft:
    """A Closure written as a plain slotted object, then made a Closure (as decision.py's
    ``_DecisionDraft``: the same slots in the same order, so the class can be swapped)."""

    __slots__ = Closure.__slots__  # type: ignore[attr-defined]

    def __init__(self, decision: Decision, outcome: str, time_wall: float) -> None:
        self.decision = decision
        self.outcome = outcome
        self.time_wall = time_wall
        self.__class__ = Closure  # type: ignore[assignment]


new_closure = cast(Callable[[Decision, str, float], Closure], _ClosureDraft)


# A step's three sequences start as this one empty tuple and become lists at their first entry
# (through ``open``, ``supersede`` and ``close``: the ladder, escalate.py, is their only writer).
# Most steps add to one of them at most, and a replay keeps a chunk's steps until it has judged
# the chunk: three new lists a step cost time and memory. Typed as the lists they become, which
# is all a reader sees.
_NONE: list[Any] = cast("list[Any]", ())


class Step:
    """What one event did to the ladder. Reads as the sequence of decisions it opened (what a
    caller acts on); ``superseded`` and ``closed`` are the decisions that ended."""

    __slots__ = ("opened", "superseded", "closed")

    def __init__(self) -> None:
        self.opened: list[Decision] = _NONE
        self.superseded: list[Closure] = _NONE
        self.closed: list[Closure] = _NONE

    def open(self, d: Decision) -> None:
        if self.opened:
            self.opened.append(d)
        else:
            self.opened = [d]

    def supersede(self, c: Closure) -> None:
        if self.superseded:
            self.superseded.append(c)
        else:
            self.superseded = [c]

    def close(self, c: Closure) -> None:
        if self.closed:
            self.closed.append(c)
        else:
            self.closed = [c]

    @property
    def ended(self) -> list[Closure]:
        """Every decision this step ended, in the order it ended them."""
        return sorted([*self.superseded, *self.closed], key=lambda c: c.time_wall)

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.opened)

    def __len__(self) -> int:
        return len(self.opened)

    def __getitem__(self, i: int) -> Decision:
        return self.opened[i]

    def __bool__(self) -> bool:
        return bool(self.opened)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Step):
            return (list(self.opened), list(self.superseded), list(self.closed)) == \
                (list(other.opened), list(other.superseded), list(other.closed))
        if isinstance(other, (list, tuple)):
            return list(self.opened) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Step(opened={self.opened!r}, superseded={self.superseded!r}, "
                f"closed={self.closed!r})")
