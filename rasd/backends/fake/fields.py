"""``nvmlDeviceGetFieldValues`` for the fake node: per-entry results, like the real call.

Each entry gets its own ``nvmlReturn`` (NOT_SUPPORTED for ids the simulated GPU lacks) while the
call as a whole succeeds. Timestamps are Unix microseconds of the value's last refresh: the
instant-power field (186) keeps its timestamp for 100 ms, so a reader can drop repeats (or, with
``FakeNode(stamp_every_read=True)``, every read carries the call's time, as on NVIDIA's mock).
"""

from __future__ import annotations

import ctypes
import struct
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Sequence

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


_U32, _U64 = 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF  # what ctypes keeps of an int put in c_uint / c_ulonglong
# nvml.h's nvmlFieldValue_t: fieldId, scopeId (unsigned int), timestamp, latencyUsec (long long),
# valueType, nvmlReturn (enums), then the 8-byte value union at offset 32
_LAYOUT = {"fieldId": 0, "scopeId": 4, "timestamp": 8, "latencyUsec": 16, "valueType": 24, "nvmlReturn": 28, "value": 32}
_HEAD = "=IIqqII"
_PACK = {  # one entry at a time, by the value's kind ("" for an entry without a value)
    "ui": struct.Struct(_HEAD + "I4x"), "ull": struct.Struct(_HEAD + "Q"), "d": struct.Struct(_HEAD + "d"),
    "": struct.Struct(_HEAD + "8x"),
}


@lru_cache(maxsize=8)
def _packs(base: Any) -> bool:
    """Whether the binding's ``c_nvmlFieldValue_t`` has nvml.h's layout, so entries can be
    packed straight into the array's memory (one ``struct.pack_into`` an entry, where setting
    its members one by one through ctypes costs several times that)."""
    t = base.c_nvmlFieldValue_t
    try:
        return ctypes.sizeof(t) == 40 and all(getattr(t, f).offset == o for f, o in _LAYOUT.items())
    except (AttributeError, TypeError):
        return False


@lru_cache(maxsize=8)
def _codes(base: Any) -> tuple[int, int, int, dict[str, int], int | None]:
    """(SUCCESS, NOT_SUPPORTED, INVALID_ARGUMENT, value kind -> valueType, the instant-power
    field's id) in the binding's numbers."""
    types = {"ui": base.NVML_VALUE_TYPE_UNSIGNED_INT, "ull": base.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
             "d": base.NVML_VALUE_TYPE_DOUBLE}
    instant = next((fid for fid, (name, _) in _names(base).items() if name == "power_instant"), None)
    return base.NVML_SUCCESS, base.NVML_ERROR_NOT_SUPPORTED, base.NVML_ERROR_INVALID_ARGUMENT, types, instant


@lru_cache(maxsize=64)
def _array(base: Any, n: int) -> Any:
    return base.c_nvmlFieldValue_t * n


def instant_reader(base: Any, node: "FakeNode") -> tuple[int, Callable[[int], Any]] | None:
    """(the instant-power field's id, a function of the GPU that answers a request of that field
    alone as ``field_values`` does), with everything that never changes looked up once: the
    power sampler makes this call ten times a second a GPU. None where the short way does not
    apply (no such field or reading, stamps of the call's time, another entry layout)."""
    ok, _, _, types, instant_id = _codes(base)
    if instant_id is None or not node.profile.instant_power or node.stamp_every_read or not _packs(base):
        return None
    one, pack, ui, wall0, instant = _array(base, 1), _PACK["ui"].pack_into, types["ui"], node.wall(0.0), node.instant_power

    def read(gpu: int) -> Any:
        mw, at = instant(gpu)
        values = one()
        pack(values, 0, instant_id, 0, int(round((wall0 + at) * 1_000_000)), 0, ui, ok, mw & _U32)
        return values

    return instant_id, read


def field_values(
    base: Any, node: "FakeNode", gpu: int, field_ids: Sequence[Any], failed: dict[int, int] | None = None,
) -> Any:
    """An array of ``base.c_nvmlFieldValue_t``, one per requested id (``id`` or ``(id, scopeId)``);
    ``failed``: entry position -> the nvmlReturn a scripted fault gives it.

    The instant-power entry is answered from ``FakeNode.instant_power`` (which steps only what it
    needs), and the model is stepped in full only for entries that need more; a request of that
    field alone, the power sampler's, goes the short way (``instant_reader``)."""
    ok, unsupported, invalid, types, instant_id = _codes(base)
    instant_ok = node.profile.instant_power
    stamp_now = node.stamp_every_read
    wall0 = node.wall(0.0)
    t = node.elapsed()
    sim = None  # stepped to now on the first entry that needs more than instant power
    now_us = _us(wall0 + t)
    names = _names(base)
    # per entry: (field id, scope id, timestamp us, nvmlReturn, value kind or "", value)
    rows: list[tuple[int, int, int, int, str, Any]] = []
    for pos, fid in enumerate(field_ids):
        scope = 0
        if type(fid) is tuple:
            fid, scope = fid
            scope &= _U32
        fid &= _U32
        if failed and pos in failed:
            rows.append((fid, scope, now_us, failed[pos], "", 0))
            continue
        named = names.get(fid)
        got: Any = _NOT_SUPPORTED
        if named is not None:
            name, link = named
            if name == "power_instant":  # the sampler's read, many times a second: kept short
                if instant_ok:
                    mw, at = node.instant_power(gpu)
                    rows.append((fid, scope, now_us if stamp_now else _us(wall0 + at), ok, "ui", mw & _U32))
                    continue
            else:
                if sim is None:
                    sim = node.sim(gpu)
                got = _value(node, gpu, sim, t, name, scope if link is None else link)
        if got is _NOT_SUPPORTED or got is _INVALID:
            rows.append((fid, scope, now_us, unsupported if got is _NOT_SUPPORTED else invalid, "", 0))
            continue
        kind, value, at = got
        stamp = now_us if at is None or stamp_now else _us(wall0 + at)
        kind = kind if kind in ("ui", "ull") else "d"
        value = int(value) & _U32 if kind == "ui" else int(value) & _U64 if kind == "ull" else float(value)
        rows.append((fid, scope, stamp, ok, kind, value))
    values = _array(base, len(rows))()
    if _packs(base):
        size = 40
        for pos, (fid, scope, stamp, ret, kind, value) in enumerate(rows):
            pack = _PACK[kind]
            if kind:
                pack.pack_into(values, pos * size, fid, scope, stamp, 0, types[kind], ret, value)
            else:
                pack.pack_into(values, pos * size, fid, scope, stamp, 0, 0, ret)
        return values
    # a binding whose entry type differs from nvml.h's layout: member by member (plain twin of
    # the type over the same memory where there is one: pynvml's own converts every member)
    twin = plain_field_value(base)
    fill = (twin * len(rows)).from_buffer(values) if twin is not None else values
    for entry, (fid, scope, stamp, ret, kind, value) in zip(fill, rows):
        entry.fieldId, entry.scopeId, entry.timestamp, entry.nvmlReturn = fid, scope, stamp, ret
        if kind:
            entry.valueType = types[kind]
            setattr(entry.value, {"ui": "uiVal", "ull": "ullVal", "d": "dVal"}[kind], value)
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
