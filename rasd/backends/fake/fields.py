"""``nvmlDeviceGetFieldValues`` for the fake node: per-entry results, like the real call.

Each entry gets its own ``nvmlReturn`` (NOT_SUPPORTED for ids the simulated GPU lacks) while the
call as a whole succeeds. Timestamps are Unix microseconds of the value's last refresh: the
instant-power field (186) keeps its timestamp for 100 ms, so a reader can drop repeats (or, with
``FakeNode(stamp_every_read=True)``, every read carries the call's time, as on NVIDIA's mock).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

from rasd.backends.nvml.core import plain_field_value
from rasd.backends.nvml.fields import FieldIds

if TYPE_CHECKING:
    from rasd.backends.fake.node import FakeNode

_SMOOTHING = (
    "smoothing_enabled",
    "smoothing_applied_floor",
    "smoothing_max_floor_percent",
    "smoothing_min_floor_percent",
    "smoothing_max_profiles",
    "smoothing_profile_floor_percent",
    "smoothing_profile_ramp_up",
    "smoothing_profile_ramp_down",
    "smoothing_profile_hysteresis",
    "smoothing_active_profile",
)

_NOT_SUPPORTED = object()
_INVALID = object()  # an entry whose scopeId names no such link
_ECC = {
    "ecc_sbe_volatile": ("ecc_corrected", True),
    "ecc_dbe_volatile": ("ecc_uncorrected", True),
    "ecc_sbe_aggregate": ("ecc_corrected", False),
    "ecc_dbe_aggregate": ("ecc_uncorrected", False),
}
_NVLINK = {"nvlink_replay": "replay", "nvlink_recovery": "recovery", "nvlink_crc_flit": "crc_flit",
           "nvlink_crc_data": "crc_data"}


# The one-by-one call each field stands in for: a call fault scripted on that call (an error, a
# hang) reaches the field's entries too, as one driver fault reaches both ways of reading it.
STANDS_FOR = {
    "power_average": "nvmlDeviceGetPowerUsage",
    "power_current_limit": "nvmlDeviceGetEnforcedPowerLimit",
    "power_default_limit": "nvmlDeviceGetPowerManagementDefaultLimit",
    "power_min_limit": "nvmlDeviceGetPowerManagementLimitConstraints",
    "power_max_limit": "nvmlDeviceGetPowerManagementLimitConstraints",
    "total_energy": "nvmlDeviceGetTotalEnergyConsumption",
    "pcie_replay_counter": "nvmlDeviceGetPcieReplayCounter",
    "ecc_sbe_volatile": "nvmlDeviceGetTotalEccErrors",
    "ecc_dbe_volatile": "nvmlDeviceGetTotalEccErrors",
    "ecc_sbe_aggregate": "nvmlDeviceGetTotalEccErrors",
    "ecc_dbe_aggregate": "nvmlDeviceGetTotalEccErrors",
    "remapped_correctable": "nvmlDeviceGetRemappedRows",
    "remapped_uncorrectable": "nvmlDeviceGetRemappedRows",
    "remapped_pending": "nvmlDeviceGetRemappedRows",
    "remapped_failure": "nvmlDeviceGetRemappedRows",
    "nvlink_replay": "nvmlDeviceGetNvLinkErrorCounter",
    "nvlink_recovery": "nvmlDeviceGetNvLinkErrorCounter",
    "nvlink_crc_flit": "nvmlDeviceGetNvLinkErrorCounter",
    "nvlink_crc_data": "nvmlDeviceGetNvLinkErrorCounter",
}


@lru_cache(maxsize=8)
def _names(base: Any) -> dict[int, tuple[str, int | None]]:
    """Field id -> (rasd's name, its link for ids that name one), in the numbering of the
    binding the fake stands in for."""
    ids = FieldIds.of(base)
    out: dict[int, tuple[str, int | None]] = {}
    for name in ids.__dataclass_fields__:
        fid = getattr(ids, name)
        if isinstance(fid, tuple):
            out.update((f, (name, link)) for link, f in enumerate(fid))
        elif fid is not None:
            out[fid] = (name, None)
    return out


def stands_for(base: Any, field_ids: Sequence[Any]) -> dict[str, list[int]]:
    """The calls the requested fields stand in for -> the entries (positions) that read them."""
    names = _names(base)
    out: dict[str, list[int]] = {}
    for pos, fid in enumerate(field_ids):
        got = names.get(fid[0] if type(fid) is tuple else fid)
        call = STANDS_FOR.get(got[0]) if got else None
        if call is not None:
            out.setdefault(call, []).append(pos)
    return out


def _us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


def field_values(
    base: Any, node: "FakeNode", gpu: int, field_ids: Sequence[Any], failed: dict[int, int] | None = None,
) -> Any:
    """An array of ``base.c_nvmlFieldValue_t``, one per requested id (``id`` or ``(id, scopeId)``);
    ``failed``: entry position -> the nvmlReturn a scripted fault gives it.

    Filled through a plain ctypes twin of the entry type over the same memory: pynvml's
    structures convert every member through Python, and the power sampler asks for field 186
    about ten times a second per GPU."""
    n = len(field_ids)
    values = (base.c_nvmlFieldValue_t * n)()
    twin = plain_field_value(base)
    fill = (twin * n).from_buffer(values) if twin is not None else values
    t = node.elapsed()
    sim = None  # stepped to now on the first entry that needs more than instant power
    now_us = _us(node.wall(t))
    names = _names(base)
    ok, unsupported = base.NVML_SUCCESS, base.NVML_ERROR_NOT_SUPPORTED
    invalid = base.NVML_ERROR_INVALID_ARGUMENT
    for pos, (entry, fid) in enumerate(zip(fill, field_ids)):
        scope = 0
        if type(fid) is tuple:
            entry.fieldId, entry.scopeId = fid
            fid, scope = entry.fieldId, entry.scopeId
        else:
            entry.fieldId = fid
        entry.timestamp = now_us
        if failed and pos in failed:
            entry.nvmlReturn = failed[pos]
            continue
        named = names.get(fid)
        got: Any = _NOT_SUPPORTED
        if named is not None:
            name, link = named
            if name == "power_instant":  # the sampler's read, many times a second: kept cheap
                got = ("ui", *node.instant_power(gpu)) if node.profile.instant_power else _NOT_SUPPORTED
            else:
                if sim is None:
                    sim = node.sim(gpu)
                got = _value(node, gpu, sim, t, name, scope if link is None else link)
        if got is _NOT_SUPPORTED or got is _INVALID:
            entry.nvmlReturn = unsupported if got is _NOT_SUPPORTED else invalid
            continue
        kind, value, at = got
        entry.nvmlReturn = ok
        if at is not None and not node.stamp_every_read:
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


def _value(node: "FakeNode", gpu: int, sim: Any, t: float, name: str, scope: int) -> Any:
    """(value kind, value, refresh time in seconds since start or None for "now")."""
    p = node.profile
    fx = node.effects
    # the health poll's every-second fields first, then the rest
    if name == "power_average":
        return ("ui", sim.average_mw, sim.average_at)
    if name == "memory_temp":
        if not p.memory_temperature:
            return _NOT_SUPPORTED
        return ("ui", node.temperature(gpu) + p.memory_temp_offset_celsius, None)
    if name == "recovery_action":
        return ("ui", fx.recovery_action(gpu, t), None) if p.recovery_action else _NOT_SUPPORTED
    if name == "power_current_limit":
        return ("ui", sim.limit_watts * 1000, None)
    if name == "total_energy":
        return ("ull", int(sim.energy_mj), None)
    if name in _NVLINK:
        if not 0 <= scope < p.nvlink_count:
            return _INVALID
        if not p.nvlink_error_counters:
            return _NOT_SUPPORTED
        return ("ull", fx.counter(gpu, f"nvlink:{scope}:{_NVLINK[name]}", t), None)
    if name == "pcie_replay_counter":
        return ("ui", fx.counter(gpu, "pcie_replay", t), None)
    if name == "nvlink_link_count":
        return ("ui", p.nvlink_count, None)
    if name == "power_min_limit":
        return ("ui", p.power_limit_min_watts * 1000, None)
    if name == "power_max_limit":
        return ("ui", p.power_limit_max_watts * 1000, None)
    if name == "power_default_limit":
        return ("ui", p.power_limit_default_watts * 1000, None)
    ecc = _ECC
    if name in ecc:
        key, volatile = ecc[name]
        return ("ull", fx.counter(gpu, key, t, volatile), None)
    if name.startswith("remapped_"):
        if not p.row_remapping:
            return _NOT_SUPPORTED
        pending, failure = fx.remap_flags(gpu, t)
        value = {
            "remapped_correctable": fx.counter(gpu, "remap_correctable", t, volatile=False),
            "remapped_uncorrectable": fx.counter(gpu, "remap_uncorrectable", t, volatile=False),
            "remapped_pending": int(pending),
            "remapped_failure": int(failure),
        }[name]
        return ("ui", value, None)
    if name in _SMOOTHING:
        return _smoothing_value(node, gpu, sim, name, scope) if p.power_smoothing else _NOT_SUPPORTED
    return _NOT_SUPPORTED


def _smoothing_value(node: "FakeNode", gpu: int, sim: Any, name: str, scope: int) -> Any:
    from rasd.backends.fake.powersim import SMOOTHING_MAX_FLOOR_PERCENT, SMOOTHING_PROFILES

    if name == "smoothing_enabled":
        return ("ui", int(node.smoothing_enabled[gpu]), None)
    if name == "smoothing_active_profile":
        return ("ui", node.smoothing_active[gpu], None)
    if name == "smoothing_max_profiles":
        return ("ui", SMOOTHING_PROFILES, None)
    if name == "smoothing_max_floor_percent":
        return ("ui", SMOOTHING_MAX_FLOOR_PERCENT, None)
    if name == "smoothing_min_floor_percent":
        return ("ui", 0, None)
    if name == "smoothing_applied_floor":
        sm = sim.smoothing
        floor = sm.floor_percent / 100.0 * sim.limit_watts if sm.enabled else 0.0
        return ("ui", round(floor), None)
    if not 0 <= scope < SMOOTHING_PROFILES:
        return _NOT_SUPPORTED
    preset = node.smoothing_presets[gpu][scope]
    value = {
        "smoothing_profile_floor_percent": preset.floor_percent,
        "smoothing_profile_ramp_up": preset.ramp_up_watts_per_second * 1000.0,
        "smoothing_profile_ramp_down": preset.ramp_down_watts_per_second * 1000.0,
        "smoothing_profile_hysteresis": preset.ramp_down_hysteresis_ms,
    }[name]
    return ("ui", round(value), None)
