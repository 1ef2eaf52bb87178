"""Gathers results and accusations into the immutable ``SdcState`` (thread-safe)."""

from __future__ import annotations

import threading
from typing import Iterable

from rasd.sdc.results import RunReport
from rasd.sdc.state import CheckStatus, SdcState


class StateTracker:
    def __init__(self, gpus: Iterable[int]):
        self._lock = threading.Lock()
        self._gpus = tuple(sorted(gpus))
        self._last: dict[tuple[int, str], CheckStatus] = {}
        self._runs: dict[tuple[int, str, str], int] = {}
        self._seconds: dict[tuple[int, str], float] = {}
        self._accusations: dict[tuple[int, str], int] = {}
        self._suspects: set[int] = set()
        self._technician: set[int] = set()
        self._gflops: dict[int, float] = {}
        self._running: dict[int, int] = {}
        self._state = SdcState(gpus=self._gpus)

    def record(self, report: RunReport, now_wall: float) -> None:
        with self._lock:
            for g in report.gpus:
                rates = {c.name: c.gflops for c in g.checks if c.gflops is not None}
                rate = rates.get("throughput", rates.get("golden_gemm"))
                if rate is not None:
                    self._gflops[g.gpu] = rate
                for c in g.checks:
                    if c.name == "available":
                        continue  # not checked (busy): keeps the last real result
                    self._last[(g.gpu, c.name)] = CheckStatus(g.gpu, c.name, c.result.value, now_wall, c.seconds, c.gflops)
                    key = (g.gpu, c.name, c.result.value)
                    self._runs[key] = self._runs.get(key, 0) + 1
                    self._seconds[(g.gpu, c.name)] = self._seconds.get((g.gpu, c.name), 0.0) + c.seconds
            self._publish()

    def accusation(self, gpu: int, outcome: str, technician: bool = False) -> None:
        """Count an accusation outcome; "suspect" marks the GPU, a verdict unmarks it."""
        with self._lock:
            key = (gpu, outcome)
            self._accusations[key] = self._accusations.get(key, 0) + 1
            if outcome == "suspect":
                self._suspects.add(gpu)
            elif outcome in ("cleared", "confirmed"):
                self._suspects.discard(gpu)
            if technician:
                self._technician.add(gpu)
            self._publish()

    def running(self, gpus: Iterable[int], delta: int) -> None:
        with self._lock:
            for g in gpus:
                self._running[g] = self._running.get(g, 0) + delta
            self._publish()

    def _publish(self) -> None:
        self._state = SdcState(
            checks=tuple(sorted(self._last.values(), key=lambda s: (s.gpu, s.check))),
            runs=dict(self._runs),
            check_seconds=dict(self._seconds),
            accusations=dict(self._accusations),
            suspects=frozenset(self._suspects),
            technician=frozenset(self._technician),
            gflops=dict(self._gflops),
            running=frozenset(g for g, n in self._running.items() if n > 0),
            gpus=self._gpus,
        )

    def state(self) -> SdcState:
        return self._state
