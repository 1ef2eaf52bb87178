"""Each stage of the daemon's tick in its own guard: one stage's failure leaves the others running.

A stage that raises keeps its previous result (the snapshot shows the last good state of that
area), is counted, and is logged once per run of failures (again after it has recovered).
Exported as ``rasd_daemon_stage_success{stage}`` and ``rasd_daemon_stage_failures_total{stage}``.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from rasd.snapshot import StageStatus

log = logging.getLogger("rasd.daemon")

# The main loop's stages, in the order a tick runs them.
STAGES = ("aggregate", "ladder", "sdc", "power", "scheduler", "snapshot", "notify")

T = TypeVar("T")


class StageGuards:
    def __init__(self, names: tuple[str, ...] = STAGES):
        self._ok = dict.fromkeys(names, True)
        self._failures = dict.fromkeys(names, 0)
        self._status: tuple[StageStatus, ...] | None = None  # until a stage fails or recovers

    def run(self, stage: str, fn: Callable[[], T], fallback: T) -> T:
        """``fn()``, or ``fallback`` when it raises (counted; logged at the first of a run)."""
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - the point: any stage error stays in its stage
            self._failures[stage] += 1
            if self._ok[stage]:
                log.exception("event=stage_failed stage=%s error=%r (logged once, then counted "
                              "until it recovers)", stage, str(e))
            self._ok[stage] = False
            self._status = None
            return fallback
        if not self._ok[stage]:
            log.info("event=stage_recovered stage=%s failures_total=%d", stage, self._failures[stage])
            self._ok[stage] = True
            self._status = None
        return result

    def status(self) -> tuple[StageStatus, ...]:
        """Every stage's status; the same tuple from tick to tick while none failed or recovered."""
        if self._status is None:
            self._status = tuple(StageStatus(name, ok, self._failures[name]) for name, ok in self._ok.items())
        return self._status
