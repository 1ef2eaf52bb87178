"""The power model takes demand in runs of steps that share a phase: each run's values must be
exactly the per-step demand, for any workload, at any time, read in pieces of any length."""

from __future__ import annotations

import random

from rasd.backends.fake.powersim import STEP_SECONDS
from rasd.backends.fake.profiles import get_profile
from rasd.backends.fake.scenario import WorkloadSpec
from rasd.backends.fake.workload import RIPPLE_STEPS, Workload


def _steps(wl: Workload, gpu: int, first: int, last: int) -> list[float]:
    ripple, out, k = wl.ripple(gpu), [], first
    for base, count in wl.runs(gpu, first, last, STEP_SECONDS):
        out += [base * ripple[j % RIPPLE_STEPS] for j in range(k, k + count)]
        k += count
    assert k == last + 1
    return out


def test_runs_give_every_steps_own_demand() -> None:
    rng = random.Random(3)
    profile = get_profile("h100-sxm-80gb")
    for trial in range(60):
        spec = WorkloadSpec(
            step_seconds=rng.choice([None, 0.05, 0.3, 1.3, round(rng.uniform(0.05, 5.0), 3)]),
            compute_fraction=rng.choice([0.0, 0.01, 0.65, 0.999, 1.0, rng.random()]),
            jitter_ms=rng.choice([0.0, 4.0, 50.0]),
            checkpoint_every_seconds=rng.choice([0.0, 10.0, 3.7, 0.2]),
            checkpoint_seconds=rng.choice([0.0, 0.004, 1.5, 100.0]),  # also: always in a checkpoint
            idle_gpus=(1,),
        )
        wl = Workload(spec, profile, 3, trial)
        start = rng.choice([0, 12_345, 3 * 10**8])  # also a month in: float rounding of large times
        for gpu in range(3):
            k = start
            while k < start + 1500:
                n = rng.choice([1, 3, 20, 20, 200, 4200])  # 4200: longer than the ripple's cycle
                want = [wl.demand_watts(gpu, j * STEP_SECONDS, j) for j in range(k + 1, k + n + 1)]
                assert _steps(wl, gpu, k + 1, k + n) == want, (trial, gpu, k, n, spec)
                k += n
