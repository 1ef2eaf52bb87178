"""Opening an accusation: record it and mark the GPU suspect.

Kept apart from the workflow (``rasd.sdc.accusation``) because opening needs only the history
and the ladder, never the checks: the daemon answers an accusation at once and loads the checks
in the job that runs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from rasd.model import FaultEvent, FaultKind
from rasd.sdc.history import SdcHistory
from rasd.sdc.settings import SdcSettings
from rasd.sdc.verdicts import Verdict, should_escalate

log = logging.getLogger("rasd.sdc.accusation")

Emit = Callable[[Sequence[FaultEvent]], None]


@dataclass(frozen=True, slots=True)
class Ticket:
    accusation: int | None  # store id (None without a store)
    gpu: int
    reason: str
    opened_wall: float  # seconds since the epoch
    escalated: bool  # deeper check and technician flag


def open_ticket(settings: SdcSettings, history: SdcHistory, emit: Emit, clock: Callable[[], float],
                gpu: int, reason: str) -> Ticket:
    """Record the accusation of ``gpu`` and tell the ladder it is suspect; the caller has checked
    that the GPU exists. ValueError for an empty reason."""
    reason = reason.strip()
    if not reason:
        raise ValueError("an accusation needs a reason (what the job saw, e.g. 'loss spike at step 1200')")
    now = clock()
    past = history.past(gpu, now - settings.accusation_window_seconds)
    escalated = should_escalate(past, now, settings)
    accusation = history.open_accusation(gpu, reason, now)
    ticket = Ticket(accusation, gpu, reason, now, escalated)
    emit([FaultEvent(now, gpu, FaultKind.SDC, details={
        "verdict": Verdict.SUSPECT.value,
        "evidence": {"accusation": accusation, "reason": reason, "escalated": escalated}})])
    log.info("sdc accusation opened gpu=%s id=%s escalated=%s", gpu, accusation, escalated)
    return ticket
