"""Settings of the SDC checks: the ``[sdc]`` table of rasd.toml."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("quick", "standard", "deep")


@dataclass(frozen=True, slots=True)
class SdcSettings:
    periodic: bool = True  # run a quick check on idle GPUs from the daemon
    periodic_interval_seconds: float = 6 * 3600.0  # per GPU, between periodic quick checks
    quick_gemm_size: int = 256  # matrix side for quick checks
    standard_gemm_size: int = 1024
    deep_gemm_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    deep_seconds: float = 600.0  # length of a deep check (the rounds stop at whichever limit comes first)
    deep_rounds: int = 200
    deep_min_rounds: int = 3  # a deep check runs at least this many rounds, whatever its length
    freivalds_trials: int = 16  # a wrong product escapes all trials with probability <= 2^-trials
    quick_memory_bytes: int = 4 << 20  # quick: a fixed, small region
    memory_share: float = 0.05  # standard: share of free device memory tested
    deep_memory_share: float = 0.5
    memory_max_bytes: int = 4 << 30  # cap per check, whatever the share
    numpy_memory_bytes: int = 64 << 20  # NumPy engine: simulated device memory (host RAM)
    throughput_tolerance: float = 0.10  # slow when below (1 - tolerance) x the peers' median
    throughput_repeats: int = 5  # best of N, interleaved across devices
    confirm_min_failures: int = 2  # failing rounds needed to confirm SDC (never on one result)
    clear_min_passes: int = 3  # passing rounds (and no failure) needed to clear an accusation
    accusation_window_seconds: float = 7 * 86400.0
    accusation_threshold: int = 3  # unreproduced accusations in the window -> deeper check + technician
    escalation_factor: float = 3.0  # a deeper check is this many times a deep check
    enforce_power: bool = False  # deep checks may change power limits (root) only when true
    deep_power_limits_watts: tuple[float, ...] = ()  # limits a deep check cycles through (enforce_power)
    seed: int = 0  # base seed of the golden inputs; results carry the seed that reproduces them

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.periodic_interval_seconds < 60:
            problems.append("periodic_interval_seconds: must be at least 60")
        for name in ("quick_gemm_size", "standard_gemm_size"):
            if not 16 <= getattr(self, name) <= 65536:
                problems.append(f"{name}: must be between 16 and 65536")
        if not self.deep_gemm_sizes or any(not 16 <= n <= 65536 for n in self.deep_gemm_sizes):
            problems.append("deep_gemm_sizes: must be a non-empty list of sizes between 16 and 65536")
        if self.deep_seconds <= 0 or self.deep_rounds < 1 or self.deep_min_rounds < 1:
            problems.append("deep_seconds/deep_rounds/deep_min_rounds: must be positive")
        if not 1 <= self.freivalds_trials <= 64:
            problems.append("freivalds_trials: must be between 1 and 64")
        for name in ("memory_share", "deep_memory_share"):
            if not 0 < getattr(self, name) <= 0.9:
                problems.append(f"{name}: must be in (0, 0.9] (leave memory for the driver)")
        for name in ("quick_memory_bytes", "memory_max_bytes", "numpy_memory_bytes"):
            if getattr(self, name) < 4096:
                problems.append(f"{name}: must be at least 4096")
        if not 0 < self.throughput_tolerance < 1:
            problems.append("throughput_tolerance: must be between 0 and 1 (e.g. 0.1)")
        if self.throughput_repeats < 1:
            problems.append("throughput_repeats: must be at least 1")
        if self.confirm_min_failures < 2:
            problems.append("confirm_min_failures: must be at least 2 (never confirm on one result)")
        if self.clear_min_passes < 2:
            problems.append("clear_min_passes: must be at least 2 (never clear on one result)")
        if self.accusation_threshold < 2 or self.accusation_window_seconds <= 0:
            problems.append("accusation_threshold/window: threshold >= 2 and a positive window")
        if self.escalation_factor < 1:
            problems.append("escalation_factor: must be at least 1")
        if self.deep_power_limits_watts and not self.enforce_power:
            problems.append("deep_power_limits_watts: set enforce_power = true to let deep checks change limits")
        if any(w <= 0 for w in self.deep_power_limits_watts):
            problems.append("deep_power_limits_watts: limits must be positive watts")
        return problems
