"""What the snapshot says about power: analysis, decision, node budget, applied changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # the analysis modules load NumPy; a reader of the state (status, exporters) needs none
    from rasd.power.metrics import SeriesMetrics
    from rasd.power.budget import BudgetState
    from rasd.power.decide import SmoothingDecision


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One change rasd made (or tried to make) to a GPU; kept in ``PowerState.changes``."""

    time_wall: float
    gpu: int
    kind: str  # "power_limit", "smoothing", "smoothing_off"
    requested: Mapping[str, float]  # what was asked (watts, %, W/s, ms)
    applied: Mapping[str, float]  # what NVML read back; empty when it failed
    reason: str  # "decision", "budget", "revert"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GpuApplyState:
    """Where one GPU stands now: what rasd set on it (None: untouched)."""

    limit_watts: float | None = None  # current power limit as read back
    original_limit_watts: float | None = None  # restored on exit
    smoothing: Mapping[str, float] | None = None  # read-back of the active profile, if rasd set one
    changes_total: int = 0
    failures_total: int = 0


@dataclass(frozen=True, slots=True)
class PowerState:
    time_wall: float
    window_seconds: float
    band_low_hz: float
    band_high_hz: float
    apply_enabled: bool
    max_ramp_watts_per_second: float = 0.0  # the node's allowed ramp ([power]); 0 = none
    gpus: Mapping[int, SeriesMetrics] = field(default_factory=lambda: MappingProxyType({}))
    node: SeriesMetrics | None = None
    decision: SmoothingDecision | None = None
    budget: BudgetState | None = None
    applied: Mapping[int, GpuApplyState] = field(default_factory=lambda: MappingProxyType({}))
    changes: tuple[AppliedChange, ...] = ()  # the most recent ones, oldest first
    tick_seconds: float = 0.0  # cost of the last analysis + decision + apply
    ticks_total: int = 0
    tick_failures_total: int = 0
