"""The NVML field ids rasd reads, shared by the adapter and the fake NVML.

Every id comes from the binding's own ``NVML_FI_*`` constant, never from a literal: NVIDIA
renumbered fields 251-273 between driver branches, so only the binding knows the numbering it was
built for. An id the binding lacks is None (the reading is then unsupported).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

# rasd's name -> the binding's constant
_NAMES = {
    "ecc_sbe_volatile": "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
    "ecc_dbe_volatile": "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
    "ecc_sbe_aggregate": "NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
    "ecc_dbe_aggregate": "NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
    "memory_temp": "NVML_FI_DEV_MEMORY_TEMP",
    "nvlink_link_count": "NVML_FI_DEV_NVLINK_LINK_COUNT",
    "remapped_correctable": "NVML_FI_DEV_REMAPPED_COR",
    "remapped_uncorrectable": "NVML_FI_DEV_REMAPPED_UNC",
    "remapped_pending": "NVML_FI_DEV_REMAPPED_PENDING",
    "remapped_failure": "NVML_FI_DEV_REMAPPED_FAILURE",
    "power_average": "NVML_FI_DEV_POWER_AVERAGE",
    "total_energy": "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "pcie_replay_counter": "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
    "nvlink_replay": "NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY",
    "nvlink_recovery": "NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY",
    "power_instant": "NVML_FI_DEV_POWER_INSTANT",
    "power_min_limit": "NVML_FI_DEV_POWER_MIN_LIMIT",
    "power_max_limit": "NVML_FI_DEV_POWER_MAX_LIMIT",
    "power_default_limit": "NVML_FI_DEV_POWER_DEFAULT_LIMIT",
    "power_current_limit": "NVML_FI_DEV_POWER_CURRENT_LIMIT",
    "recovery_action": "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",
    "smoothing_enabled": "NVML_FI_PWR_SMOOTHING_ENABLED",
    "smoothing_applied_floor": "NVML_FI_PWR_SMOOTHING_APPLIED_TMP_FLOOR",
    "smoothing_max_floor_percent": "NVML_FI_PWR_SMOOTHING_MAX_PERCENT_TMP_FLOOR_SETTING",
    "smoothing_min_floor_percent": "NVML_FI_PWR_SMOOTHING_MIN_PERCENT_TMP_FLOOR_SETTING",
    "smoothing_max_profiles": "NVML_FI_PWR_SMOOTHING_MAX_NUM_PRESET_PROFILES",
    "smoothing_profile_floor_percent": "NVML_FI_PWR_SMOOTHING_PROFILE_PERCENT_TMP_FLOOR",
    "smoothing_profile_ramp_up": "NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_UP_RATE",
    "smoothing_profile_ramp_down": "NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_RATE",
    "smoothing_profile_hysteresis": "NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_HYST_VAL",
    "smoothing_active_profile": "NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE",
}


@dataclass(frozen=True, slots=True)
class FieldIds:
    """Field ids as the given binding numbers them (None: the binding has no such field)."""

    ecc_sbe_volatile: int | None
    ecc_dbe_volatile: int | None
    ecc_sbe_aggregate: int | None
    ecc_dbe_aggregate: int | None
    memory_temp: int | None
    nvlink_link_count: int | None
    remapped_correctable: int | None
    remapped_uncorrectable: int | None
    remapped_pending: int | None
    remapped_failure: int | None
    power_average: int | None
    total_energy: int | None
    pcie_replay_counter: int | None
    nvlink_replay: int | None  # the link in scopeId
    nvlink_recovery: int | None  # the link in scopeId
    power_instant: int | None
    power_min_limit: int | None
    power_max_limit: int | None
    power_default_limit: int | None
    power_current_limit: int | None
    recovery_action: int | None
    smoothing_enabled: int | None
    smoothing_applied_floor: int | None
    smoothing_max_floor_percent: int | None
    smoothing_min_floor_percent: int | None
    smoothing_max_profiles: int | None
    smoothing_profile_floor_percent: int | None
    smoothing_profile_ramp_up: int | None
    smoothing_profile_ramp_down: int | None
    smoothing_profile_hysteresis: int | None
    smoothing_active_profile: int | None
    # one id per link (links 0-11 in nvml.h; no scopeId): data-link CRC errors, flit and data
    nvlink_crc_flit: tuple[int, ...] = ()
    nvlink_crc_data: tuple[int, ...] = ()

    @classmethod
    def of(cls, lib: Any) -> "FieldIds":
        """Read every id from ``lib`` (pynvml, or anything forwarding its constants)."""
        got = {}
        for name, const in _NAMES.items():
            v = getattr(lib, const, None)
            got[name] = int(v) if isinstance(v, int) else None
        return cls(
            **got,
            nvlink_crc_flit=_per_link(lib, "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L"),
            nvlink_crc_data=_per_link(lib, "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L"),
        )

    def name_of(self, fid: int) -> str | None:
        """rasd's name for a field id, for messages people read (``recovery_action``)."""
        return _names_by_id(self).get(fid)


def _per_link(lib: Any, prefix: str) -> tuple[int, ...]:
    """``prefix0``, ``prefix1``, ... as long as the binding has them (links in order)."""
    out: list[int] = []
    while isinstance(v := getattr(lib, f"{prefix}{len(out)}", None), int):
        out.append(int(v))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _names_by_id(ids: FieldIds) -> dict[int, str]:
    """Field id -> rasd's name (the first name listed wins), built once per numbering: every
    field read names its entries, 20 times a second per GPU for instant power."""
    out: dict[int, str] = {}
    for f in fields(ids):
        v = getattr(ids, f.name)
        if isinstance(v, tuple):
            for link, fid in enumerate(v):
                out.setdefault(fid, f"{f.name}_link{link}")
        elif v is not None:
            out.setdefault(v, str(f.name))
    return out
