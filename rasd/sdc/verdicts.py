"""Pure decisions of the accusation workflow: no clock, no I/O.

A GPU is never confirmed faulty or cleared on one result: confirmation needs at least
``confirm_min_failures`` failing rounds, clearing needs ``clear_min_passes`` passing rounds
and no failure; anything else is inconclusive (the GPU stays suspect, the evidence is kept).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Sequence

from rasd.sdc.results import Result
from rasd.sdc.settings import SdcSettings


class Verdict(enum.Enum):
    SUSPECT = "suspect"  # accused, not yet decided
    CONFIRMED = "confirmed"  # reproduced: to the ladder's rma rung with the evidence
    CLEARED = "cleared"  # not reproduced; the accusation is kept in the history
    INCONCLUSIVE = "inconclusive"


UNREPRODUCED = (Verdict.CLEARED.value, Verdict.INCONCLUSIVE.value)


def decide(rounds: Sequence[Result], s: SdcSettings) -> Verdict:
    fails = sum(r is Result.FAIL for r in rounds)
    passes = sum(r is Result.PASS for r in rounds)
    if fails >= s.confirm_min_failures:
        return Verdict.CONFIRMED
    if fails == 0 and passes >= s.clear_min_passes:
        return Verdict.CLEARED
    return Verdict.INCONCLUSIVE


def should_rerun(rounds: Sequence[Result], s: SdcSettings) -> bool:
    """One failure is not proof: re-run on the same GPU before deciding (a transient or not)."""
    return 0 < sum(r is Result.FAIL for r in rounds) < s.confirm_min_failures


@dataclass(frozen=True, slots=True)
class PastAccusation:
    opened_wall: float
    verdict: str | None


def should_escalate(past: Iterable[PastAccusation], now_wall: float, s: SdcSettings) -> bool:
    """A new accusation after ``threshold - 1`` unreproduced ones within the window gets a deeper
    check and a technician flag: a GPU that keeps being accused is worth a person's look."""
    since = now_wall - s.accusation_window_seconds
    unreproduced = sum(1 for a in past if a.opened_wall >= since and a.verdict in UNREPRODUCED)
    return unreproduced + 1 >= s.accusation_threshold
