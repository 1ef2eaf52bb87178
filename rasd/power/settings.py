"""The ``[power]`` table of rasd.toml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PowerSettings:
    """Power analysis, smoothing decisions and node budget sharing.

    Swing and ramp limits are for the node's summed power; each GPU gets a share of them in
    proportion to its power limit. ``0`` switches a limit off; all are off by default (advice and
    alerts only where the operator sets a limit).
    """

    window_seconds: float = 30.0  # sliding analysis window
    band_low_hz: float = 0.1  # band of concern (production training sits mostly at 0.2-3 Hz)
    band_high_hz: float = 3.0
    # No swing limit unless an operator sets one: a healthy training node swings by design (about
    # half its power every step), and a default limit would decide and alert on every such node.
    allowed_swing_watts: float = 0.0  # node peak-to-peak; 0 = no limit in watts
    allowed_swing_percent: float = 0.0  # of the node's summed power limits; 0 = no limit in percent
    max_ramp_watts_per_second: float = 0.0  # node, 95th percentile; 0 = no ramp limit
    energy_budget_percent: float = 10.0  # most extra energy a floor may cost, else cap
    node_budget_watts: float = 0.0  # shared between GPUs; 0 = no node budget
    rebalance_seconds: float = 30.0  # node budget sharing period (Slurm power/cray: 30 s)
    budget_lower_percent: float = 90.0  # a GPU using less of its share gives some back
    budget_upper_percent: float = 95.0  # a GPU using more asks for more
    budget_shrink_percent: float = 50.0  # largest step down, % of the GPU's limit range
    budget_grow_percent: float = 20.0  # largest step up, % of the GPU's limit range
    analysis_seconds: float = 5.0  # full analysis at most this often; escalations checked every tick
    hysteresis_seconds: float = 60.0  # a milder decision must hold this long before it is taken
    margin_percent: float = 10.0  # relax only below (100 - margin)% of a limit
    deadband_percent: float = 2.0  # of a GPU's limit: smaller changes of a target are ignored
    oscillation_min_watts: float = 2.0  # smaller oscillation amplitudes are not reported
    apply: bool = False  # advisory unless true (needs root)

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.window_seconds < 2:
            problems.append("window_seconds: must be at least 2 (a few periods of 0.2-3 Hz)")
        if not 0 < self.band_low_hz < self.band_high_hz:
            problems.append(
                "band_low_hz, band_high_hz: need 0 < band_low_hz < band_high_hz, e.g. 0.1 and 3.0"
            )
        if self.window_seconds * self.band_low_hz < 1:
            problems.append(
                "band_low_hz: the window must hold one period of it; raise window_seconds "
                f"to at least {1 / max(self.band_low_hz, 1e-9):g}"
            )
        for name in (
            "allowed_swing_watts",
            "max_ramp_watts_per_second",
            "node_budget_watts",
            "oscillation_min_watts",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be 0 (off) or positive")
        for name in (
            "allowed_swing_percent",
            "energy_budget_percent",
            "budget_shrink_percent",
            "budget_grow_percent",
            "margin_percent",
            "deadband_percent",
        ):
            if not 0 <= getattr(self, name) <= 100:
                problems.append(f"{name}: must be between 0 and 100")
        if not 0 < self.budget_lower_percent < self.budget_upper_percent <= 100:
            problems.append(
                "budget_lower_percent, budget_upper_percent: need 0 < lower < upper <= 100"
            )
        if self.rebalance_seconds <= 0:
            problems.append("rebalance_seconds: must be positive")
        if self.analysis_seconds <= 0:
            problems.append("analysis_seconds: must be positive (seconds between full analyses)")
        if self.hysteresis_seconds < 0:
            problems.append("hysteresis_seconds: must be 0 or positive")
        return problems
