"""Pure smoothing decisions with hysteresis: none, ramp, floor or cap (REFERENCE.md section 4).

The node's allowed swing and ramp are shared between GPUs in proportion to their power limits.
- ``floor``: raise each GPU's trough so its swing fits its share (power floor, GB300-style), when
  the extra energy stays within the energy budget and the node budget.
- ``ramp``: the swing fits but the node ramps too fast: ramp-up/down limits and a ramp-down
  hysteresis longer than one period at the band's low end.
- ``cap``: a lower power limit clips the peaks, when a floor would cost more than the energy
  budget or break the node budget (and always where the node budget is exceeded).

Hysteresis: no decision before half a window of readings; then a more severe mode is taken at
once (a decision within one window), a milder one only after its condition held for
``hysteresis_seconds``, measured against limits lowered by ``margin_percent``. That also keeps an
applied floor or cap in place: under it the measured swing sits at the allowed swing, above the
lowered limit. Floor or cap is chosen when the swing appears and kept while it lasts; within
that episode a floor only rises and a cap only falls, each by more than ``deadband_percent`` of
the GPU's limit, because the window then shows rasd's own control. A swing that comes back soon
after a relaxation (the control was hiding it, e.g. a ramp hold) doubles the next hold.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from types import MappingProxyType
import math
from typing import TYPE_CHECKING, Any, Mapping

from rasd.model import PowerLimits
from rasd.power.metrics import SeriesMetrics, WindowAnalysis
from rasd.power.settings import PowerSettings

if TYPE_CHECKING:
    from rasd.power.metrics import Floats  # watts: array('d') live, NumPy offline

HYSTERESIS_PERIODS = 1.25  # ramp mode's ramp-down hysteresis, in periods of the band's low end
MAX_BACKOFF = 8  # the hold grows to at most this many times hysteresis_seconds
MIN_COVERAGE = 0.5  # share of the window that must hold readings before deciding
BAND_ENERGY_SHARE = 0.5  # without an in-band rhythm, this share of the energy must be in the band


class Mode(enum.IntEnum):
    """Ordered by severity: a higher mode may be taken at once, a lower one only after a hold."""

    NONE = 0
    RAMP = 1
    FLOOR = 2
    CAP = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class GpuSmoothing:
    gpu: int
    mode: Mode
    allowed_swing_watts: float  # this GPU's share of the node's allowed swing; 0 = no limit
    floor_watts: float | None = None
    floor_percent: float | None = None  # of the GPU's power limit
    ramp_up_watts_per_second: float | None = None
    ramp_down_watts_per_second: float | None = None
    hysteresis_ms: float | None = None  # ramp-down hysteresis (NVML unit)
    target_limit_watts: float | None = None  # cap; with a floor: the power-limit fallback
    energy_overhead_ratio: float = 0.0  # extra energy of the floor over the window's energy
    clipped_energy_ratio: float = 0.0  # energy a cap takes away (work slowed down)


@dataclass(frozen=True, slots=True)
class SmoothingDecision:
    mode: Mode
    reason: str
    gpus: Mapping[int, GpuSmoothing] = field(default_factory=lambda: MappingProxyType({}))
    allowed_swing_watts: float = 0.0  # node; 0 = no swing limit set
    energy_overhead_ratio: float = 0.0  # node, floor only
    since_wall: float = 0.0  # when this mode was taken
    relax_since_wall: float | None = None  # since when a milder mode would do (hysteresis)
    relaxed_wall: float | None = None  # when a mode was last relaxed
    relapses: int = 0  # swings back soon after a relaxation (each doubles the hold)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mode": self.mode.label,
            "reason": self.reason,
            "allowed_swing_watts": self.allowed_swing_watts,
            "energy_overhead_ratio": self.energy_overhead_ratio,
            "gpus": {},
        }
        for gpu, d in sorted(self.gpus.items()):
            row = {"mode": d.mode.label, "allowed_swing_watts": d.allowed_swing_watts}
            if d.mode in (Mode.FLOOR,):
                row.update(floor_watts=d.floor_watts, floor_percent=d.floor_percent,
                           energy_overhead_ratio=d.energy_overhead_ratio)
            if d.mode in (Mode.RAMP, Mode.FLOOR):
                row.update(
                    ramp_up_watts_per_second=d.ramp_up_watts_per_second,
                    ramp_down_watts_per_second=d.ramp_down_watts_per_second,
                    hysteresis_ms=d.hysteresis_ms,
                )
            if d.target_limit_watts is not None:
                row.update(target_limit_watts=d.target_limit_watts,
                           clipped_energy_ratio=d.clipped_energy_ratio)
            out["gpus"][str(gpu)] = row  # type: ignore[index]
        return out


def node_allowed_swing(settings: PowerSettings, limits: Mapping[int, PowerLimits]) -> float:
    """Watts; the smaller of the absolute and the percentage limit that are set; 0 = no limit."""
    options = []
    if settings.allowed_swing_watts > 0:
        options.append(settings.allowed_swing_watts)
    if settings.allowed_swing_percent > 0:
        options.append(settings.allowed_swing_percent / 100.0 * sum(l.limit_watts for l in limits.values()))
    return min(options) if options else 0.0


def decide(
    analysis: WindowAnalysis,
    limits: Mapping[int, PowerLimits],
    settings: PowerSettings,
    now_wall: float,
    previous: SmoothingDecision | None = None,
    readings: Mapping[int, Floats] | None = None,
) -> SmoothingDecision:
    """The node's decision for this window.

    ``limits``: each GPU's power limits (the limit is the share key and the cap bound).
    ``readings``: each GPU's watts over the window, for the energy estimates (optional: without
    them the overhead is estimated from the swing alone, as for a square wave).
    """
    # Decide over the GPUs summed into the node: a GPU that stopped reporting is not shared in.
    members = set(analysis.node_gpus) if analysis.node is not None else set(analysis.gpus)
    gpus = {g: m for g, m in analysis.gpus.items() if g in limits and g in members}
    node = analysis.node
    if node is None and len(gpus) == 1:
        node = next(iter(gpus.values()))
    need = MIN_COVERAGE * settings.window_seconds
    if node is None or not gpus or node.duration_seconds < need:
        why = f"not enough readings yet (a decision needs {need:g} s of them)"
        if previous is None:
            return SmoothingDecision(Mode.NONE, why, since_wall=now_wall)
        return replace(previous, reason=f"{why}; keeping {previous.mode.label}")
    prev_mode = previous.mode if previous is not None else Mode.NONE
    margin = 1.0 - settings.margin_percent / 100.0
    total_limit = sum(limits[g].limit_watts for g in gpus)
    allowed = node_allowed_swing(settings, {g: limits[g] for g in gpus})
    share = {g: allowed * limits[g].limit_watts / total_limit for g in gpus}
    readings = readings or {}

    # What does the window ask for? Limits are lowered by the margin while a mode is active.
    def over(value: float, limit: float, active: bool) -> bool:
        return limit > 0 and value > limit * (margin if active else 1.0)

    # Band-aware: the swing that counts is the steady part's (a checkpoint's dip to idle is left
    # out), and only when the window's variation is a rhythm inside the band (an in-band
    # oscillation, or most of the energy in the band). A slow cycle below the band or a single
    # step is the facility's load change, not a resonance: it is reported, never floored or capped.
    swing = node.steady_swing_watts
    energy = node.steady_band_energy_ratio if node.steady_ratio < 1.0 else node.band_energy_ratio
    in_band = node.band_oscillation_hz is not None or energy is None or energy >= BAND_ENERGY_SHARE
    swing_bad = in_band and over(swing, allowed, prev_mode >= Mode.FLOOR)
    slow_only = not in_band and over(swing, allowed, prev_mode >= Mode.FLOOR)
    max_ramp = settings.max_ramp_watts_per_second
    ramp_bad = max_ramp > 0 and over(
        max(node.ramp_up_watts_per_second, node.ramp_down_watts_per_second), max_ramp, prev_mode >= Mode.RAMP
    )
    budget = settings.node_budget_watts
    budget_bad = budget > 0 and node.peak_watts > budget * (margin if prev_mode == Mode.CAP else 1.0)

    # A floor's cost matters only where a swing calls for one, or one is in place (it may be
    # held); elsewhere the readings need not be walked for it (a tenth of a decision's time).
    if swing_bad or prev_mode == Mode.FLOOR:
        floors = {g: _floor(gpus[g], share[g], limits[g], readings.get(g)) for g in gpus}
    else:
        floors = {g: (None, 0.0) for g in gpus}
    floor_watts = sum(f[1] for f in floors.values())
    node_energy = sum(gpus[g].mean_watts for g in gpus)
    overhead = floor_watts / node_energy if node_energy > 0 else 0.0
    floored_mean = node.mean_watts + floor_watts

    reason: str
    if budget_bad:
        wanted, reason = Mode.CAP, f"node peak {node.peak_watts:.0f} W above the node budget {budget:.0f} W"
    elif swing_bad and prev_mode in (Mode.FLOOR, Mode.CAP):
        # Floor or cap is chosen when the swing appears and kept while it lasts: under either,
        # the trace shows our own control, not what the other would cost.
        wanted, reason = prev_mode, f"swing {swing:.0f} W still near the allowed {allowed:.0f} W"
    elif swing_bad and overhead * 100 > settings.energy_budget_percent:
        wanted, reason = Mode.CAP, (
            f"swing {swing:.0f} W over {allowed:.0f} W; a floor would cost "
            f"{overhead:.1%} energy (budget {settings.energy_budget_percent:g}%)"
        )
    elif swing_bad and budget > 0 and floored_mean > budget:
        wanted, reason = Mode.CAP, (
            f"swing {swing:.0f} W over {allowed:.0f} W; a floor would lift the node "
            f"to {floored_mean:.0f} W, above its budget {budget:.0f} W"
        )
    elif swing_bad:
        wanted, reason = Mode.FLOOR, f"swing {swing:.0f} W over the allowed {allowed:.0f} W"
    elif ramp_bad:
        wanted, reason = Mode.RAMP, (
            f"ramp {max(node.ramp_up_watts_per_second, node.ramp_down_watts_per_second):.0f} W/s "
            f"over {max_ramp:.0f} W/s"
        )
    elif slow_only:
        wanted, reason = Mode.NONE, (
            f"swing {swing:.0f} W is a slow cycle or a step below the {settings.band_low_hz:g} Hz band "
            "(no in-band rhythm): reported, not smoothed"
        )
    else:
        wanted, reason = Mode.NONE, "within limits"

    # Back-off: a swing that returns soon after a mode was relaxed (the relaxed mode was hiding
    # it) doubles the next hold, up to MAX_BACKOFF times; a long calm period forgets relapses.
    relapses = previous.relapses if previous is not None else 0
    relaxed_at = previous.relaxed_wall if previous is not None else None
    hold = settings.hysteresis_seconds * min(2**relapses, MAX_BACKOFF)
    if relaxed_at is not None and now_wall - relaxed_at > MAX_BACKOFF * settings.hysteresis_seconds:
        relapses, hold = 0, settings.hysteresis_seconds
    mode, since, relax_since = wanted, now_wall, None
    if previous is not None and wanted < prev_mode:
        relax_since = previous.relax_since_wall if previous.relax_since_wall is not None else now_wall
        if now_wall - relax_since < hold:
            mode, since = prev_mode, previous.since_wall
            reason = f"holding {prev_mode.label} (hysteresis {hold:g} s): {reason}"
        else:
            relax_since, relaxed_at = None, now_wall
    elif previous is not None and wanted == prev_mode:
        since = previous.since_wall
    elif previous is not None and relaxed_at is not None and now_wall - relaxed_at <= hold:
        relapses += 1

    ramp_limits = _ramp_limits(settings, limits, gpus)
    hysteresis_ms = HYSTERESIS_PERIODS * 1000.0 / settings.band_low_hz
    out: dict[int, GpuSmoothing] = {}
    for g, m in gpus.items():
        lim = limits[g]
        floor_w, extra_w = floors[g]
        # A swing cap clips the peaks to the trough plus the GPU's share of the allowed swing; a
        # budget cap scales the GPU's peak by the node's excess. Without a swing limit only the
        # budget can cap.
        cap = _bound(_trough(m) + share[g], lim) if share[g] > 0 else lim.max_watts
        if budget_bad and node.peak_watts > 0:
            cap = min(cap, _bound(m.peak_watts * budget / node.peak_watts, lim))
        d = GpuSmoothing(gpu=g, mode=Mode.NONE, allowed_swing_watts=share[g])
        if mode == Mode.FLOOR and floor_w is None and _was(previous, g, Mode.FLOOR):
            floor_w = previous.gpus[g].floor_watts  # type: ignore[union-attr]
        if mode == Mode.FLOOR and floor_w is not None:
            d = replace(
                d,
                mode=Mode.FLOOR,
                floor_watts=floor_w,
                floor_percent=100.0 * floor_w / lim.limit_watts,
                ramp_up_watts_per_second=ramp_limits[g],
                ramp_down_watts_per_second=ramp_limits[g],
                # No ramp-down hold under a floor: holding would fill every dip up to the peak,
                # far above the floor's estimated cost; the floor alone fits the swing.
                hysteresis_ms=0.0,
                target_limit_watts=cap,  # the fallback where smoothing is not supported
                energy_overhead_ratio=extra_w / m.mean_watts if m.mean_watts > 0 else 0.0,
            )
        elif mode == Mode.RAMP:
            d = replace(
                d,
                mode=Mode.RAMP,
                ramp_up_watts_per_second=ramp_limits[g],
                ramp_down_watts_per_second=ramp_limits[g],
                hysteresis_ms=hysteresis_ms,
            )
        elif mode == Mode.CAP and (cap < m.peak_watts or budget_bad or _was(previous, g, Mode.CAP)):
            d = replace(d, mode=Mode.CAP, target_limit_watts=cap,
                        clipped_energy_ratio=_clipped(readings.get(g), cap, m))
        out[g] = _keep_close(d, previous.gpus.get(g) if previous else None, lim, settings)
    return SmoothingDecision(
        mode=mode,
        reason=reason,
        gpus=MappingProxyType(out),
        allowed_swing_watts=allowed,
        energy_overhead_ratio=overhead if mode == Mode.FLOOR else 0.0,
        since_wall=since,
        relax_since_wall=relax_since,
        relaxed_wall=relaxed_at,
        relapses=relapses,
    )


def _bound(watts: float, lim: PowerLimits) -> float:
    return float(min(max(watts, lim.min_watts), lim.max_watts))


def _floor(
    m: SeriesMetrics, share: float, lim: PowerLimits, w: Floats | None
) -> tuple[float | None, float]:
    """(floor in W, or None when the swing already fits; the extra watts it costs on average)."""
    peak, trough = _peak(m), _trough(m)
    floor = peak - share
    if floor <= trough:
        return None, 0.0
    floor = min(floor, lim.max_watts)
    if w is not None and len(w):
        extra = math.fsum(floor - x for x in w if x < floor) / len(w)
    else:
        # Without readings: a square wave spends half its time at the trough.
        extra = 0.5 * (floor - trough)
    return float(floor), extra


def _peak(m: SeriesMetrics) -> float:
    """The steady part's peak (watts): what floors and caps are set against."""
    return m.peak_watts if m.steady_peak_watts is None else m.steady_peak_watts


