"""The accusation workflow: suspect -> deep check (re-run once on a lone failure) -> verdict.

A training job (or a failed periodic check) accuses a GPU; the GPU is marked suspect at once
(the ladder keeps work off it), a deep check runs, and the verdict goes to the store and the
ladder: confirmed (-> rma, with the evidence), cleared (not reproduced; the accusation stays in
the history) or inconclusive. Repeated unreproduced accusations within the window get a deeper
check and a technician flag.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rasd.model import FaultEvent, FaultKind
from rasd.sdc.history import SdcHistory
from rasd.sdc.checks import Checks
from rasd.sdc.results import Cancelled, Outcome, Result
from rasd.sdc.settings import SdcSettings
from rasd.sdc.tickets import Ticket, open_ticket
from rasd.sdc.verdicts import Verdict, decide, should_rerun

log = logging.getLogger(__name__)

Emit = Callable[[Sequence[FaultEvent]], None]
__all__ = ["AccusationWorkflow", "Finding", "Ticket"]


@dataclass(frozen=True, slots=True)
class Finding:
    ticket: Ticket
    verdict: Verdict
    evidence: dict[str, Any]
    outcomes: tuple[Outcome, ...]


def _failures(outcome: Outcome, gpu: int) -> list[dict[str, Any]]:
    out = []
    for g in outcome.report.gpus:
        if g.gpu == gpu:
            out += [c.to_dict() for c in g.checks if c.result is not Result.PASS]
    return out


class AccusationWorkflow:
    def __init__(self, settings: SdcSettings, validator: Checks, history: SdcHistory, emit: Emit,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.validator = validator
        self.history = history
        self.emit = emit
        self.clock = clock

    def open(self, gpu: int, reason: str) -> Ticket:
        """Record the accusation and mark the GPU suspect (the ladder hears it now)."""
        if gpu not in self.validator.gpus:
            raise ValueError(f"no GPU {gpu} on this node; choose one of {self.validator.gpus}")
        return open_ticket(self.settings, self.history, self.emit, self.clock, gpu, reason)

    def investigate(self, ticket: Ticket, cancel: threading.Event | None = None, force: bool = False,
                    idle_wait_seconds: float = 0.0, progress: Any = None) -> Finding:
        """Deep-check the accused GPU (waiting up to ``idle_wait_seconds`` for it to be idle and
        unlocked), re-run once after a lone failure, decide, record, and tell the ladder."""
        scale = self.settings.escalation_factor if ticket.escalated else 1.0
        outcomes: list[Outcome] = []
        rounds: list[Result] = []
        deadline = time.monotonic() + idle_wait_seconds
        for attempt in range(2):
            outcome = self._run(ticket.gpu, force, scale, cancel, deadline, progress, seed=self.settings.seed + 7919 * attempt)
            outcomes.append(outcome)
            rounds += outcome.rounds.get(ticket.gpu, ())
            if not should_rerun(rounds, self.settings):
                break
        verdict = decide(rounds, self.settings)
        evidence: dict[str, Any] = {
            "accusation": ticket.accusation, "reason": ticket.reason, "rounds": [r.value for r in rounds],
            "escalated": ticket.escalated, "technician": ticket.escalated,
            "failures": [f for o in outcomes for f in _failures(o, ticket.gpu)][:8],
            "seeds": [o.report.seed for o in outcomes],
        }
        process = [c for o in outcomes for g in o.report.gpus if g.gpu == ticket.gpu for c in g.checks
                   if c.name == "process"]
        if process:  # the check's process crashed or hung: say so, not "busy"
            evidence["why"] = str(process[-1].evidence.get("why", "the check's process failed"))
        elif not rounds:
            evidence["why"] = "no round could run (GPU in use or held by another check)"
        now = self.clock()
        self.history.close_accusation(ticket.accusation, verdict.value, evidence, now)
        self.emit([FaultEvent(now, ticket.gpu, FaultKind.SDC, details={"verdict": verdict.value, "evidence": evidence})])
        log.info("sdc accusation decided gpu=%s id=%s verdict=%s rounds=%s", ticket.gpu, ticket.accusation,
                 verdict.value, len(rounds))
        return Finding(ticket, verdict, evidence, tuple(outcomes))

    def _run(self, gpu: int, force: bool, scale: float, cancel: threading.Event | None, deadline: float,
             progress: Any, seed: int) -> Outcome:
        while True:
            outcome = self.validator.run([gpu], "deep", force=force, seed=seed, progress=progress, cancel=cancel,
                                         scale=scale)
            if outcome.rounds.get(gpu) or time.monotonic() >= deadline:
                return outcome
            if cancel is not None and cancel.wait(5.0):
                # stopping while the GPU was busy: no verdict; the accusation stays open and
                # resumes at the next start (never "inconclusive, 0 rounds")
                raise Cancelled("the daemon is stopping")
            if cancel is None:
                time.sleep(5.0)
