"""The simulated job's power demand: a pure function of (GPU, seconds since start) and the seed.

Training alternates a compute phase (demand near or above the power limit) with a communication
phase (much lower), every GPU in phase with a few milliseconds of per-GPU offset, and drops near
idle during periodic checkpoints. Demand is what the job would draw unconstrained; the power model
(rasd.backends.fake.powersim) applies the limit, smoothing floor and ramp rates on top.
"""

from __future__ import annotations

import math
import random
from array import array

from rasd.backends.fake.profiles import GpuProfile
from rasd.backends.fake.scenario import WorkloadSpec

_NOISE_LEN = 4099  # prime, so the noise pattern does not line up with step periods
RIPPLE_STEPS = _NOISE_LEN


class Workload:
    def __init__(self, spec: WorkloadSpec, profile: GpuProfile, gpu_count: int, seed: int):
        self.spec = spec
        rng = random.Random(f"workload:{spec.seed if spec.seed is not None else seed}")
        self.step_seconds = spec.step_seconds or round(rng.uniform(0.3, 3.0), 3)
        self.offsets = tuple(rng.uniform(0.0, spec.jitter_ms / 1000.0) for _ in range(gpu_count))
        limit = profile.power_limit_default_watts
        self.idle_watts = profile.idle_watts
        self.compute_watts = max(profile.idle_watts, spec.compute_power_ratio * limit)
        self.comm_watts = max(profile.idle_watts, spec.comm_power_ratio * limit)
        self.checkpoint_watts = profile.idle_watts * 1.4
        self._idle = frozenset(spec.idle_gpus) if spec.kind == "training" else frozenset(range(gpu_count))
        # +-1.5 % deterministic per-GPU ripple, drawn once (cheap to index per 5 ms step); packed
        # doubles, 33 KB a GPU where a tuple of floats took 130 KB (9 MB of a 72-GPU node)
        self._noise = tuple(
            array("d", (1.0 + rng.uniform(-0.015, 0.015) for _ in range(_NOISE_LEN))) for _ in range(gpu_count)
        )
        # gpu -> (first step, last step, base) of the run ``_run`` found last (all steps of the
        # power model's one step length); an idle GPU's one run is every step
        self._last_run: dict[int, tuple[int, int, float]] = {g: (0, 2**62, self.idle_watts) for g in self._idle}

    def running(self, gpu: int) -> bool:
        """Whether the job has a process on this GPU."""
        return gpu not in self._idle

    def in_checkpoint(self, t: float) -> bool:
        every = self.spec.checkpoint_every_seconds
        if every <= 0:
            return False
        return (t % every) >= every - self.spec.checkpoint_seconds

    def phase(self, gpu: int, t: float) -> str:
        """"idle", "checkpoint", "compute" or "comm"."""
        if gpu in self._idle:
            return "idle"
        if self.in_checkpoint(t):
            return "checkpoint"
        frac = ((t - self.offsets[gpu]) % self.step_seconds) / self.step_seconds
        return "compute" if frac < self.spec.compute_fraction else "comm"

    def demand_watts(self, gpu: int, t: float, step: int) -> float:
        """Unconstrained demand at ``t`` seconds; ``step`` indexes the ripple."""
        phase = self.phase(gpu, t)
        if phase == "compute":
            base = self.compute_watts
        elif phase == "comm":
            base = self.comm_watts
        elif phase == "checkpoint":
            base = self.checkpoint_watts
        else:
            base = self.idle_watts
        return base * self._noise[gpu][step % _NOISE_LEN]

    def ripple(self, gpu: int) -> array:
        """The GPU's ripple factors: step k's demand is a base demand times ``ripple[k % RIPPLE_STEPS]``."""
        return self._noise[gpu]

    def runs(self, gpu: int, first: int, last: int, step_seconds: float) -> list[tuple[float, int]]:
        """Steps ``first``..``last`` as consecutive runs (base demand, number of steps); each step's
        demand is ``base * ripple(gpu)[k % RIPPLE_STEPS]``, exactly what ``demand_watts`` computes
        for step k. The phase is decided per run of steps that provably share it (``_run``), not
        per step: the power model asks for hundreds of steps of every GPU a second."""
        cached = self._last_run.get(gpu)
        if cached is not None and cached[0] <= first and last <= cached[1]:
            return [(cached[2], last - first + 1)]  # the usual case: inside the last run
        out: list[tuple[float, int]] = []
        k = first
        while k <= last:
            base, end = self._run(gpu, k, step_seconds)
            end = end if end < last else last
            if out and out[-1][0] == base:  # steps near a phase edge come one at a time
                out[-1] = (base, out[-1][1] + end - k + 1)
            else:
                out.append((base, end - k + 1))
            k = end + 1
        return out

    def _run(self, gpu: int, k: int, step_seconds: float) -> tuple[float, int]:
        """(base demand at step ``k``, the last step ``e >= k`` up to which every step has that base).

        The base at ``k`` is computed as ``demands`` always has; the run's end is bounded from
        the exact position within the checkpoint and step periods (``%`` of floats is exact): the
        phase cannot change before the time left to its next edge has passed. The end stops two
        steps short of that edge, so the float rounding of ``k * step_seconds`` (far below a step)
        cannot put a step of the next phase inside the run; steps near an edge are runs of one.
        The last run is remembered: consecutive reads of a GPU mostly fall in it."""
        cached = self._last_run.get(gpu)
        if cached is not None and cached[0] <= k <= cached[1]:
            return cached[2], cached[1]
        spec = self.spec
        every = spec.checkpoint_every_seconds
        t = k * step_seconds
        in_checkpoint = False
        left = math.inf  # seconds until the phase may change
        if every > 0:
            ckpt_from = every - spec.checkpoint_seconds
            q = t % every
            in_checkpoint = q >= ckpt_from
            left = every - q if in_checkpoint else ckpt_from - q
        if in_checkpoint:
            base = self.checkpoint_watts
        else:
            period, cf = self.step_seconds, spec.compute_fraction
            q = (t - self.offsets[gpu]) % period
            if q / period < cf:
                base, left = self.compute_watts, min(left, cf * period - q)
            else:
                base, left = self.comm_watts, min(left, period - q)
        end = max(k, k + int(left / step_seconds) - 2)
        self._last_run[gpu] = (k, end, base)
        return base, end

    def mean_watts(self, gpu: int, limit_watts: float) -> float:
        """Long-run average draw under ``limit_watts`` (used to start temperatures settled)."""
        if gpu in self._idle:
            return self.idle_watts
        cf = self.spec.compute_fraction
        return cf * min(self.compute_watts, limit_watts) + (1 - cf) * min(self.comm_watts, limit_watts)

    def utilization(self, gpu: int, t: float) -> tuple[int, int]:
        """(GPU %, memory %) as nvmlDeviceGetUtilizationRates reports them (1 s-ish averages)."""
        phase = self.phase(gpu, t)
        if phase == "idle":
            return (0, 0)
        if phase == "checkpoint":
            return (3, 1)
        cf = self.spec.compute_fraction
        # the comm phase still runs NCCL kernels, so GPU utilization stays near 100 %
        return (97 + int(t) % 3, int(20 + 45 * cf))
