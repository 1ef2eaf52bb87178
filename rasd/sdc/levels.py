"""What each level runs: quick (seconds per GPU), standard (about 2 minutes per node), deep."""

from __future__ import annotations

from dataclasses import dataclass

from rasd.sdc.settings import LEVELS, SdcSettings


@dataclass(frozen=True, slots=True)
class LevelPlan:
    name: str
    sizes: tuple[int, ...]  # GEMM sides (deep picks one per round at random)
    gemm_checks: tuple[str, ...]  # golden_gemm, abft, freivalds
    memory_tests: tuple[str, ...]
    memory_bytes: int | None  # a fixed region, or None to use memory_share of free memory
    memory_share: float
    vote: bool
    throughput: bool
    rounds: int  # deep: at most this many rounds ...
    seconds: float | None  # ... and at most this long (None: one round)
    min_rounds: int
    randomize: bool  # deep: random seeds, sizes and dtypes per round
    power_limits_watts: tuple[float, ...]  # deep with enforce_power: cycle through these limits


def plan_for(level: str, s: SdcSettings, scale: float = 1.0) -> LevelPlan:
    """The plan of ``level``; ``scale`` lengthens a deep check (an escalated, deeper check)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    gemm = ("golden_gemm", "abft", "freivalds")
    if level == "quick":
        return LevelPlan("quick", (s.quick_gemm_size,), gemm, ("walking_ones", "random"), s.quick_memory_bytes,
                         s.memory_share, vote=True, throughput=False, rounds=1, seconds=None, min_rounds=1,
                         randomize=False, power_limits_watts=())
    if level == "standard":
        return LevelPlan("standard", (s.standard_gemm_size,), gemm,
                         ("march_c_minus", "moving_inversions", "walking_ones", "random"), None, s.memory_share,
                         vote=True, throughput=True, rounds=1, seconds=None, min_rounds=1, randomize=False,
                         power_limits_watts=())
    return LevelPlan("deep", tuple(s.deep_gemm_sizes), gemm,
                     ("march_c_minus", "moving_inversions", "walking_ones", "random"), None, s.deep_memory_share,
                     vote=True, throughput=True, rounds=max(1, int(s.deep_rounds * scale)),
                     seconds=s.deep_seconds * scale, min_rounds=max(1, int(s.deep_min_rounds * scale)),
                     randomize=True,
                     power_limits_watts=tuple(s.deep_power_limits_watts) if s.enforce_power else ())
