"""The snapshot: everything the exporters show, one immutable object swapped atomically by the daemon.

It sits above the areas (telemetry's ``GpuState`` from ``rasd.model``, and each area's own state:
ladder, SDC, power, scheduler), so ``rasd.model`` stays the ground floor that imports no area package. The
exporters read only this module and ``rasd.model``; the few area types a section formats (the
power analysis of one series, the smoothing mode) are named here for them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rasd.ladder.state import LadderState
from rasd.model import GpuState, NodeIdentity
from rasd.power.state import PowerState
from rasd.scheduler.state import SchedulerState
from rasd.sdc.state import SdcState

if TYPE_CHECKING:
    from rasd.power.metrics import SeriesMetrics
    from rasd.power.decide import Mode

# Named here for the exporters but defined beside the power analysis: loaded on first use, so a
# reader of snapshots (status, history, the CLI) loads no power code it does not read.
_LAZY = {"SeriesMetrics": "rasd.power.metrics", "Mode": "rasd.power.decide"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["LadderState", "Mode", "PowerState", "SchedulerState", "SdcState", "SelfStats", "SeriesMetrics",
           "Snapshot", "StageStatus"]


@dataclass(frozen=True, slots=True)
class SelfStats:
    """The daemon's own cost, from the kernel: CPU seconds (user + system, ``times(2)``), resident
    bytes (``/proc/self/statm``), threads (``/proc/self/task``)."""

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


class _Referable:
    """Lets a weak reference point at an instance: a slotted dataclass's own slots have no room
    for one (``weakref_slot`` is Python 3.11's)."""

    __slots__ = ("__weakref__",)


@dataclass(frozen=True, slots=True)
class Snapshot(_Referable):
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
