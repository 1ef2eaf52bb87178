"""A simulated GPU node, and the fake NVML module that reads it.

``FakeNode`` holds what a real node would: GPUs of one model (profile), a running job (workload),
their power, temperature and energy (powersim), and a scripted scenario of faults (effects).
Everything it reports is a function of the seed and of the seconds elapsed on ``clock`` since the
node was created, so the same seed and the same reads give the same results.

``FakeNvml(node, base)`` (rasd.backends.fake.nvml) is a drop-in for the ``pynvml`` module on top
of it; ``base`` is the real pynvml module, whose constants, structs and error classes it reuses.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rasd.backends.fake.effects import Effects
from rasd.backends.fake.nvml import FakeNvml
from rasd.backends.fake.powersim import REFRESH_STEPS, SMOOTHING_PROFILES, GpuPowerSim, Smoothing
from rasd.backends.fake.profiles import ALIASES, GpuProfile, get_profile
from rasd.backends.fake.scenario import (
    Scenario,
    ScenarioError,
    SdcFault,
    WorkloadSpec,
    load_scenario,
)
from rasd.backends.fake.workload import Workload

DEFAULT_PROFILE = "h100-sxm-80gb"
DEFAULT_GPUS = 8

__all__ = ["FakeNode", "FakeNvml", "KernelLog", "GpuIdentityInfo"]


@dataclass(frozen=True, slots=True)
class GpuIdentityInfo:
    uuid: str
    serial: str
    bus: int
    vbios: str
    pid: int  # the simulated job's process on this GPU

    @property
    def pci_bus_id(self) -> str:
        """NVML's form, e.g. 00000000:18:00.0."""
        return f"00000000:{self.bus:02X}:00.0"

    @property
    def kernel_pci(self) -> str:
        """The driver's form in Xid lines, e.g. 0000:18:00."""
        return f"0000:{self.bus:02x}:00"


@dataclass(slots=True)
class SmoothingPreset:
    floor_percent: float
    ramp_up_watts_per_second: float
    ramp_down_watts_per_second: float
    ramp_down_hysteresis_ms: float


class KernelLog:
    """Driver lines (as ``dmesg``/``/dev/kmsg`` messages) for scripted Xids, as they fall due."""

    def __init__(self, node: "FakeNode"):
        self._node = node
        self._read_until = float("-inf")

    def read_new(self) -> list[str]:
        """Lines for Xids that became due since the previous call, oldest first."""
        with self._node.lock:
            now = self._node.elapsed()
            due = self._node.effects.xids_between(self._read_until, now)
            self._read_until = now
        ids = self._node.identities
        return [
            f"NVRM: Xid (PCI:{ids[x.gpu].kernel_pci}): {x.xid}, pid={x.pid}, name={x.process}, {x.message}"
            for x in due
        ]


