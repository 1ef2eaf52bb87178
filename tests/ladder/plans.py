"""What the actuator's tests act through: a gate that would take the node out, and a runner whose
process restarts run until the test lets them end."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.runner import RunOutcome
from rasd.model import Rung


class TakesOut:
    """The gate as the scheduler integration is to the actuator: each call would take the node
    out (or keep it out) for the decision; it records which decisions asked."""

    def __init__(self) -> None:
        self.asked: list[Rung] = []

    def __call__(self, d: Decision, info: Mapping[str, object]) -> bool:
        self.asked.append(d.rung)
        return True


class Held:
    """A runner whose ``restart`` runs until the test lets it end; other commands end at once."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.calls: list[tuple[str, ...]] = []
        self.running = threading.Event()
        self._lock = threading.Lock()  # the actuator's threads call at once

    def __call__(self, argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome:
        with self._lock:
            self.calls.append(tuple(argv))
        if argv[0] == "restart":
            self.running.set()
            self.go.wait(10)
        return RunOutcome("ok", 0, "", 0.0)
