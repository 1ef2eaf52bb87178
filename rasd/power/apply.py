"""Applying power decisions to GPUs: smoothing profile where supported, else the power limit.

Advisory unless ``PowerSettings.apply`` is true. When applying:
- floor / ramp: the NVML power-smoothing preset profile (Blackwell+, R570+, root) where the GPU
  supports it; elsewhere a floor cannot be set, so its power-limit fallback (the cap that fits
  the swing) is used instead; a ramp alone needs smoothing and stays advisory without it.
- cap and node budget shares: ``nvmlDeviceSetPowerManagementLimit``, confirmed by reading the
  limit back (GpuHandle.set_power_limit), bounded by the device's min and max limits.
Every change is recorded; ``close()`` restores each GPU's original limit and switches smoothing
off where rasd switched it on.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Mapping, Protocol, Sequence

from rasd.power.budget import BudgetState
from rasd.model import PowerLimits
from rasd.power.decide import Mode, SmoothingDecision
from rasd.power.state import AppliedChange, GpuApplyState

log = logging.getLogger("rasd.power.apply")

KEEP_CHANGES = 64
LIMIT_TOLERANCE_WATTS = 1.0  # NVML limits are whole watts on most parts


class PowerHandle(Protocol):
    """The part of rasd.backends.nvml.GpuHandle the applier uses."""

    index: int

    def power_limits(self) -> Any: ...
    def set_power_limit(self, watts: float) -> float: ...
    def smoothing_supported(self) -> bool: ...
    def apply_smoothing(
        self, floor_percent: float, ramp_up_watts_per_second: float,
        ramp_down_watts_per_second: float, hysteresis_ms: float,
    ) -> dict: ...
    def disable_smoothing(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wanted:
    """What one GPU should be set to; None fields mean "as rasd found it"."""

    limit_watts: float | None = None
    smoothing: tuple[float, float, float, float] | None = None  # floor %, up W/s, down W/s, ms


def wanted_settings(
    decision: SmoothingDecision | None,
    budget: BudgetState | None,
    gpu: int,
    limit_now: float,
    smoothing_ok: bool,
) -> Wanted:
    """Pure: the setting a GPU should have for this decision and budget share."""
    limit: float | None = None
    smoothing = None
    d = decision.gpus.get(gpu) if decision is not None else None
    if d is not None:
        if d.mode in (Mode.FLOOR, Mode.RAMP) and smoothing_ok:
            floor_pct = 100.0 * (d.floor_watts or 0.0) / limit_now if limit_now > 0 else 0.0
            smoothing = (
                min(max(floor_pct, 0.0), 100.0),
                d.ramp_up_watts_per_second or 0.0,  # 0: no ramp limit
                d.ramp_down_watts_per_second or 0.0,
                d.hysteresis_ms or 0.0,
            )
        elif d.mode == Mode.FLOOR or d.mode == Mode.CAP:
            limit = d.target_limit_watts
    if budget is not None and gpu in budget.shares:
        share = budget.shares[gpu]
        limit = share if limit is None else min(limit, share)
    return Wanted(limit_watts=limit, smoothing=smoothing)


class PowerApplier:
    def __init__(self, gpus: Sequence[PowerHandle], enabled: bool, wall: Any = None):
        self.enabled = enabled
        self._gpus = {g.index: g for g in gpus}
        self._limits: dict[int, PowerLimits] = {}
        self._original: dict[int, float] = {}
        self._current: dict[int, float] = {}
        self._smoothing_ok: dict[int, bool] = {}
        self._smoothing_on: dict[int, Mapping[str, float]] = {}  # read-back, where rasd enabled it
        self._smoothing_req: dict[int, tuple[float, float, float, float]] = {}
        self._changes: deque[AppliedChange] = deque(maxlen=KEEP_CHANGES)
        self._counts: dict[int, list[int]] = {g: [0, 0] for g in self._gpus}  # changes, failures
        self._logged: set[tuple[int, str]] = set()

    # -- reading the devices -------------------------------------------------------------------

    def limits(self) -> dict[int, PowerLimits]:
        """Each GPU's limit, min and max (W), read once and then tracked through our changes."""
        for g, h in self._gpus.items():
            if g in self._limits:
                continue
            try:
                pl = h.power_limits()
            except Exception as e:  # noqa: BLE001 - ControlError or a lost GPU: skip it this tick
                self._once(g, "limits", f"event=power_limits_failed gpu={g} error={str(e)!r}")
                continue
            self._limits[g] = PowerLimits(pl.limit_watts, pl.min_watts, pl.max_watts)
            self._original.setdefault(g, pl.limit_watts)
            self._current.setdefault(g, pl.limit_watts)
        return {g: replace(l, limit_watts=self._original[g]) for g, l in self._limits.items()}

    def smoothing_ok(self, gpu: int) -> bool:
        if gpu not in self._smoothing_ok:
            try:
                self._smoothing_ok[gpu] = bool(self._gpus[gpu].smoothing_supported())
            except Exception:  # noqa: BLE001 - unsupported is the safe answer
                self._smoothing_ok[gpu] = False
        return self._smoothing_ok[gpu]

    # -- applying ------------------------------------------------------------------------------

    def apply(self, decision: SmoothingDecision | None, budget: BudgetState | None, now_wall: float) -> None:
        if not self.enabled:
            return
        limits = self.limits()
        for g in sorted(limits):
            want = wanted_settings(decision, budget, g, self._current[g], self.smoothing_ok(g))
            reason = "budget" if budget is not None and g in budget.shares else "decision"
            self._set_limit(g, want.limit_watts, limits[g], reason, now_wall)
            self._set_smoothing(g, want.smoothing, now_wall)

    def _set_limit(self, g: int, watts: float | None, lim: PowerLimits, reason: str, now: float) -> None:
        target = self._original[g] if watts is None else watts
        if watts is None:
            reason = "revert"
        target = min(max(target, lim.min_watts), lim.max_watts)
        if abs(target - self._current[g]) < LIMIT_TOLERANCE_WATTS:
            return
        try:
            got = self._gpus[g].set_power_limit(target)
        except Exception as e:  # noqa: BLE001 - ControlError, or the GPU went away
            self._fail(g, "power_limit", {"limit_watts": target}, reason, now, e)
            return
        self._current[g] = got
        self._record(g, "power_limit", {"limit_watts": target}, {"limit_watts": got}, reason, now)

    def _set_smoothing(self, g: int, params: tuple[float, float, float, float] | None, now: float) -> None:
        h = self._gpus[g]
        if params is None:
            if g in self._smoothing_on:
                try:
                    h.disable_smoothing()
                except Exception as e:  # noqa: BLE001
                    self._fail(g, "smoothing_off", {}, "revert", now, e)
                    return
                del self._smoothing_on[g]
                self._smoothing_req.pop(g, None)
                self._record(g, "smoothing_off", {}, {}, "revert", now)
            return
        requested = {
            "floor_percent": params[0],
            "ramp_up_watts_per_second": params[1],
            "ramp_down_watts_per_second": params[2],
            "hysteresis_ms": params[3],
        }
        if self._smoothing_req.get(g) == params:
            return
        try:
            back = h.apply_smoothing(*params)
        except Exception as e:  # noqa: BLE001
            self._fail(g, "smoothing", requested, "decision", now, e)
            return
        self._smoothing_on[g] = MappingProxyType(dict(back))
        self._smoothing_req[g] = params
        self._record(g, "smoothing", requested, dict(back), "decision", now)

    def close(self, now_wall: float) -> None:
        """Restore what rasd changed: smoothing off, original limits back."""
        for g in sorted(self._gpus):
            if g in self._smoothing_on:
                self._set_smoothing(g, None, now_wall)
            if g in self._limits and abs(self._current[g] - self._original[g]) >= LIMIT_TOLERANCE_WATTS:
                self._set_limit(g, None, self._limits[g], "revert", now_wall)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _record(self, g: int, kind: str, req: Mapping[str, float], got: Mapping[str, float],
                reason: str, now: float) -> None:
        self._counts[g][0] += 1
        self._changes.append(AppliedChange(now, g, kind, MappingProxyType(dict(req)),
                                           MappingProxyType(dict(got)), reason))
        log.info("event=power_change gpu=%d kind=%s reason=%s requested=%s applied=%s",
                 g, kind, reason, dict(req), dict(got))

    def _fail(self, g: int, kind: str, req: Mapping[str, float], reason: str, now: float,
              e: Exception) -> None:
        self._counts[g][1] += 1
        self._changes.append(AppliedChange(now, g, kind, MappingProxyType(dict(req)),
                                           MappingProxyType({}), reason, error=str(e)))
        self._once(g, kind, f"event=power_change_failed gpu={g} kind={kind} error={str(e)!r}")

    def _once(self, g: int, what: str, message: str) -> None:
        if (g, what) not in self._logged:
            self._logged.add((g, what))
            log.warning(message)

    def changes(self) -> tuple[AppliedChange, ...]:
        return tuple(self._changes)

    def state(self) -> dict[int, GpuApplyState]:
        out = {}
        for g in self._gpus:
            sm = self._smoothing_on.get(g)
            out[g] = GpuApplyState(
                limit_watts=self._current.get(g),
                original_limit_watts=self._original.get(g),
                smoothing=sm,
                changes_total=self._counts[g][0],
                failures_total=self._counts[g][1],
            )
        return out
