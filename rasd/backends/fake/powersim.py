"""Per-GPU power, temperature and energy, stepped on a fixed 5 ms grid from t = 0.

State advances only along the grid, so what a reader sees never depends on when it reads. The
chain per step: workload demand -> the board's own response (10 ms lag) -> enforced power limit ->
power-smoothing floor and ramp limits (Blackwell) -> delivered power. NVML's reporting is modelled
on top, as measured on A100/H100 (Yang et al., SC'24): the instant-power field refreshes every
100 ms with the mean of the last 25 ms of the period; the average-power reading is a 1 s mean.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from rasd.backends.fake.profiles import GpuProfile
from rasd.backends.fake.workload import Workload

STEP_SECONDS = 0.005
REFRESH_STEPS = 20  # 100 ms
INSTANT_WINDOW_STEPS = 5  # 25 ms
AVERAGE_WINDOW_STEPS = 200  # 1 s
SMOOTHING_PROFILES = 5  # NVML_POWER_SMOOTHING_MAX_NUM_PROFILES
SMOOTHING_MAX_FLOOR_PERCENT = 90.0
_RESPONSE = 1.0 - math.exp(-STEP_SECONDS / 0.010)
_THERMAL_TAU_SECONDS = 20.0
_THERMAL = 1.0 - math.exp(-STEP_SECONDS / _THERMAL_TAU_SECONDS)


@dataclass(slots=True)
class Smoothing:
    """Power-smoothing settings (NVML preset-profile parameters)."""

    enabled: bool = False
    floor_percent: float = 0.0  # of the enforced limit (TMP floor)
    ramp_up_watts_per_second: float = 0.0  # 0: unlimited
    ramp_down_watts_per_second: float = 0.0
    ramp_down_hysteresis_ms: float = 0.0


class GpuPowerSim:
    def __init__(
        self,
        gpu: int,
        profile: GpuProfile,
        workload: Workload,
        refresh_offset_steps: int,
        reset_times: list[float],
    ):
        self.gpu = gpu
        self.profile = profile
        self.workload = workload
        self.limit_watts = profile.power_limit_default_watts
        self.smoothing = Smoothing()
        self._offset = refresh_offset_steps % REFRESH_STEPS
        self._resets = deque(sorted(reset_times))
        self.step = 0  # state is for time step * STEP_SECONDS
        d0 = workload.demand_watts(gpu, 0.0, 0)
        self.raw_watts = min(d0, self.limit_watts)
        self.watts = self.raw_watts
        self.demand = d0
        settled = workload.mean_watts(gpu, self.limit_watts)
        self.temperature = self.target_temperature(settled)
        self.energy_mj = 0.0
        self._hold_s = 0.0
        self._recent: deque[float] = deque([self.watts] * INSTANT_WINDOW_STEPS, INSTANT_WINDOW_STEPS)
        self._window: deque[float] = deque([self.watts] * AVERAGE_WINDOW_STEPS, AVERAGE_WINDOW_STEPS)
        self._window_sum = self.watts * AVERAGE_WINDOW_STEPS
        # the last refresh before t = 0 sits on this GPU's 100 ms grid, like every later one
        first = -((-self._offset) % REFRESH_STEPS) * STEP_SECONDS
        self.instant_mw = int(self.watts * 1000)
        self.instant_at = first  # seconds since start of the last field-186 refresh
        self.average_mw = int(self.watts * 1000)
        self.average_at = first

    def target_temperature(self, watts: float) -> float:
        p = self.profile
        span = max(1.0, p.power_limit_default_watts - p.idle_watts)
        return p.temp_idle_celsius + (watts - p.idle_watts) / span * (p.temp_busy_celsius - p.temp_idle_celsius)

    def advance_to(self, t: float) -> None:
        """Step the model up to the last grid point at or before ``t`` seconds."""
        last = int(t / STEP_SECONDS + 1e-6)  # a clock's float error must not drop a step
        if last <= self.step:
            return
        gpu, wl, sm = self.gpu, self.workload, self.smoothing
        limit = self.limit_watts
        floor = sm.floor_percent / 100.0 * limit if sm.enabled else 0.0
        up = sm.ramp_up_watts_per_second * STEP_SECONDS if sm.enabled and sm.ramp_up_watts_per_second > 0 else math.inf
        down = sm.ramp_down_watts_per_second * STEP_SECONDS if sm.enabled and sm.ramp_down_watts_per_second > 0 else math.inf
        hyst_s = sm.ramp_down_hysteresis_ms / 1000.0 if sm.enabled else 0.0
        raw, out, temp, energy, hold = self.raw_watts, self.watts, self.temperature, self.energy_mj, self._hold_s
        recent, window = self._recent, self._window
        wsum = self._window_sum
        resets = self._resets
        demand = self.demand
        # target_temperature inlined (same arithmetic): a read steps about 20 times
        pr = self.profile
        t_idle, w_idle = pr.temp_idle_celsius, pr.idle_watts
        t_span = pr.temp_busy_celsius - pr.temp_idle_celsius
        span = max(1.0, pr.power_limit_default_watts - pr.idle_watts)
        offset = self._offset
        ramps = up != math.inf or down != math.inf  # else a step moves straight to its target
        next_reset = resets[0] if resets else math.inf
        # module constants as locals: each is looked up about 20 times a read
        step_s, response, thermal, refresh_steps = STEP_SECONDS, _RESPONSE, _THERMAL, REFRESH_STEPS
        first = self.step + 1
        k = first
        for demand in wl.demands(gpu, first, last, step_s):
            tk = k * step_s
            raw += (demand - raw) * response
            target = raw if raw < limit else limit
            if target < floor:
                target = floor
            if target > out:
                hold = 0.0
                out = out + up if ramps and target - out > up else target
            elif target < out:
                hold += step_s
                if hold >= hyst_s:
                    out = out - down if ramps and out - target > down else target
            if out > limit:
                out = limit
            temp += (t_idle + (out - w_idle) / span * t_span - temp) * thermal
            if tk >= next_reset:
                resets.popleft()
                next_reset = resets[0] if resets else math.inf
                energy = 0.0
            energy += out * step_s * 1000.0
            recent.append(out)
            wsum += out - window[0]
            window.append(out)
            if (k - offset) % refresh_steps == 0:
                self.instant_mw = int(sum(recent) / INSTANT_WINDOW_STEPS * 1000.0)
                self.instant_at = tk
                self.average_mw = int(wsum / AVERAGE_WINDOW_STEPS * 1000.0)
                self.average_at = tk
            k += 1
        self.step = last
        self.raw_watts, self.watts, self.temperature = raw, out, temp
        self.energy_mj, self._hold_s, self._window_sum, self.demand = energy, hold, wsum, demand

    @property
    def power_capped(self) -> bool:
        return self.demand > self.limit_watts