def _trough(m: SeriesMetrics) -> float:
    """The steady part's trough (watts): a checkpoint's dip to idle never sets a cap."""
    return m.trough_watts if m.steady_trough_watts is None else m.steady_trough_watts


def _clipped(w: Floats | None, cap: float, m: SeriesMetrics) -> float:
    total = math.fsum(w) if w is not None and len(w) else 0.0
    if w is not None and total > 0:
        return math.fsum(x - cap for x in w if x > cap) / total  # share of the energy above the cap
    if m.mean_watts <= 0:
        return 0.0
    return max(0.0, 0.5 * (m.peak_watts - cap)) / m.mean_watts


def _ramp_limits(
    settings: PowerSettings, limits: Mapping[int, PowerLimits], gpus: Mapping[int, SeriesMetrics]
) -> dict[int, float | None]:
    total = sum(limits[g].limit_watts for g in gpus)
    if settings.max_ramp_watts_per_second <= 0 or total <= 0:
        return {g: None for g in gpus}
    return {g: settings.max_ramp_watts_per_second * limits[g].limit_watts / total for g in gpus}


def _was(previous: SmoothingDecision | None, gpu: int, mode: Mode) -> bool:
    return previous is not None and gpu in previous.gpus and previous.gpus[gpu].mode == mode


def _keep_close(
    new: GpuSmoothing, old: GpuSmoothing | None, lim: PowerLimits, settings: PowerSettings
) -> GpuSmoothing:
    """Within one episode of a mode, a floor only rises and a cap only falls, by more than the
    deadband: the window then shows our own control (a floored trough, a capped peak), and a
    target recomputed from it would undo itself."""
    if old is None or old.mode != new.mode:
        return new
    band = settings.deadband_percent / 100.0 * lim.limit_watts
    changes: dict[str, Any] = {}
    if old.floor_watts is not None and new.floor_watts is not None and new.floor_watts < old.floor_watts + band:
        changes["floor_watts"] = old.floor_watts
        changes["floor_percent"] = old.floor_percent
    a, b = old.target_limit_watts, new.target_limit_watts
    if a is not None and b is not None and b > a - band:
        changes["target_limit_watts"] = a
    return replace(new, **changes) if changes else new