class FakeNode:
    """A node of ``gpu_count`` simulated GPUs. Explicit arguments win over the scenario's
    ``[node]``/``[workload]`` tables, which win over the defaults (8 x h100-sxm-80gb, seed 0,
    a training job)."""

    def __init__(
        self,
        profile: str | None = None,
        gpu_count: int | None = None,
        seed: int | None = None,
        scenario: Scenario | str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        workload: WorkloadSpec | str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stamp_every_read: bool = False,
    ):
        """``stamp_every_read``: field values carry the time of the call, as NVIDIA's mock NVML
        stamps them, instead of the time the value was last refreshed (about every 100 ms for
        instant power on real drivers); whether real drivers do the latter is unverified."""
        self.stamp_every_read = stamp_every_read
        if isinstance(scenario, (str, Path)):
            scenario = load_scenario(scenario)
        self.scenario = scenario
        spec = scenario.node if scenario else None
        key = profile or (spec.profile if spec else None) or DEFAULT_PROFILE
        self.profile: GpuProfile = get_profile(ALIASES.get(key, key))
        self.gpu_count: int = gpu_count or (spec.gpus if spec else None) or DEFAULT_GPUS
        self.seed: int = seed if seed is not None else ((spec.seed if spec else None) or 0)
        if scenario is not None:
            problems = scenario.check_node(self.gpu_count, self.profile.key)
            if problems:
                raise ScenarioError(scenario.source, problems)
        self.workload_spec = self._workload_spec(workload, scenario)
        self.clock = clock
        self.sleep = sleep
        self._t0 = clock()
        self._wall0 = wall_clock()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        rng = random.Random(f"node:{self.seed}:{self.profile.key}")
        self.identities = tuple(self._identity(rng, g) for g in range(self.gpu_count))
        self.effects = Effects(scenario, self.gpu_count, self.seed)
        self.workload = Workload(self.workload_spec, self.profile, self.gpu_count, self.seed)
        self._sims = [
            GpuPowerSim(g, self.profile, self.workload, rng.randrange(REFRESH_STEPS), self.effects.reset_times(g))
            for g in range(self.gpu_count)
        ]
        self.smoothing_enabled = [False] * self.gpu_count
        self.smoothing_active = [0] * self.gpu_count
        self.smoothing_presets = [
            [SmoothingPreset(50.0 + 10.0 * i, 2000.0 / (i + 1), 2000.0 / (i + 1), 500.0 * (i + 1)) for i in range(SMOOTHING_PROFILES)]
            for _ in range(self.gpu_count)
        ]
        self.kernel_log = KernelLog(self)
        subscribe = getattr(clock, "subscribe", None)
        if callable(subscribe):
            subscribe(self.notify)

    @staticmethod
    def _workload_spec(workload: WorkloadSpec | str | None, scenario: Scenario | None) -> WorkloadSpec:
        if isinstance(workload, WorkloadSpec):
            return workload
        base = scenario.workload if scenario and scenario.workload else WorkloadSpec()
        if workload is None:
            return base
        if workload not in ("training", "idle"):
            raise ValueError(f"unknown workload {workload!r}; use 'training' or 'idle'")
        return WorkloadSpec(**{**{f: getattr(base, f) for f in base.__slots__}, "kind": workload})

    def _identity(self, rng: random.Random, gpu: int) -> GpuIdentityInfo:
        p = self.profile
        bus = p.pci_buses[gpu] if gpu < len(p.pci_buses) else 0x10 + gpu * 0x10 % 0xF0
        return GpuIdentityInfo(
            uuid="GPU-" + str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            serial=str(rng.randrange(1_320_000_000_000, 1_659_999_999_999)),
            bus=bus,
            vbios=f"{p.vbios_prefix}.{rng.randrange(1, 0x40):02X}",
            pid=rng.randrange(20_000, 4_000_000),
        )

    # ------------------------------------------------------------------ time

    @property
    def start(self) -> float:
        """The node's t = 0 on its clock."""
        return self._t0

    def elapsed(self) -> float:
        """Seconds since the node was created, on its clock."""
        return self.clock() - self._t0

    def wall(self, t: float) -> float:
        """Unix time of ``t`` seconds since start."""
        return self._wall0 + t

    def notify(self) -> None:
        """Wake event waiters (the clock moved, so an Xid may have fallen due)."""
        with self.changed:
            self.changed.notify_all()

    # ------------------------------------------------------------------ state

    def sim(self, gpu: int) -> GpuPowerSim:
        """The GPU's power model, advanced to now."""
        with self.lock:
            s = self._sims[gpu]
            s.advance_to(self.elapsed())
            return s

    def model(self, gpu: int) -> GpuPowerSim:
        """The GPU's power model as it stands (not stepped: take ``lock`` to use it)."""
        return self._sims[gpu]

    def models(self) -> tuple[GpuPowerSim, ...]:
        return tuple(self._sims)

    def instant_power(self, gpu: int) -> tuple[int, float]:
        """(field 186 in mW, seconds since start of its last refresh) right now; steps only what
        that reading needs (``GpuPowerSim.instant``)."""
        with self.lock:
            return self._sims[gpu].instant(self.elapsed())

    def lost(self, gpu: int) -> bool:
        # asked before every call the GPU answers: one without scripted events is never lost
        return not self.effects.quiet[gpu] and self.effects.lost(gpu, self.elapsed())

    def temperature(self, gpu: int) -> float:
        """GPU die temperature in C: power-driven, plus any scripted thermal event."""
        s = self.sim(gpu)
        rise, _ = self.effects.thermal(gpu, self.elapsed())
        return s.temperature + rise

    def conditions(self, gpu: int) -> tuple[float, float]:
        """(power in W, temperature in C) right now: what an SDC fault's thresholds compare with."""
        with self.lock:
            return self.sim(gpu).watts, self.temperature(gpu)

    def sdc_faults(self, gpu: int) -> tuple[SdcFault, ...]:
        """SDC faults scripted for this GPU and active now."""
        if self.scenario is None:
            return ()
        t = self.elapsed()
        return tuple(f for f in self.scenario.sdc_faults if f.gpu == gpu and f.active(t))

    def set_power_limit(self, gpu: int, watts: float) -> None:
        with self.lock:
            self._sims[gpu].set_limit(watts, self.elapsed)

    def apply_smoothing(self, gpu: int) -> None:
        """Push the GPU's enabled state and active preset into its power model from now on."""
        with self.lock:
            p = self.smoothing_presets[gpu][self.smoothing_active[gpu]]
            self._sims[gpu].set_smoothing(Smoothing(
                enabled=self.smoothing_enabled[gpu],
                floor_percent=p.floor_percent,
                ramp_up_watts_per_second=p.ramp_up_watts_per_second,
                ramp_down_watts_per_second=p.ramp_down_watts_per_second,
                ramp_down_hysteresis_ms=p.ramp_down_hysteresis_ms,
            ), self.elapsed)

