"""The snapshot: everything the exporters show, one immutable object swapped atomically by the daemon.

It sits above the areas (telemetry's ``GpuState`` from ``rasd.model``, and each area's own state:
ladder, SDC, power, scheduler), so ``rasd.model`` stays the ground floor that imports no area package. The
exporters read only this module and ``rasd.model``; the few area types a section formats (the
power analysis of one series, the smoothing mode) are named here for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasd.ladder.state import LadderState
from rasd.model import GpuState, NodeIdentity
from rasd.power.analysis import SeriesMetrics
from rasd.power.decide import Mode
from rasd.power.state import PowerState
from rasd.scheduler.state import SchedulerState
from rasd.sdc.state import SdcState

__all__ = ["LadderState", "Mode", "PowerState", "SchedulerState", "SdcState", "SelfStats", "SeriesMetrics",
           "Snapshot", "StageStatus"]


@dataclass(frozen=True, slots=True)
class SelfStats:
    """The daemon's own cost, from psutil: CPU seconds (user + system), resident bytes, threads."""

    cpu_seconds: float
    rss_bytes: int
    threads: int
    started_wall: float


@dataclass(frozen=True, slots=True)
class StageStatus:
    """One stage of the daemon's tick (aggregate, ladder, sdc, power, scheduler, snapshot, notify)."""

    stage: str
    ok: bool  # the stage's last run succeeded
    failures_total: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the exporters show, swapped atomically by the daemon; never mutated."""

    time_wall: float
    node: NodeIdentity
    gpus: tuple[GpuState, ...]
    health_polls: int = 0
    power_rounds: int = 0
    self_stats: SelfStats | None = None
    ladder: LadderState | None = None
    sdc: SdcState | None = None
    power: PowerState | None = None
    scheduler: SchedulerState | None = None
    stages: tuple[StageStatus, ...] = ()  # as of this snapshot; "notify" runs after it is built
