"""The simulated job's power demand: a pure function of (GPU, seconds since start) and the seed.

Training alternates a compute phase (demand near or above the power limit) with a communication
phase (much lower), every GPU in phase with a few milliseconds of per-GPU offset, and drops near
idle during periodic checkpoints. Demand is what the job would draw unconstrained; the power model
(rasd.backends.fake.powersim) applies the limit, smoothing floor and ramp rates on top.
"""

from __future__ import annotations

import random
from array import array

from rasd.backends.fake.profiles import GpuProfile
from rasd.backends.fake.scenario import WorkloadSpec

_NOISE_LEN = 4099  # prime, so the noise pattern does not line up with step periods


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

    def demands(self, gpu: int, first: int, last: int, step_seconds: float) -> list[float]:
        """``demand_watts`` at steps ``first``..``last`` (inclusive) of ``step_seconds`` each, in
        one call: the same arithmetic with the per-step attribute look-ups and calls hoisted (the
        power model asks for about 20 steps on every read of a GPU)."""
        noise, n = self._noise[gpu], _NOISE_LEN
        if gpu in self._idle:
            idle = self.idle_watts
            return [idle * noise[k % n] for k in range(first, last + 1)]
        spec = self.spec
        every, ckpt = spec.checkpoint_every_seconds, spec.checkpoint_seconds
        ckpt_from = every - ckpt
        off, period, cf = self.offsets[gpu], self.step_seconds, spec.compute_fraction
        compute, comm, checkpoint = self.compute_watts, self.comm_watts, self.checkpoint_watts
        out = []
        for k in range(first, last + 1):
            t = k * step_seconds
            if every > 0 and (t % every) >= ckpt_from:
                base = checkpoint
            elif ((t - off) % period) / period < cf:
                base = compute
            else:
                base = comm
            out.append(base * noise[k % n])
        return out

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
