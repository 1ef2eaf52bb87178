"""One validation run on a node: the busy-GPU rule, per-GPU locks, witnesses, power limits.

``Validator`` is shared by the daemon's service and the standalone CLI: it owns one engine
workspace per GPU and never lets two checks run on one GPU at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from rasd.sdc.probe import BusyProbe
from rasd.sdc.engines import Engine, limit_host_blas
from rasd.sdc.gemm import Workspace
from rasd.sdc.levels import plan_for
from rasd.sdc.locks import GpuLocks, admit
from rasd.sdc.results import CheckResult, GpuReport, Outcome, Result, RunReport
from rasd.sdc.runner import Progress, run_level
from rasd.sdc.settings import SdcSettings

log = logging.getLogger(__name__)


# Engines for the GPUs given (those a check is about to use); a GPU that gets none is lost.
EngineBuilder = Callable[[Sequence[int]], Mapping[int, Engine]]


class Validator:
    """``engines``: one per GPU, built already (the daemon's fake node, the standalone CLI), or
    a builder called with the GPUs each run uses, once it has them locked and found them idle
    (a check's child process on real GPUs: a CUDA context on no GPU it does not check)."""

    def __init__(self, settings: SdcSettings, handles: Mapping[int, Any],
                 engines: Mapping[int, Engine] | EngineBuilder,
                 locks: GpuLocks | None = None, clock: Callable[[], float] = time.time,
                 probe: BusyProbe | None = None):
        self.settings = settings
        self.handles = dict(handles)
        self.workspaces: dict[int, Workspace] = {}
        self._builder: EngineBuilder | None = None
        if callable(engines):
            self._builder = engines
        else:
            self._add(engines)
        self.locks = locks or GpuLocks()
        self.clock = clock
        self.probe = probe if probe is not None else BusyProbe(handles)

    def _add(self, engines: Mapping[int, Engine]) -> None:
        # The NumPy engine's device memory is host RAM: its caches stay within the configured
        # simulated device memory (numpy_memory_bytes), and its BLAS uses one core.
        for g, e in engines.items():
            self.workspaces[g] = Workspace(e, budget=self.settings.numpy_memory_bytes if e.name == "numpy" else None)
        if any(e.name == "numpy" for e in engines.values()):
            limit_host_blas()

    @property
    def gpus(self) -> list[int]:
        """The GPUs a check may name: those with an engine, or (engines built per run) every GPU."""
        return sorted(self.handles) if self._builder is not None else sorted(self.workspaces)

    def busy_pids(self, gpu: int) -> list[int]:
        """Processes other than rasd using the GPU (NVML running processes)."""
        return self.probe.busy_pids(gpu)

    @property
    def process_list_failures(self) -> dict[tuple[int, str], int]:
        return self.probe.process_list_failures

    def run(self, targets: Sequence[int], level: str, force: bool = False, seed: int | None = None,
            progress: Progress | None = None, cancel: threading.Event | None = None,
            wait_seconds: float = 0.0, scale: float = 1.0, witnesses: Sequence[int] | None = None) -> Outcome:
        """Check ``targets`` at ``level``. A GPU in use (and not ``force``), held by another
        check, or lost (no engine) is reported inconclusive with the reason, never checked.
        ``witnesses``: the GPUs that may join the vote and the throughput check when idle and
        free (None: any other). Waiting for a lock ends with Cancelled once ``cancel`` is set."""
        # engines built per run (a check's child process): a target gone from this node since the
        # daemon offered it gets no engine and is reported lost below, the others are checked
        unknown = [] if self._builder is not None else [g for g in targets if g not in self.gpus]
        if unknown:
            raise ValueError(f"no GPU {unknown[0]} on this node; choose one of {self.gpus} or all")
        plan = plan_for(level, self.settings, scale)
        seed = self.settings.seed if seed is None else seed
        held, skipped = admit(targets, force, self.busy_pids, self.locks.try_acquire, self.locks.release,
                              wait_seconds, cancel)
        try:
            joined: list[int] = []
            checked = list(held)
            if checked and (plan.vote or plan.throughput):
                for g in self.gpus if witnesses is None else witnesses:
                    if g not in targets and g not in held and not self.busy_pids(g) and self.locks.try_acquire(g):
                        joined.append(g)
                        held.append(g)
            if checked and self._builder is not None:
                self._add(self._builder([g for g in checked + joined if g not in self.workspaces]))
            for g in [g for g in checked if g not in self.workspaces]:
                checked.remove(g)
                skipped[g] = CheckResult(g, "available", Result.INCONCLUSIVE, 0.0, None, {
                    "why": f"GPU {g} is lost: it stopped answering after the checks were set up"})
            joined = [g for g in joined if g in self.workspaces]
            if checked:
                report, rounds = run_level(self.workspaces, checked, plan, self.settings, seed, joined,
                                           progress, cancel, self._power_limit(checked), self.clock)
            else:
                report, rounds = RunReport(plan.name, seed, self.clock(), 0.0, ()), {}
        finally:
            for g in held:
                self.locks.release(g)
        by_gpu = {r.gpu: r for r in report.gpus}
        gpus = tuple(by_gpu[g] if g in by_gpu else GpuReport(g, (skipped[g],)) for g in targets)
        notes = report.notes + ((f"witnesses for vote and throughput: {joined}",) if joined else ())
        full = RunReport(report.level, report.seed, report.started_wall, report.seconds, gpus, notes)
        return Outcome(full, {g: tuple(v) for g, v in rounds.items()})

    def _power_limit(self, gpus: Sequence[int]) -> Callable[[float | None], None] | None:
        """Deep checks at several power limits, only when enforcement is on; restores afterwards."""
        if not (self.settings.enforce_power and self.settings.deep_power_limits_watts):
            return None
        original: dict[int, float] = {}

        def apply(watts: float | None) -> None:
            for g in gpus:
                h = self.handles[g]
                try:
                    if watts is None:
                        if g in original:
                            h.set_power_limit(original[g])
                    else:
                        if g not in original:
                            original[g] = h.power_limits().limit_watts
                        h.set_power_limit(watts)
                except Exception as e:  # noqa: BLE001 - a refused limit leaves the check at the current one
                    log.warning("sdc power limit not applied gpu=%s watts=%s error=%s", g, watts, e)

        return apply
