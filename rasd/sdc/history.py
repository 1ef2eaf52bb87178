"""The SDC side of the store: accusations and check results, behind one small adapter."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from rasd.sdc.results import RunReport
from rasd.sdc.verdicts import PastAccusation

log = logging.getLogger(__name__)

LEVEL_NUMBER = {"quick": 1, "standard": 2, "deep": 3}


class SdcHistory:
    """Wraps ``rasd.store.Store`` (any object with its SDC methods); ``None`` keeps nothing."""

    def __init__(self, store: Any | None):
        self._store: Any = store
        self._failures = 0

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        if self._store is None:
            return None
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - history is best effort; checks go on
            self._failures += 1
            if self._failures == 1:
                log.error("sdc store write failed op=%s error=%s (further failures are counted)", what, e)
            return None

    def open_accusation(self, gpu: int, reason: str, now_wall: float) -> int | None:
        return self._call("add_accusation", lambda: self._store.add_accusation(gpu, reason, now_wall))

    def close_accusation(self, accusation_id: int | None, verdict: str, evidence: Mapping[str, Any],
                         now_wall: float) -> None:
        if accusation_id is not None:
            self._call("close_accusation",
                       lambda: self._store.close_accusation(accusation_id, verdict, evidence, now_wall))

    def accusations(self, gpu: int | None = None, since: float | None = None) -> list[Any]:
        return self._call("accusations", lambda: self._store.accusations(gpu=gpu, since=since)) or []

    def past(self, gpu: int, since: float) -> list[PastAccusation]:
        return [PastAccusation(a.opened_wall, a.verdict) for a in self.accusations(gpu, since)]

    def record(self, report: RunReport, now_wall: float) -> None:
        level = LEVEL_NUMBER.get(report.level, 0)
        for g in report.gpus:
            for c in g.checks:
                self._call("add_sdc_result", lambda c=c: self._store.add_sdc_result(
                    c.gpu, c.name, level, c.result.value, c.seconds, c.gflops, dict(c.evidence), now_wall))

    @property
    def failures(self) -> int:
        return self._failures
