"""Control of one GPU: power limits, power smoothing, and the processes using it."""

from __future__ import annotations

import ctypes

from rasd.backends.errors import ControlError, GpuLost
from rasd.backends.nvml.core import HandleCore, classify, nvml_errors
from rasd.model import PowerLimits


class Control(HandleCore):
    """Power limits, power smoothing and running processes of one GPU."""

    def _handle(self) -> object:
        """The raw handle for a setting; a GPU that could not be opened refuses settings."""
        if self.raw is None:
            raise ControlError(f"GPU {self.index}: not opened ({self.unopened})")
        return self.raw

    def power_limits(self) -> PowerLimits:
        lib, h = self.lib, self._handle()
        try:
            lo, hi = lib.nvmlDeviceGetPowerManagementLimitConstraints(h)
            return PowerLimits(
                limit_watts=lib.nvmlDeviceGetPowerManagementLimit(h) / 1000.0,
                enforced_watts=lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
                default_watts=lib.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0,
                min_watts=lo / 1000.0,
                max_watts=hi / 1000.0,
            )
        except lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: cannot read power limits: {e}") from None

    def set_power_limit(self, watts: float) -> float:
        """nvmlDeviceSetPowerManagementLimit (root, not persistent), then read back.

        The Python wrapper does not check every return path, so the read-back is the truth."""
        lib, h = self.lib, self._handle()
        mw = int(round(watts * 1000))
        try:
            lib.nvmlDeviceSetPowerManagementLimit(h, mw)
            got = lib.nvmlDeviceGetPowerManagementLimit(h)
        except lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: setting the power limit to {watts:.0f} W failed: {e}") from None
        if abs(got - mw) > 1000:
            raise ControlError(
                f"GPU {self.index}: power limit reads back {got / 1000:.0f} W after setting {watts:.0f} W"
            )
        return got / 1000.0

    def smoothing_supported(self) -> bool:
        """True where the smoothing fields answer and the binding numbers them as the driver does."""
        lib, fid = self.lib, self.fids.smoothing_enabled
        if fid is None or self.adapter.smoothing_refused is not None or self.raw is None:
            return False
        try:
            vals = lib.nvmlDeviceGetFieldValues(self.raw, [fid])
        except lib.NVMLError:
            return False
        return bool(vals) and vals[0].nvmlReturn == lib.NVML_SUCCESS

    def apply_smoothing(
        self,
        floor_percent: float,
        ramp_up_watts_per_second: float,
        ramp_down_watts_per_second: float,
        hysteresis_ms: float,
        profile_id: int = 0,
    ) -> dict[str, float]:
        """Power-smoothing preset profile (Blackwell+, R570+, root): set params, activate, enable.

        Takes % / W/s / ms. nvml.h (nvmlDevicePowerSmoothingUpdatePresetProfileParam) wants ramp
        rates in mW/s and reports them back in mW/s (the profile ramp fields), so both convert.
        pynvml declares no argument types for these calls: the structs go by reference, as the C
        prototypes take pointers (a struct passed by value reaches the C side as garbage)."""
        lib, h = self.lib, self._handle()
        if self.adapter.smoothing_refused is not None:
            raise ControlError(f"GPU {self.index}: power smoothing refused: {self.adapter.smoothing_refused}")
        params = (
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR, floor_percent),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE, ramp_up_watts_per_second * 1000.0),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE, ramp_down_watts_per_second * 1000.0),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_HYSTERESIS, hysteresis_ms),
        )
        try:
            for param, value in params:
                prof = lib.c_nvmlPowerSmoothingProfile_v1_t()
                prof.profileId, prof.paramId, prof.value = profile_id, param, float(value)
                lib.nvmlDevicePowerSmoothingUpdatePresetProfileParam(h, ctypes.byref(prof))
            prof = lib.c_nvmlPowerSmoothingProfile_v1_t()
            prof.profileId = profile_id
            lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, ctypes.byref(prof))
            self._smoothing_state(True)
        except lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: applying power smoothing failed: {e}") from None
        return self.smoothing_readback(profile_id)

    def disable_smoothing(self) -> None:
        try:
            self._smoothing_state(False)
        except self.lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: disabling power smoothing failed: {e}") from None

    def _smoothing_state(self, on: bool) -> None:
        lib = self.lib
        st = lib.c_nvmlPowerSmoothingState_v1_t()
        st.state = lib.NVML_FEATURE_ENABLED if on else lib.NVML_FEATURE_DISABLED
        lib.nvmlDevicePowerSmoothingSetState(self._handle(), ctypes.byref(st))

    def smoothing_readback(self, profile_id: int | None = None) -> dict[str, float]:
        """The smoothing fields in rasd's units (ramp rates converted from mW/s to W/s).

        Profile parameters are per profile (the field's scopeId); default: the active profile."""
        if self.adapter.smoothing_refused is not None:
            return {}
        f = self.fids
        if profile_id is None:
            active = self._fields((f.smoothing_active_profile,)) if f.smoothing_active_profile else {}
            got_active = active.get(f.smoothing_active_profile or -1)
            profile_id = int(got_active[0]) if got_active else 0
        node = {"enabled": f.smoothing_enabled}
        per_profile = {
            "floor_percent": f.smoothing_profile_floor_percent,
            "ramp_up_watts_per_second": f.smoothing_profile_ramp_up,
            "ramp_down_watts_per_second": f.smoothing_profile_ramp_down,
            "hysteresis_ms": f.smoothing_profile_hysteresis,
        }
        ids = [fid for fid in node.values()] + [
            (fid, profile_id) if fid is not None else None for fid in per_profile.values()
        ]
        got = self._fields(tuple(ids))
        out: dict[str, float] = {}
        for key, fid in {**node, **per_profile}.items():
            if fid is not None and fid in got:
                v = got[fid][0]
                out[key] = v / 1000.0 if key.startswith("ramp") else v
        return out

    def running_pids(self) -> list[int]:
        """nvmlDeviceGetComputeRunningProcesses -> PIDs using this GPU (empty when idle)."""
        lib = self.lib
        try:
            procs = lib.nvmlDeviceGetComputeRunningProcesses(*self._args((self.raw,)))
        except lib.NVMLError_GpuIsLost as e:
            raise GpuLost(self.index, str(e)) from None
        except nvml_errors(lib) as e:
            raise ControlError(f"GPU {self.index}: cannot list processes: {e}", classify(lib, e).value) from None
        return [int(p.pid) for p in procs]
