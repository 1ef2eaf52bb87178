"""The one NVML choke point: every pynvml call in rasd goes through this adapter.

The adapter takes the library object as a parameter: the real ``pynvml`` module on a GPU node,
or ``rasd.backends.fake.FakeNvml`` (a fake NVML with the same functions and error classes)
anywhere else, so every test runs this exact code.

Error rules (README, "Error rules"):
- NotSupported / FunctionNotFound: the reading is absent (None), logged once per GPU and reading,
  and not asked again until the next re-probe (``REPROBE_POLLS`` polls later).
- GpuIsLost: the whole poll stops with ``GpuLost``.
- Unknown, Timeout, NoPermission, anything else: counted per (reading, kind), None this poll,
  retried next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Callable, TypeVar

from rasd.backends.errors import ControlError, GpuLost
from rasd.model import ErrorKind, GpuIdentity, GpuSample, NodeIdentity, NvLinkSample

log = logging.getLogger("rasd.nvml")

T = TypeVar("T")

FI_MEMORY_TEMP = 82
FI_POWER_AVERAGE = 185
FI_POWER_INSTANT = 186
FI_RECOVERY_ACTION = 230
_HEALTH_FIELDS = (FI_POWER_INSTANT, FI_MEMORY_TEMP, FI_RECOVERY_ACTION)
REPROBE_POLLS = 300  # re-ask an unsupported reading every ~5 min at the default 1 s poll

_HZ_PER_MHZ = 1e6  # NVML clocks are in MHz


def pynvml_module() -> ModuleType:
    """Import and return the real ``pynvml`` (nvidia-ml-py). Importing never needs a GPU."""
    import pynvml

    return pynvml


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """Watts. ``limit`` is the in-band (NVML) setting; ``enforced`` the most conservative of all."""

    limit_watts: float
    enforced_watts: float
    default_watts: float
    min_watts: float
    max_watts: float


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class NvmlAdapter:
    """Node-level NVML access. ``open()`` initialises the library; ``gpus()`` lists handles."""

    def __init__(self, lib: Any):
        self.lib = lib
        self._gpus: list[GpuHandle] = []
        self._open = False

    def open(self) -> None:
        lib = self.lib
        lib.nvmlInit()
        self._open = True
        count = lib.nvmlDeviceGetCount()
        self._gpus = [GpuHandle(self, i, lib.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.lib.nvmlShutdown()
            except self.lib.NVMLError as e:  # shutting down anyway
                log.debug("event=nvml_shutdown_failed error=%r", str(e))

    def gpus(self) -> list["GpuHandle"]:
        return list(self._gpus)

    def by_raw_handle(self, raw: Any) -> "GpuHandle | None":
        """The GpuHandle for a raw NVML device handle (e.g. an event's ``device``).

        ctypes pointers compare by identity, not address, so ask NVML for the index instead."""
        try:
            index = self.lib.nvmlDeviceGetIndex(raw)
        except self.lib.NVMLError:
            return None
        for g in self._gpus:
            if g.index == index:
                return g
        return None

    def node_identity(self, hostname: str, backend: str) -> NodeIdentity:
        lib = self.lib

        def opt(fn: Callable[[], Any]) -> str | None:
            try:
                return _text(fn())
            except lib.NVMLError:
                return None

        cuda = opt(lib.nvmlSystemGetCudaDriverVersion)
        if cuda and cuda.isdigit():  # 12040 -> "12.4"
            n = int(cuda)
            cuda = f"{n // 1000}.{(n % 1000) // 10}"
        return NodeIdentity(
            hostname=hostname,
            backend=backend,
            driver_version=opt(lib.nvmlSystemGetDriverVersion),
            nvml_version=opt(lib.nvmlSystemGetNVMLVersion),
            cuda_driver_version=cuda,
        )

    # -- Xid events ---------------------------------------------------------------------------

    def xid_event_set(self) -> "XidEventSet":
        return XidEventSet(self)


class XidEventSet:
    """An NVML event set registered for Xid critical errors on every GPU that supports it.

    ``wait(timeout_ms)`` blocks in ``nvmlEventSetWait`` (the GIL is released meanwhile) and returns
    ``(gpu_index, xid)`` or None on timeout.
    """

    def __init__(self, adapter: NvmlAdapter):
        lib = adapter.lib
        self._adapter = adapter
        self._lib = lib
        self._set = lib.nvmlEventSetCreate()
        self.registered: list[int] = []
        for g in adapter.gpus():
            try:
                lib.nvmlDeviceRegisterEvents(g.raw, lib.nvmlEventTypeXidCriticalError, self._set)
                self.registered.append(g.index)
            except lib.NVMLError as e:
                log.warning("event=xid_register_failed gpu=%d error=%r", g.index, str(e))

    def wait(self, timeout_ms: int) -> tuple[int, int] | None:
        lib = self._lib
        try:
            data = lib.nvmlEventSetWait_v2(self._set, timeout_ms)
        except lib.NVMLError_Timeout:
            return None
        g = self._adapter.by_raw_handle(data.device)
        return (g.index if g else -1, int(data.eventData))

    def close(self) -> None:
        try:
            self._lib.nvmlEventSetFree(self._set)
        except self._lib.NVMLError:
            pass


class GpuHandle:
    """One GPU. ``poll()`` is called by that GPU's own poller thread only (no locking needed for
    its bookkeeping); ``instant_power()`` by its own sampler thread."""

    def __init__(self, adapter: NvmlAdapter, index: int, raw: Any):
        self.adapter = adapter
        self.lib = adapter.lib
        self.index = index
        self.raw = raw
        self._identity: GpuIdentity | None = None
        self._unsupported: dict[str, int] = {}  # reading -> poll number when found unsupported
        self._errors: dict[tuple[str, str], int] = {}
        self._errors_lock = threading.Lock()
        self._polls = 0
        self._link_count: int | None = None

    # -- bookkeeping ----------------------------------------------------------------------------

    def error_counts(self) -> dict[tuple[str, str], int]:
        with self._errors_lock:
            return dict(self._errors)

    def unsupported(self) -> frozenset[str]:
        return frozenset(self._unsupported)

    def _count(self, reading: str, kind: ErrorKind, e: Exception) -> None:
        key = (reading, kind.value)
        with self._errors_lock:
            n = self._errors.get(key, 0) + 1
            self._errors[key] = n
        if n == 1:  # a repeating failure is logged once, then counted
            log.warning(
                "event=nvml_error gpu=%d reading=%s kind=%s error=%r",
                self.index, reading, kind.value, str(e),
            )

    def _read(self, reading: str, fn: Callable[..., T], *args: Any) -> T | None:
        """One NVML reading under the error rules. Raises GpuLost; otherwise never raises."""
        since = self._unsupported.get(reading)
        if since is not None:
            if self._polls - since < REPROBE_POLLS:
                return None
            del self._unsupported[reading]
        lib = self.lib
        try:
            return fn(*args)
        except (lib.NVMLError_NotSupported, lib.NVMLError_FunctionNotFound):
            if reading not in self._unsupported:
                log.info("event=reading_unsupported gpu=%d reading=%s", self.index, reading)
            self._unsupported[reading] = self._polls
            return None
        except lib.NVMLError_GpuIsLost as e:
            raise GpuLost(self.index, f"{reading}: {e}") from None
        except lib.NVMLError_Unknown as e:
            self._count(reading, ErrorKind.UNKNOWN, e)
        except lib.NVMLError_Timeout as e:
            self._count(reading, ErrorKind.TIMEOUT, e)
        except lib.NVMLError_NoPermission as e:
            self._count(reading, ErrorKind.NO_PERMISSION, e)
        except lib.NVMLError as e:
            self._count(reading, ErrorKind.OTHER, e)
        return None

    # -- identity -------------------------------------------------------------------------------

    def identity(self) -> GpuIdentity:
        if self._identity is None:
            lib, h = self.lib, self.raw
            uuid = self._read("uuid", lib.nvmlDeviceGetUUID, h)
            name = self._read("name", lib.nvmlDeviceGetName, h)
            pci = self._read("pci_info", lib.nvmlDeviceGetPciInfo, h)
            ident = GpuIdentity(
                index=self.index,
                uuid=_text(uuid) if uuid is not None else f"unknown-{self.index}",
                name=_text(name) if name is not None else "unknown",
                serial=_opt_text(self._read("serial", lib.nvmlDeviceGetSerial, h)),
                pci_bus_id=_text(pci.busId) if pci is not None else "unknown",
                vbios_version=_opt_text(self._read("vbios", lib.nvmlDeviceGetVbiosVersion, h)),
                nvlink_count=self._links(),
            )
            if uuid is None:  # identity must be complete to be cached; retry next time
                return ident
            self._identity = ident
        return self._identity

    def _links(self) -> int:
        """Count NVLink ports by probing until NVML says the link index is invalid."""
        if self._link_count is None:
            lib, n = self.lib, 0
            max_links = getattr(lib, "NVML_NVLINK_MAX_LINKS", 18)
            while n < max_links:
                try:
                    lib.nvmlDeviceGetNvLinkState(self.raw, n)
                except lib.NVMLError_GpuIsLost as e:
                    raise GpuLost(self.index, f"nvlink probe: {e}") from None
                except lib.NVMLError:
                    break
                n += 1
            self._link_count = n
        return self._link_count

    # -- the health poll ------------------------------------------------------------------------

    def poll(self, now_wall: Callable[[], float] = time.time) -> GpuSample:
        """Every health reading of this GPU once (README's reading list). Raises GpuLost."""
        lib, h, r = self.lib, self.raw, self._read
        self._polls += 1
        t0 = time.monotonic()
        fields = self._fields(_HEALTH_FIELDS)
        inst = fields.get(FI_POWER_INSTANT)
        limits = r("power_limit_constraints", lib.nvmlDeviceGetPowerManagementLimitConstraints, h)
        ecc_mode = r("ecc_mode", lib.nvmlDeviceGetEccMode, h)
        util = r("utilization", lib.nvmlDeviceGetUtilizationRates, h)
        mem = r("memory_info", lib.nvmlDeviceGetMemoryInfo, h)
        remap = r("remapped_rows", lib.nvmlDeviceGetRemappedRows, h)
        sbe_pages = r(
            "retired_pages", lib.nvmlDeviceGetRetiredPages, h,
            lib.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
        )
        dbe_pages = (
            r(
                "retired_pages", lib.nvmlDeviceGetRetiredPages, h,
                lib.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
            )
            if sbe_pages is not None
            else None
        )
        pages_pending = r("retired_pages_pending", lib.nvmlDeviceGetRetiredPagesPendingStatus, h)
        ecc_on = bool(ecc_mode[0]) if ecc_mode is not None else None

        def ecc(kind: int, counter: int, name: str) -> int | None:
            if ecc_on is False:
                return None
            return r(name, lib.nvmlDeviceGetTotalEccErrors, h, kind, counter)

        corrected, uncorrected = (
            lib.NVML_MEMORY_ERROR_TYPE_CORRECTED,
            lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        )
        sample = GpuSample(
            index=self.index,
            time_wall=now_wall(),
            time_mono=t0,
            poll_seconds=0.0,
            power_instant_watts=_mw(inst[0]) if inst else None,
            power_average_watts=_mw(r("power_usage", lib.nvmlDeviceGetPowerUsage, h)),
            power_limit_watts=_mw(r("power_limit_enforced", lib.nvmlDeviceGetEnforcedPowerLimit, h)),
            power_limit_default_watts=_mw(
                r("power_limit_default", lib.nvmlDeviceGetPowerManagementDefaultLimit, h)
            ),
            power_limit_min_watts=_mw(limits[0]) if limits else None,
            power_limit_max_watts=_mw(limits[1]) if limits else None,
            energy_joules=_div(r("energy", lib.nvmlDeviceGetTotalEnergyConsumption, h), 1e3),
            temperature_gpu_celsius=_f(
                r("temperature_gpu", lib.nvmlDeviceGetTemperature, h, lib.NVML_TEMPERATURE_GPU)
            ),
            temperature_memory_celsius=_f(fields[FI_MEMORY_TEMP][0])
            if FI_MEMORY_TEMP in fields
            else None,
            clock_sm_hz=_mul(r("clock_sm", lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_SM), _HZ_PER_MHZ),
            clock_memory_hz=_mul(
                r("clock_memory", lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_MEM), _HZ_PER_MHZ
            ),
            clock_event_reasons=r("clock_event_reasons", lib.nvmlDeviceGetCurrentClocksEventReasons, h),
            utilization_gpu_ratio=util.gpu / 100.0 if util is not None else None,
            utilization_memory_ratio=util.memory / 100.0 if util is not None else None,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            ecc_enabled=ecc_on,
            ecc_volatile_corrected=ecc(corrected, lib.NVML_VOLATILE_ECC, "ecc_volatile_corrected"),
            ecc_volatile_uncorrected=ecc(uncorrected, lib.NVML_VOLATILE_ECC, "ecc_volatile_uncorrected"),
            ecc_aggregate_corrected=ecc(corrected, lib.NVML_AGGREGATE_ECC, "ecc_aggregate_corrected"),
            ecc_aggregate_uncorrected=ecc(
                uncorrected, lib.NVML_AGGREGATE_ECC, "ecc_aggregate_uncorrected"
            ),
            remapped_rows_correctable=int(remap[0]) if remap else None,
            remapped_rows_uncorrectable=int(remap[1]) if remap else None,
            remap_pending=bool(remap[2]) if remap else None,
            remap_failure=bool(remap[3]) if remap else None,
            retired_pages_single_bit=len(sbe_pages) if sbe_pages is not None else None,
            retired_pages_double_bit=len(dbe_pages) if dbe_pages is not None else None,
            retired_pages_pending=bool(pages_pending == lib.NVML_FEATURE_ENABLED)
            if pages_pending is not None
            else None,
            pcie_link_gen=r("pcie_gen", lib.nvmlDeviceGetCurrPcieLinkGeneration, h),
            pcie_link_gen_max=r("pcie_gen_max", lib.nvmlDeviceGetMaxPcieLinkGeneration, h),
            pcie_link_width=r("pcie_width", lib.nvmlDeviceGetCurrPcieLinkWidth, h),
            pcie_link_width_max=r("pcie_width_max", lib.nvmlDeviceGetMaxPcieLinkWidth, h),
            pcie_replays=r("pcie_replays", lib.nvmlDeviceGetPcieReplayCounter, h),
            recovery_action=int(fields[FI_RECOVERY_ACTION][0])
            if FI_RECOVERY_ACTION in fields
            else None,
            nvlinks=self._nvlinks(),
        )
        return replace(sample, poll_seconds=time.monotonic() - t0)

    def _nvlinks(self) -> tuple[NvLinkSample, ...]:
        lib, h, r = self.lib, self.raw, self._read
        out = []
        counters = (
            ("nvlink_crc_flit", lib.NVML_NVLINK_ERROR_DL_CRC_FLIT),
            ("nvlink_crc_data", lib.NVML_NVLINK_ERROR_DL_CRC_DATA),
            ("nvlink_replay", lib.NVML_NVLINK_ERROR_DL_REPLAY),
            ("nvlink_recovery", lib.NVML_NVLINK_ERROR_DL_RECOVERY),
        )
        for link in range(self._links()):
            state = r("nvlink_state", lib.nvmlDeviceGetNvLinkState, h, link)
            vals = [r(name, lib.nvmlDeviceGetNvLinkErrorCounter, h, link, c) for name, c in counters]
            out.append(
                NvLinkSample(
                    link=link,
                    up=(state == lib.NVML_FEATURE_ENABLED) if state is not None else None,
                    crc_flit_errors=vals[0],
                    crc_data_errors=vals[1],
                    replay_errors=vals[2],
                    recovery_errors=vals[3],
                )
            )
        return tuple(out)

    def _fields(self, ids: tuple[int, ...]) -> dict[int, tuple[float, int]]:
        """nvmlDeviceGetFieldValues: {field id: (value, timestamp us)} for entries that succeeded.

        Each entry carries its own nvmlReturn; a NotSupported entry is an absent reading."""
        lib = self.lib
        values = self._read("field_values", lib.nvmlDeviceGetFieldValues, self.raw, list(ids))
        out: dict[int, tuple[float, int]] = {}
        if values is None:
            return out
        for v in values:
            name = f"field_{v.fieldId}"
            ret = v.nvmlReturn
            if ret == lib.NVML_SUCCESS:
                out[int(v.fieldId)] = (_field_value(lib, v), int(v.timestamp))
                continue
            err = lib.NVMLError(ret)
            if isinstance(err, (lib.NVMLError_NotSupported, lib.NVMLError_FunctionNotFound)):
                if name not in self._unsupported:
                    log.info("event=reading_unsupported gpu=%d reading=%s", self.index, name)
                self._unsupported.setdefault(name, self._polls)
            elif isinstance(err, lib.NVMLError_GpuIsLost):
                raise GpuLost(self.index, f"{name}: {err}")
            else:
                self._count(name, _kind_of(lib, err), err)
        return out

    # -- power ----------------------------------------------------------------------------------

    def instant_power(self) -> tuple[float, int] | None:
        """Field 186 (instant power, mW) -> (watts, NVML timestamp in us). Raises GpuLost."""
        f = self._fields((FI_POWER_INSTANT,)).get(FI_POWER_INSTANT)
        return (f[0] / 1000.0, f[1]) if f else None

    def power_limits(self) -> PowerLimits:
        lib, h = self.lib, self.raw
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
        lib, h = self.lib, self.raw
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
        lib = self.lib
        fid = getattr(lib, "NVML_FI_PWR_SMOOTHING_ENABLED", 251)
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

        Parameters go in % / W/s / ms; NVML reports ramp rates back in mW/s (fields 261/262)."""
        lib, h = self.lib, self.raw
        params = (
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR, floor_percent),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE, ramp_up_watts_per_second),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE, ramp_down_watts_per_second),
            (lib.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_HYSTERESIS, hysteresis_ms),
        )
        try:
            for param, value in params:
                prof = lib.c_nvmlPowerSmoothingProfile_v1_t()
                prof.profileId, prof.paramId, prof.value = profile_id, param, float(value)
                lib.nvmlDevicePowerSmoothingUpdatePresetProfileParam(h, prof)
            prof = lib.c_nvmlPowerSmoothingProfile_v1_t()
            prof.profileId = profile_id
            lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, prof)
            self._smoothing_state(True)
        except lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: applying power smoothing failed: {e}") from None
        return self.smoothing_readback()

    def disable_smoothing(self) -> None:
        try:
            self._smoothing_state(False)
        except self.lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: disabling power smoothing failed: {e}") from None

    def _smoothing_state(self, on: bool) -> None:
        lib = self.lib
        st = lib.c_nvmlPowerSmoothingState_v1_t()
        st.state = lib.NVML_FEATURE_ENABLED if on else lib.NVML_FEATURE_DISABLED
        lib.nvmlDevicePowerSmoothingSetState(self.raw, st)

    def smoothing_readback(self) -> dict[str, float]:
        """Fields 251/260-263 in rasd's units (ramp rates converted from mW/s to W/s)."""
        ids = {
            "enabled": 251,
            "floor_percent": 260,
            "ramp_up_watts_per_second": 261,
            "ramp_down_watts_per_second": 262,
            "hysteresis_ms": 263,
        }
        got = self._fields(tuple(ids.values()))
        out: dict[str, float] = {}
        for key, fid in ids.items():
            if fid in got:
                v = got[fid][0]
                out[key] = v / 1000.0 if key.startswith("ramp") else v
        return out

    def running_pids(self) -> list[int]:
        """nvmlDeviceGetComputeRunningProcesses -> PIDs using this GPU (empty when idle)."""
        lib = self.lib
        try:
            procs = lib.nvmlDeviceGetComputeRunningProcesses(self.raw)
        except lib.NVMLError_GpuIsLost as e:
            raise GpuLost(self.index, str(e)) from None
        except lib.NVMLError as e:
            raise ControlError(f"GPU {self.index}: cannot list processes: {e}") from None
        return [int(p.pid) for p in procs]


# nvmlValueType_t -> the member of the nvmlValue_t union that holds the value
_VALUE_MEMBERS = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)


def _field_value(lib: Any, v: Any) -> float:
    for const, member in _VALUE_MEMBERS:
        if v.valueType == getattr(lib, const, None):
            return float(getattr(v.value, member))
    return float(v.value.ullVal)


def _kind_of(lib: Any, e: Exception) -> ErrorKind:
    if isinstance(e, lib.NVMLError_Unknown):
        return ErrorKind.UNKNOWN
    if isinstance(e, lib.NVMLError_Timeout):
        return ErrorKind.TIMEOUT
    if isinstance(e, lib.NVMLError_NoPermission):
        return ErrorKind.NO_PERMISSION
    return ErrorKind.OTHER


def _mw(v: Any) -> float | None:
    return v / 1000.0 if v is not None else None


def _f(v: Any) -> float | None:
    return float(v) if v is not None else None


def _div(v: Any, d: float) -> float | None:
    return v / d if v is not None else None


def _mul(v: Any, m: float) -> float | None:
    return v * m if v is not None else None


def _opt_text(v: Any) -> str | None:
    return _text(v) if v is not None else None

