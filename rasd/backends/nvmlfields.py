"""``nvmlDeviceGetFieldValues`` for the fake node: per-entry results, like the real call.

Each entry gets its own ``nvmlReturn`` (NOT_SUPPORTED for ids the simulated GPU lacks) while the
call as a whole succeeds. Timestamps are Unix microseconds of the value's last refresh: the
instant-power field (186) keeps its timestamp for 100 ms, so a reader can drop repeats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from rasd.backends.fake import FakeNode

# Field ids (pynvml NVML_FI_*); the numbers are the stable C ABI.
FI_ECC_SBE_VOL_TOTAL = 3
FI_ECC_DBE_VOL_TOTAL = 4
FI_ECC_SBE_AGG_TOTAL = 5
FI_ECC_DBE_AGG_TOTAL = 6
FI_MEMORY_TEMP = 82
FI_REMAPPED_COR = 142
FI_REMAPPED_UNC = 143
FI_REMAPPED_PENDING = 144
FI_REMAPPED_FAILURE = 145
FI_POWER_AVERAGE = 185
FI_POWER_INSTANT = 186
FI_POWER_MIN_LIMIT = 187
FI_POWER_MAX_LIMIT = 188
FI_POWER_DEFAULT_LIMIT = 189
FI_POWER_CURRENT_LIMIT = 190
FI_RECOVERY_ACTION = 230
FI_PS_ENABLED = 251
FI_PS_APPLIED_TMP_FLOOR = 255  # watts (unconfirmed unit)
FI_PS_MAX_PERCENT_TMP_FLOOR = 256
FI_PS_MIN_PERCENT_TMP_FLOOR = 257
FI_PS_MAX_NUM_PRESET_PROFILES = 259
FI_PS_PROFILE_PERCENT_TMP_FLOOR = 260  # scopeId = profile
FI_PS_PROFILE_RAMP_UP_RATE = 261  # mW/s
FI_PS_PROFILE_RAMP_DOWN_RATE = 262  # mW/s
FI_PS_PROFILE_RAMP_DOWN_HYST = 263  # ms
FI_PS_ACTIVE_PRESET_PROFILE = 264

_SMOOTHING_FIELDS = {
    FI_PS_ENABLED,
    FI_PS_APPLIED_TMP_FLOOR,
    FI_PS_MAX_PERCENT_TMP_FLOOR,
    FI_PS_MIN_PERCENT_TMP_FLOOR,
    FI_PS_MAX_NUM_PRESET_PROFILES,
    FI_PS_PROFILE_PERCENT_TMP_FLOOR,
    FI_PS_PROFILE_RAMP_UP_RATE,
    FI_PS_PROFILE_RAMP_DOWN_RATE,
    FI_PS_PROFILE_RAMP_DOWN_HYST,
    FI_PS_ACTIVE_PRESET_PROFILE,
}

_NOT_SUPPORTED = object()


def _us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


def field_values(base: Any, node: "FakeNode", gpu: int, field_ids: Sequence[Any]) -> Any:
    """An array of ``base.c_nvmlFieldValue_t``, one per requested id (``id`` or ``(id, scopeId)``)."""
    values = (base.c_nvmlFieldValue_t * len(field_ids))()
    t = node.elapsed()
    sim = node.sim(gpu)
    now_us = _us(node.wall(t))
    for i, fid in enumerate(field_ids):
        entry = values[i]
        try:
            entry.fieldId, entry.scopeId = fid
        except TypeError:
            entry.fieldId = fid
        entry.latencyUsec = 0
        entry.timestamp = now_us
        got = _value(node, gpu, sim, t, entry.fieldId, entry.scopeId)
        if got is _NOT_SUPPORTED:
            entry.nvmlReturn = base.NVML_ERROR_NOT_SUPPORTED
            continue
        kind, value, at = got
        entry.nvmlReturn = base.NVML_SUCCESS
        if at is not None:
            entry.timestamp = _us(node.wall(at))
        if kind == "ui":
            entry.valueType = base.NVML_VALUE_TYPE_UNSIGNED_INT
            entry.value.uiVal = int(value)
        elif kind == "ull":
            entry.valueType = base.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            entry.value.ullVal = int(value)
        else:
            entry.valueType = base.NVML_VALUE_TYPE_DOUBLE
            entry.value.dVal = float(value)
    return values


def _value(node: "FakeNode", gpu: int, sim: Any, t: float, fid: int, scope: int) -> Any:
    """(value kind, value, refresh time in seconds since start or None for "now")."""
    p = node.profile
    fx = node.effects
    if fid == FI_POWER_INSTANT:
        return ("ui", sim.instant_mw, sim.instant_at) if p.instant_power else _NOT_SUPPORTED
    if fid == FI_POWER_AVERAGE:
        return ("ui", sim.average_mw, sim.average_at)
    if fid == FI_MEMORY_TEMP:
        if not p.memory_temperature:
            return _NOT_SUPPORTED
        return ("ui", node.temperature(gpu) + p.memory_temp_offset_celsius, None)
    limits = {
        FI_POWER_MIN_LIMIT: p.power_limit_min_watts,
        FI_POWER_MAX_LIMIT: p.power_limit_max_watts,
        FI_POWER_DEFAULT_LIMIT: p.power_limit_default_watts,
        FI_POWER_CURRENT_LIMIT: sim.limit_watts,
    }
    if fid in limits:
        return ("ui", limits[fid] * 1000, None)
    if fid == FI_RECOVERY_ACTION:
        return ("ui", fx.recovery_action(gpu, t), None) if p.recovery_action else _NOT_SUPPORTED
    ecc = {
        FI_ECC_SBE_VOL_TOTAL: ("ecc_corrected", True),
        FI_ECC_DBE_VOL_TOTAL: ("ecc_uncorrected", True),
        FI_ECC_SBE_AGG_TOTAL: ("ecc_corrected", False),
        FI_ECC_DBE_AGG_TOTAL: ("ecc_uncorrected", False),
    }
    if fid in ecc:
        key, volatile = ecc[fid]
        return ("ull", fx.counter(gpu, key, t, volatile), None)
    if fid in (FI_REMAPPED_COR, FI_REMAPPED_UNC, FI_REMAPPED_PENDING, FI_REMAPPED_FAILURE):
        if not p.row_remapping:
            return _NOT_SUPPORTED
        pending, failure = fx.remap_flags(gpu, t)
        value = {
            FI_REMAPPED_COR: fx.counter(gpu, "remap_correctable", t, volatile=False),
            FI_REMAPPED_UNC: fx.counter(gpu, "remap_uncorrectable", t, volatile=False),
            FI_REMAPPED_PENDING: int(pending),
            FI_REMAPPED_FAILURE: int(failure),
        }[fid]
        return ("ui", value, None)
    if fid in _SMOOTHING_FIELDS:
        return _smoothing_value(node, gpu, sim, fid, scope) if p.power_smoothing else _NOT_SUPPORTED
    return _NOT_SUPPORTED


def _smoothing_value(node: "FakeNode", gpu: int, sim: Any, fid: int, scope: int) -> Any:
    from rasd.backends.powersim import SMOOTHING_MAX_FLOOR_PERCENT, SMOOTHING_PROFILES

    if fid == FI_PS_ENABLED:
        return ("ui", int(node.smoothing_enabled[gpu]), None)
    if fid == FI_PS_ACTIVE_PRESET_PROFILE:
        return ("ui", node.smoothing_active[gpu], None)
    if fid == FI_PS_MAX_NUM_PRESET_PROFILES:
        return ("ui", SMOOTHING_PROFILES, None)
    if fid == FI_PS_MAX_PERCENT_TMP_FLOOR:
        return ("ui", SMOOTHING_MAX_FLOOR_PERCENT, None)
    if fid == FI_PS_MIN_PERCENT_TMP_FLOOR:
        return ("ui", 0, None)
    if fid == FI_PS_APPLIED_TMP_FLOOR:
        sm = sim.smoothing
        floor = sm.floor_percent / 100.0 * sim.limit_watts if sm.enabled else 0.0
        return ("ui", round(floor), None)
    if not 0 <= scope < SMOOTHING_PROFILES:
        return _NOT_SUPPORTED
    preset = node.smoothing_presets[gpu][scope]
    value = {
        FI_PS_PROFILE_PERCENT_TMP_FLOOR: preset.floor_percent,
        FI_PS_PROFILE_RAMP_UP_RATE: preset.ramp_up_watts_per_second * 1000.0,
        FI_PS_PROFILE_RAMP_DOWN_RATE: preset.ramp_down_watts_per_second * 1000.0,
        FI_PS_PROFILE_RAMP_DOWN_HYST: preset.ramp_down_hysteresis_ms,
    }[fid]
    return ("ui", round(value), None)
