"""Per-GPU power, temperature and energy, stepped on a fixed 5 ms grid from t = 0.

State advances only along the grid, so what a reader sees never depends on when it reads. The
chain per step: workload demand -> the board's own response (10 ms lag) -> enforced power limit ->
power-smoothing floor and ramp limits (Blackwell) -> delivered power. NVML's reporting is modelled
on top, as measured on A100/H100 (Yang et al., SC'24): the instant-power field refreshes every
100 ms with the mean of the last 25 ms of the period; the average-power reading is a 1 s mean.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rasd.backends.fake import stepper
from rasd.backends.fake.profiles import GpuProfile
from rasd.backends.fake.workload import RIPPLE_STEPS, Workload

if TYPE_CHECKING:
    from rasd.backends.fake.instant import Board

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


# Steps whose raw draw is known but not yet folded into temperature, energy and the 1 s window:
# at most this many, then they are folded (bounds memory for a reader of instant power alone).
_PENDING_MAX = AVERAGE_WINDOW_STEPS
# Raw draw depends on the workload alone, so it is computed this many steps ahead of a read that
# needs more of it: one call of the stepper a second, not one every read.
_AHEAD = AVERAGE_WINDOW_STEPS
# With a native reader (``attach``) the raw draw is kept this far ahead of every reading that steps
# the model (a health poll a second), and extended once less than _NATIVE_MARGIN is left: the
# native reader answers from it and must not run out between two such readings.
_NATIVE_AHEAD = 2 * AVERAGE_WINDOW_STEPS
_NATIVE_MARGIN = 5 * AVERAGE_WINDOW_STEPS // 4
FAR_PAST = -(1 << 62)  # a step before any


def _mean_mw(watts: list[float]) -> int:
    """The refresh's value in mW: the mean of its steps, added left to right (``sum`` adds
    floats with compensation from Python 3.12 on; the native reader adds as this does)."""
    total = 0.0
    for w in watts:
        total += w
    return int(total / INSTANT_WINDOW_STEPS * 1000.0)


class GpuPowerSim:
    """One GPU's power model.

    A step has two parts. The board's raw response to demand (``raw``) depends on the workload
    alone, never on the limit or smoothing, so it is computed first, up to a second ahead of the
    reads (``_extend``). Delivered power and what integrates it (temperature, energy, the 1 s
    window) are folded in later (``_fold``), up to the time of a reading that needs them or of a
    change of the settings. The instant-power reading needs neither: without smoothing, delivered
    power is the raw draw clipped at the limit, so ``instant`` takes the refresh's five steps
    straight from the raw ones. The loops over steps are ``stepper.active``'s (C where built).
    Every value equals stepping the whole chain one step at a time.

    With a native reader attached (``attach``: rasd.backends.fake.instant), every raw draw computed
    is published to it, with each limit change and from which step it holds, so that it answers
    the instant-power field as ``instant`` would without running Python; raw draw is then kept
    further ahead (``_NATIVE_AHEAD``) so that it does not run out between two readings that step
    the model."""

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
        # a native reader's published state (``attach``), and how far ahead raw draw is kept
        self.board: Board | None = None
        self._eligible = False
        self._ahead, self._margin = _AHEAD, 0
        self._resets = deque(sorted(reset_times))
        self.step = 0  # state (delivered power and what integrates it) is for time step * STEP_SECONDS
        d0 = workload.demand_watts(gpu, 0.0, 0)
        self.raw_watts = min(d0, self.limit_watts)  # raw draw at step _raw_step
        self.watts = self.raw_watts
        self._raw_step = 0
        self._raws = array("d")  # raw draw of steps step + 1 .. _raw_step, not folded yet
        settled = workload.mean_watts(gpu, self.limit_watts)
        self.temperature = self.target_temperature(settled)
        self.energy_mj = 0.0
        self._hold_s = 0.0
        # delivered watts of the last AVERAGE_WINDOW_STEPS steps up to ``step``: a ring whose
        # oldest entry (step - AVERAGE_WINDOW_STEPS + 1) is at _wpos
        self._window = array("d", [self.watts]) * AVERAGE_WINDOW_STEPS
        self._wpos = 0
        self._window_sum = self.watts * AVERAGE_WINDOW_STEPS
        self._state = array("d", bytes(6 * 8))  # the fold's state, in and out (stepper.Stepper.fold)
        pr = profile  # target_temperature's terms, as the fold takes them
        self._consts = array("d", [pr.temp_idle_celsius, pr.idle_watts, max(1.0, pr.power_limit_default_watts - pr.idle_watts),
                                   pr.temp_busy_celsius - pr.temp_idle_celsius, STEP_SECONDS, _THERMAL])
        # the last refresh before t = 0 sits on this GPU's 100 ms grid, like every later one
        self._refresh_step = -((-self._offset) % REFRESH_STEPS)  # step of the last refresh known
        first = self._refresh_step * STEP_SECONDS
        self.instant_mw = int(self.watts * 1000)
        self.instant_at = first  # seconds since start of the last field-186 refresh
        self.average_mw = int(self.watts * 1000)
        self.average_at = first

    @property
    def refresh_offset(self) -> int:
        """Steps from the 100 ms grid to this GPU's refreshes."""
        return self._offset

    # ------------------------------------------------------------------ a native reader

    def attach(self, board: "Board", eligible: bool) -> None:
        """Publish to ``board`` from now on: every raw draw computed, every limit change, and
        whether it may answer (``eligible``, and no power smoothing)."""
        self.board = board
        self._ahead, self._margin = _NATIVE_AHEAD, _NATIVE_MARGIN
        board.put(self.step + 1, self._raws, len(self._raws))
        board.limit(FAR_PAST, self.limit_watts, self._refresh_step, self.instant_mw, forget=True)
        self.set_eligible(eligible)

    def set_eligible(self, eligible: bool) -> None:
        self._eligible = eligible
        if self.board is not None:
            self.board.plain(eligible and not self.smoothing.enabled)

    def set_limit(self, watts: float, now: Callable[[], float]) -> None:
        """The enforced limit from the step after ``now()``'s on: the model is stepped to then."""
        self._change(now, watts, None)

    def set_smoothing(self, smoothing: Smoothing, now: Callable[[], float]) -> None:
        """Power-smoothing settings from the step after ``now()``'s on: the model is stepped to then."""
        self._change(now, self.limit_watts, smoothing)

    def _change(self, now: Callable[[], float], watts: float, smoothing: Smoothing | None) -> None:
        board = self.board
        if board is not None:
            # Reads go to the model (which waits for the caller's lock) until the change is
            # published; the time of the change is taken after that, so a native read answered
            # before it was for a refresh up to that time, with the rules that held then.
            board.plain(False)
        self.advance_to(now())
        self.limit_watts = watts
        if smoothing is not None:
            self.smoothing = smoothing
        if board is not None:
            # with smoothing changed, delivered power up to now followed the old rules: the
            # model answers for those steps
            board.limit(self.step + 1, watts, self._refresh_step, self.instant_mw, forget=smoothing is not None)
            self.set_eligible(self._eligible)

    # ------------------------------------------------------------------ the model

    def target_temperature(self, watts: float) -> float:
        p = self.profile
        span = max(1.0, p.power_limit_default_watts - p.idle_watts)
        return p.temp_idle_celsius + (watts - p.idle_watts) / span * (p.temp_busy_celsius - p.temp_idle_celsius)

    def window(self) -> list[float]:
        """Delivered watts of the last AVERAGE_WINDOW_STEPS steps up to ``step``, oldest first."""
        return self._newest(AVERAGE_WINDOW_STEPS)

    def _newest(self, n: int) -> list[float]:
        """The last ``n`` (at most AVERAGE_WINDOW_STEPS) delivered watts up to ``step``, oldest first."""
        w, p = self._window, self._wpos
        start = p - n
        return w[start:p].tolist() if start >= 0 else w[start:].tolist() + w[:p].tolist()

    @staticmethod
    def _last_step(t: float) -> int:
        return int(t / STEP_SECONDS + 1e-6)  # a clock's float error must not drop a step

    @property
    def demand(self) -> float:
        """The workload's demand at ``step``, in W."""
        return self.workload.demand_watts(self.gpu, self.step * STEP_SECONDS, self.step)

    def advance_to(self, t: float) -> None:
        """Step the whole model up to the last grid point at or before ``t`` seconds."""
        last = self._last_step(t)
        if last > self._raw_step - self._margin:
            self._extend(last + self._ahead)
        if last > self.step:
            self._fold(last)

    def instant(self, t: float) -> tuple[int, float]:
        """(instant power in mW, its refresh time in seconds since start) as NVML's field 186
        reads at ``t``: the mean of the last INSTANT_WINDOW_STEPS steps before the last refresh."""
        last = self._last_step(t)
        if last > self._raw_step - self._margin:
            self._extend(last + self._ahead)
        r = last - (last - self._offset) % REFRESH_STEPS
        if r > self._refresh_step:
            if self.smoothing.enabled:  # delivered power depends on its own past: step it all
                self.advance_to(t)
                return self.instant_mw, self.instant_at
            step, limit = self.step, self.limit_watts
            at = r - step - INSTANT_WINDOW_STEPS  # the first of the refresh's steps, in _raws
            if at >= 0:
                recent = [x if x < limit else limit for x in self._raws[at:at + INSTANT_WINDOW_STEPS]]
            else:  # some of them are folded already: those are in the window
                recent = self._newest(-at) + [x if x < limit else limit for x in self._raws[:r - step]]
            self.instant_mw = _mean_mw(recent)
            self.instant_at = r * STEP_SECONDS
            self._refresh_step = r
            if self.board is not None:
                self.board.answered(r, self.instant_mw)
        if last - self.step > _PENDING_MAX:
            self._fold(last)
        return self.instant_mw, self.instant_at

    def _extend(self, last: int) -> None:
        """Raw draw for steps _raw_step + 1 .. last (the board's 10 ms response to demand)."""
        first, wl = self._raw_step + 1, self.workload
        runs = wl.runs(self.gpu, first, last, STEP_SECONDS)
        self.raw_watts = stepper.active.raw(self.raw_watts, runs, wl.ripple(self.gpu), first % RIPPLE_STEPS,
                                            _RESPONSE, self._raws)
        self._raw_step = last
        if self.board is not None:
            self.board.put(first, self._raws, last - first + 1)

    def _fold(self, last: int) -> None:
        """Delivered power, temperature, energy and the refreshed readings up to step ``last``
        (at most ``_raw_step``)."""
        first = self.step + 1
        r = last - (last - self._offset) % REFRESH_STEPS  # the last refresh up to ``last``
        cut = r - first + 1 if r >= first else 0  # its place among the pending steps (1-based)
        resets = self._resets
        if self.smoothing.enabled or (resets and resets[0] <= last * STEP_SECONDS):
            self._fold_stepwise(first, last, r)
        else:
            # No smoothing, no reset: the target is the raw draw clipped at the limit, the floor
            # is 0 (raw draw is positive), no ramp holds it back, so delivered power is the target.
            st = self._state
            st[0], st[1], st[2], st[3], st[4] = self.watts, self.temperature, self.energy_mj, self._hold_s, self._window_sum
            self._wpos = stepper.active.fold(self._raws, last - self.step, self.limit_watts, self._window, self._wpos,
                                             st, cut, self._consts)
            self.watts, self.temperature, self.energy_mj, self._hold_s, self._window_sum = st[0], st[1], st[2], st[3], st[4]
        if cut:
            newest = self._newest(last - r + INSTANT_WINDOW_STEPS)
            self.instant_mw = _mean_mw(newest[:INSTANT_WINDOW_STEPS])
            self.instant_at = r * STEP_SECONDS
            self.average_mw = int(self._state[5] / AVERAGE_WINDOW_STEPS * 1000.0)
            self.average_at = r * STEP_SECONDS
            self._refresh_step = r
            if self.board is not None:
                self.board.answered(r, self.instant_mw)
        del self._raws[:last - self.step]
        self.step = last

    def _fold_stepwise(self, first: int, last: int, r: int) -> None:
        """``_fold``'s steps with every rule: the smoothing floor, ramp limits and hysteresis,
        resets of the energy counter. Leaves the window sum after step ``r`` in ``_state[5]``."""
        sm, limit = self.smoothing, self.limit_watts
        floor = sm.floor_percent / 100.0 * limit if sm.enabled else 0.0
        up = sm.ramp_up_watts_per_second * STEP_SECONDS if sm.enabled and sm.ramp_up_watts_per_second > 0 else math.inf
        down = sm.ramp_down_watts_per_second * STEP_SECONDS if sm.enabled and sm.ramp_down_watts_per_second > 0 else math.inf
        hyst_s = sm.ramp_down_hysteresis_ms / 1000.0 if sm.enabled else 0.0
        ramps = up != math.inf or down != math.inf  # else a step moves straight to its target
        out, temp, energy, hold, wsum = self.watts, self.temperature, self.energy_mj, self._hold_s, self._window_sum
        resets = self._resets
        next_reset = resets[0] if resets else math.inf
        t_idle, w_idle, span, t_span, step_s, thermal = self._consts
        window, wpos, wlen = self._window, self._wpos, len(self._window)
        k = first
        for raw in self._raws[:last - self.step]:
            tk = k * step_s
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
            wsum += out - window[wpos]
            window[wpos] = out
            wpos = wpos + 1 if wpos + 1 < wlen else 0
            if k == r:
                self._state[5] = wsum
            k += 1
        self._wpos = wpos
        self.watts, self.temperature, self.energy_mj, self._hold_s, self._window_sum = out, temp, energy, hold, wsum

    @property
    def power_capped(self) -> bool:
        return self.demand > self.limit_watts
