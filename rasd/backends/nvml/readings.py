"""The health readings: one table row per NVML call (name, call, arguments, conversion).

``Reading.args`` names pynvml constants (resolved on the library in use) after the device handle;
``Reading.outputs`` maps each ``GpuSample`` field the call fills to the conversion from NVML's
answer to rasd's base units (W, J, Hz, bytes, ratios, Celsius).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

from rasd.backends.errors import GpuLost
from rasd.backends.nvml.batch import Batched, BatchReads, Plan, as_int, first, ints
from rasd.backends.nvml.core import Outcome, classify, nvml_errors, text
from rasd.model import GpuIdentity, GpuSample, NvLinkSample

_HZ_PER_MHZ = 1e6  # NVML clocks are in MHz


def _mw(v: Any) -> float:
    """mW -> W."""
    return v / 1000.0


def _mj(v: Any) -> float:
    """mJ -> J."""
    return v / 1e3


def _mhz(v: Any) -> float:
    return v * _HZ_PER_MHZ


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True, slots=True)
class Reading:
    name: str  # the reading's name in logs and rasd_gpu_nvml_errors_total{reading}
    call: str  # the pynvml function; "A|B": A where the binding and the driver have it, else B
    args: tuple[str, ...]  # pynvml constants passed after the handle
    outputs: tuple[tuple[str, Callable[[Any], Any]], ...]  # (GpuSample field, conversion)
    # field ids (FieldIds names) that answer the same as ``call``, and how their values make
    # the call's answer (rasd.backends.nvml.batch); () when NVML has no such field
    fields: tuple[str, ...] = ()
    shape: Callable[[tuple[float, ...]], Any] = as_int


def _one(field: str, conv: Callable[[Any], Any] = _same) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    return ((field, conv),)


# In call order (scripted call faults with a call budget count calls in this order).
READINGS: tuple[Reading, ...] = (
    Reading(
        "power_limit_constraints", "nvmlDeviceGetPowerManagementLimitConstraints", (),
        (("power_limit_min_watts", lambda v: _mw(v[0])), ("power_limit_max_watts", lambda v: _mw(v[1]))),
        ("power_min_limit", "power_max_limit"), lambda v: [int(x) for x in v],
    ),
    Reading(
        "utilization", "nvmlDeviceGetUtilizationRates", (),
        (
            ("utilization_gpu_ratio", lambda u: u.gpu / 100.0),
            ("utilization_memory_ratio", lambda u: u.memory / 100.0),
        ),
    ),
    Reading(
        "memory_info", "nvmlDeviceGetMemoryInfo", (),
        (("memory_used_bytes", lambda m: int(m.used)), ("memory_total_bytes", lambda m: int(m.total))),
    ),
    Reading(
        "remapped_rows", "nvmlDeviceGetRemappedRows", (),
        (
            ("remapped_rows_correctable", lambda r: int(r[0])),
            ("remapped_rows_uncorrectable", lambda r: int(r[1])),
            ("remap_pending", lambda r: bool(r[2])),
            ("remap_failure", lambda r: bool(r[3])),
        ),
        ("remapped_correctable", "remapped_uncorrectable", "remapped_pending", "remapped_failure"), ints,
    ),
    # field 185 is NOT_SUPPORTED on GA100 and older, where the call answers instant power: the
    # call then answers, as before
    Reading("power_usage", "nvmlDeviceGetPowerUsage", (), _one("power_average_watts", _mw), ("power_average",)),
    Reading(
        "power_limit_enforced", "nvmlDeviceGetEnforcedPowerLimit", (), _one("power_limit_watts", _mw),
        ("power_current_limit",),
    ),
    Reading(
        "power_limit_default", "nvmlDeviceGetPowerManagementDefaultLimit", (),
        _one("power_limit_default_watts", _mw), ("power_default_limit",),
    ),
    Reading("energy", "nvmlDeviceGetTotalEnergyConsumption", (), _one("energy_joules", _mj), ("total_energy",)),
    Reading(
        # nvmlDeviceGetTemperature is deprecated (CUDA 13) and answers DEPRECATED from CUDA 14
        "temperature_gpu", "nvmlDeviceGetTemperatureV|nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",),
        _one("temperature_gpu_celsius", float),
    ),
    Reading("clock_sm", "nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",), _one("clock_sm_hz", _mhz)),
    Reading("clock_memory", "nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",), _one("clock_memory_hz", _mhz)),
    Reading(
        "clock_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons", (),
        _one("clock_event_reasons"),
    ),
    Reading("pcie_gen", "nvmlDeviceGetCurrPcieLinkGeneration", (), _one("pcie_link_gen")),
    Reading("pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration", (), _one("pcie_link_gen_max")),
    Reading("pcie_width", "nvmlDeviceGetCurrPcieLinkWidth", (), _one("pcie_link_width")),
    Reading("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth", (), _one("pcie_link_width_max")),
    Reading(
        "pcie_replays", "nvmlDeviceGetPcieReplayCounter", (), _one("pcie_replays"), ("pcie_replay_counter",),
    ),
)

# Readings that change rarely or only count faults: a poll takes them only when asked for its
# slow part (rasd.telemetry.poller, every ``slow_interval_seconds``, 30 s by default as in DCGM),
# reusing the previous values in between. The fast part (power, temperatures, clocks, clock-event
# reasons, utilisation, memory, recovery action) is read every poll: 7 calls a GPU (one of them
# the field read); the slow part adds the NVLink port states (a call each), retired pages, PCIe
# link and the counters no field stands for (44 calls in all on an 18-link H100).
SLOW_READINGS = frozenset({
    "power_limit_constraints", "remapped_rows", "power_limit_default",
    "pcie_gen", "pcie_gen_max", "pcie_width", "pcie_width_max", "pcie_replays",
})

# (reading name, GpuSample field, error type, counter type, field id): read only where ECC is
# not off. nvml.h: corrected = single-bit, uncorrected = double-bit, so fields 3-6 (SBE/DBE,
# volatile/aggregate totals) answer what nvmlDeviceGetTotalEccErrors does
ECC_READINGS: tuple[tuple[str, str, str, str, str], ...] = (
    ("ecc_volatile_corrected", "ecc_volatile_corrected", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC",
     "ecc_sbe_volatile"),
    ("ecc_volatile_uncorrected", "ecc_volatile_uncorrected", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC",
     "ecc_dbe_volatile"),
    ("ecc_aggregate_corrected", "ecc_aggregate_corrected", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC",
     "ecc_sbe_aggregate"),
    ("ecc_aggregate_uncorrected", "ecc_aggregate_uncorrected", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
     "NVML_AGGREGATE_ECC", "ecc_dbe_aggregate"),
)

# (reading name, GpuSample field, pynvml counter constant, field) per NVLink port. The field is
# a FieldIds name: an int field takes the link in scopeId (161 DL_REPLAY, 162 DL_RECOVERY), a
# tuple has one id per link (32-37/96-101 CRC flit, 39-44/102-107 CRC data: links 0-11 only; the
# other links' CRC counters are read by their call)
NVLINK_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("nvlink_crc_flit", "crc_flit_errors", "NVML_NVLINK_ERROR_DL_CRC_FLIT", "nvlink_crc_flit"),
    ("nvlink_crc_data", "crc_data_errors", "NVML_NVLINK_ERROR_DL_CRC_DATA", "nvlink_crc_data"),
    ("nvlink_replay", "replay_errors", "NVML_NVLINK_ERROR_DL_REPLAY", "nvlink_replay"),
    ("nvlink_recovery", "recovery_errors", "NVML_NVLINK_ERROR_DL_RECOVERY", "nvlink_recovery"),
)


_SLOW_TABLE = READINGS
_FAST_TABLE = tuple(rd for rd in READINGS if rd.name not in SLOW_READINGS)

# A sample is built from its values in field order (binding 40 keywords by name costs more than
# the rest of building it): each GpuSample field's position, and each reading's outputs by it
_ORDER = tuple(f.name for f in dataclasses.fields(GpuSample))
_AT = {name: i for i, name in enumerate(_ORDER)}
_PLACES = {rd.name: tuple((_AT[field], conv) for field, conv in rd.outputs) for rd in READINGS}
_INDEX, _WALL, _MONO, _POLL_SECONDS = _AT["index"], _AT["time_wall"], _AT["time_mono"], _AT["poll_seconds"]
_INSTANT, _MEMTEMP, _ACTION = _AT["power_instant_watts"], _AT["temperature_memory_celsius"], _AT["recovery_action"]

# GpuSample fields the slow part fills (repeated from the last slow poll in between)
_SLOW_SAMPLE_FIELDS = (
    *(f for rd in READINGS if rd.name in SLOW_READINGS for f, _ in rd.outputs),
    "ecc_enabled", *(f for _, f, _, _, _ in ECC_READINGS),
    "retired_pages_single_bit", "retired_pages_double_bit", "retired_pages_pending",
    "nvlinks", "slow_time_mono",
)


FieldIdOrNone = int | tuple[int, int] | None


def _by_call(key: Any, reading: str, call: Callable[[Any], Any]) -> Batched:
    """A reading NVML has no field for here: always its own call."""
    return Batched(key, reading, (), as_int, call)


@functools.lru_cache(maxsize=None)
def _reading_call(rd: "Reading") -> Callable[[Any], Any]:
    return lambda gpu: gpu._read_reading(rd)


@functools.lru_cache(maxsize=None)
def _ecc(name: str, field: str, etype: str, ctype: str, fid: FieldIdOrNone) -> Batched:
    """One ECC total, shared by every GPU whose binding gives it the field id ``fid``."""
    def call(gpu: Any) -> Any:
        lib = gpu.lib
        return gpu._read(name, lib.nvmlDeviceGetTotalEccErrors, gpu.raw, getattr(lib, etype), getattr(lib, ctype))
    return Batched(field, name, (fid,), as_int, call) if fid is not None else _by_call(field, name, call)


@functools.lru_cache(maxsize=None)
def _nvlink(link: int, name: str, field: str, const: str, fid: FieldIdOrNone) -> Batched:
    """One NVLink error counter of one link, shared by every GPU whose binding gives it the field
    id ``fid`` (72 of them on an 18-link GPU: built once a node, not once a GPU)."""
    def call(gpu: Any) -> Any:
        lib = gpu.lib
        return gpu._read(name, lib.nvmlDeviceGetNvLinkErrorCounter, gpu.raw, link, getattr(lib, const))
    return Batched((link, field), name, (fid,), as_int, call) if fid is not None else _by_call((link, field), name, call)


def _opt_text(v: Any) -> str | None:
    return text(v) if v is not None else None


class Readings(BatchReads):
    """Identity, the health poll and the instant-power read of one GPU."""

    _identity: GpuIdentity | None = None
    _link_count: int | None = None
    _chosen: dict[str, Callable[..., Any]] | None = None  # reading -> the call that answers it
    _argv: dict[str, tuple[Any, ...]]  # reading -> its constant arguments, resolved on the library
    _slow: dict[str, Any] | None = None  # the last slow part: GpuSample fields -> values
    _slow_values: list[Any] | None = None  # the last slow poll's sample, its fields in order
    _plans: dict[tuple[bool, bool], Plan] | None = None  # (slow, ECC read) -> the batch

    # -- identity -------------------------------------------------------------------------------

    def identity(self) -> GpuIdentity:
        if self._identity is None:
            lib, h = self.lib, self.raw
            uuid = self._read("uuid", lib.nvmlDeviceGetUUID, h)
            name = self._read("name", lib.nvmlDeviceGetName, h)
            pci = self._read("pci_info", lib.nvmlDeviceGetPciInfo, h)
            ident = GpuIdentity(
                index=self.index,
                uuid=text(uuid) if uuid is not None else f"unknown-{self.index}",
                name=text(name) if name is not None else "unknown",
                serial=_opt_text(self._read("serial", lib.nvmlDeviceGetSerial, h)),
                pci_bus_id=text(pci.busId) if pci is not None else "unknown",
                vbios_version=_opt_text(self._read("vbios", lib.nvmlDeviceGetVbiosVersion, h)),
                nvlink_count=self._links(),
            )
            if uuid is None:  # identity must be complete to be cached; retry next time
                return ident
            self._identity = ident
        return self._identity

    def forget_identity(self) -> None:
        """The GPU was lost: the board that answers when it comes back may be another one (a
        replaced board), so its identity is read again then."""
        self._identity = None

    def _links(self) -> int:
        """The NVLink ports this GPU has: field NVML_FI_DEV_NVLINK_LINK_COUNT (0 without NVLink).

        Probing ``nvmlDeviceGetNvLinkState`` per index is not a count (NVIDIA's mock answers
        "down" for every index up to 18), so probing is only the fallback for drivers without the
        field, and then a port counts only while NVML reports its P2P capability."""
        if self._link_count is None:
            fid = self.fids.nvlink_link_count
            got = self._fields((fid,)).get(fid) if fid is not None else None
            self._link_count = int(got[0]) if got is not None else self._probe_links()
        return self._link_count

    def _probe_links(self) -> int:
        lib, n = self.lib, 0
        max_links = getattr(lib, "NVML_NVLINK_MAX_LINKS", 18)
        cap = getattr(lib, "NVML_NVLINK_CAP_P2P_SUPPORTED", 0)
        while n < max_links:
            try:
                if not lib.nvmlDeviceGetNvLinkCapability(self.raw, n, cap):
                    break
            except lib.NVMLError_GpuIsLost as e:
                raise GpuLost(self.index, f"nvlink probe: {e}") from None
            except nvml_errors(lib):
                break
            n += 1
        return n

    def _read_reading(self, rd: Reading) -> Any:
        """One table reading. With alternatives ("A|B"), the first call that is not unsupported
        on this GPU is kept for good; its first answer (or error) is this poll's."""
        lib, h = self.lib, self.raw
        if self._chosen is None:
            self._chosen, self._argv = {}, {}
        fn = self._chosen.get(rd.name)
        if fn is not None:
            return self._read(rd.name, fn, h, *self._argv[rd.name])
        args = self._argv[rd.name] = tuple(getattr(lib, a) for a in rd.args)
        names = [n for n in rd.call.split("|") if hasattr(lib, n)]
        if not names:
            return None
        for name in names[:-1]:
            fn = getattr(lib, name)
            try:
                got = fn(*self._args((h, *args)))
            except nvml_errors(lib) as e:
                if classify(lib, e) is Outcome.UNSUPPORTED:
                    continue  # the older call may still answer
                self._chosen[rd.name] = fn
                self._judge(rd.name, e)
                return None
            self._chosen[rd.name] = fn
            return got
        fn = self._chosen[rd.name] = getattr(lib, names[-1])
        return self._read(rd.name, fn, h, *args)

    # -- the health poll ------------------------------------------------------------------------

    def _plan(self, slow: bool, ecc: bool) -> Plan:
        """This GPU's field-read readings for a fast or a slow poll (with or without the ECC
        totals), built once: instant power, memory temperature and recovery action (fields
        only), then each reading that has a field standing for its call."""
        plans = self._plans
        if plans is None:
            plans = self._plans = {}
        key = (slow, ecc)
        got = plans.get(key)
        if got is not None:
            return got
        fid = self.fids
        out: list[Batched] = [
            Batched(name, name, (i,), first)
            for name in ("power_instant", "memory_temp", "recovery_action")
            if (i := getattr(fid, name)) is not None
        ]
        for rd in READINGS:
            ids = tuple(getattr(fid, f) for f in rd.fields)
            if rd.fields and (slow or rd.name not in SLOW_READINGS) and None not in ids:
                out.append(Batched(rd.name, rd.name, ids, rd.shape, _reading_call(rd)))
        if slow and ecc:
            for name, field, etype, ctype, f in ECC_READINGS:
                out.append(_ecc(name, field, etype, ctype, getattr(fid, f)))
        if slow:
            for link in range(self._links()):
                for name, field, const, f in NVLINK_COUNTERS:
                    ids = getattr(fid, f)
                    one: FieldIdOrNone = (
                        (ids[link] if link < len(ids) else None) if isinstance(ids, tuple)
                        else (ids, link) if ids is not None else None
                    )
                    out.append(_nvlink(link, name, field, const, one))
        got = plans[key] = Plan(out)
        return got

    def _table(self, values: list[Any], got: dict[Any, Any], slow: bool) -> None:
        """Each table reading's outputs into ``values``, the sample's fields in order."""
        lib, h, unsupported, places = self.lib, self.raw, self._unsupported, _PLACES
        chosen = self._chosen if self._chosen is not None and h is not None else {}
        argv = self._argv if chosen else {}
        for rd in _SLOW_TABLE if slow else _FAST_TABLE:
            name = rd.name
            if name in got:
                v = got[name]
            elif name not in unsupported and (fn := chosen.get(name)) is not None:
                # its call chosen at an earlier poll, on an opened GPU, not set aside: called
                # here under _read's error rules, without the two calls around it (six
                # readings a GPU a poll)
                try:
                    v = fn(h, *argv[name])
                except nvml_errors(lib) as e:
                    self._judge(name, e)
                    v = None
            else:
                v = self._read_reading(rd)
            if v is None:
                for at, _ in places[name]:
                    values[at] = None
            else:
                for at, conv in places[name]:
                    values[at] = conv(v)

    def poll(self, now_wall: Callable[[], float] = time.time, slow: bool = True) -> GpuSample:
        """Every health reading of this GPU once (README's reading list). Raises GpuLost.

        The readings NVML also offers as field ids come from one nvmlDeviceGetFieldValues call
        (rasd.backends.nvml.batch), the rest from their own calls. ``slow=False`` reads only the
        fast part and repeats the slow part (ECC, retired pages, row remapping, PCIe, power-limit
        range, NVLink ports) from the last poll that read it (``GpuSample.slow_time_mono`` says
        when); the first poll always reads everything."""
        self._polls += 1
        t0 = time.monotonic()
        slow = slow or self._slow is None
        values: list[Any]
        if slow:
            ecc_on = self._ecc_mode()
            got = self._batch(self._plan(True, ecc_on is not False))
            values = [None] * len(_ORDER)
            for field, v in self._read_slow_part(t0, ecc_on, got).items():
                values[_AT[field]] = v
        else:
            got = self._batch(self._plan(False, False))
            assert self._slow_values is not None
            values = self._slow_values.copy()  # the slow part repeated; every other field is set below
        self._table(values, got, slow=slow)
        inst, memtemp, action = got.get("power_instant"), got.get("memory_temp"), got.get("recovery_action")
        values[_INDEX] = self.index
        values[_WALL] = now_wall()
        values[_MONO] = t0
        values[_INSTANT] = inst / 1000.0 if inst is not None else None
        values[_MEMTEMP] = float(memtemp) if memtemp is not None else None
        values[_ACTION] = int(action) if action is not None else None
        # built once: the poll's time is its calls' (the build is microseconds)
        values[_POLL_SECONDS] = time.monotonic() - t0
        sample = GpuSample(*values)
        if slow:
            self._slow = {k: getattr(sample, k) for k in _SLOW_SAMPLE_FIELDS}
            self._slow_values = values
        return sample

    def _ecc_mode(self) -> bool | None:
        """nvmlDeviceGetEccMode: current mode on (True), off (False), unknown (None)."""
        mode = self._read("ecc_mode", self.lib.nvmlDeviceGetEccMode, self.raw)
        return bool(mode[0]) if mode is not None else None

    def _read_slow_part(self, t0: float, ecc_on: bool | None, got: dict[Any, Any]) -> dict[str, Any]:
        """The slow readings outside the table: ECC totals (from the batch), retired pages, NVLink."""
        lib, h, r = self.lib, self.raw, self._read
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
        values: dict[str, Any] = {
            field: None if ecc_on is False else got.get(field) for _, field, _, _, _ in ECC_READINGS
        }
        values.update(
            ecc_enabled=ecc_on,
            retired_pages_single_bit=len(sbe_pages) if sbe_pages is not None else None,
            retired_pages_double_bit=len(dbe_pages) if dbe_pages is not None else None,
            retired_pages_pending=bool(pages_pending == lib.NVML_FEATURE_ENABLED)
            if pages_pending is not None
            else None,
            nvlinks=self._nvlinks(got),
            slow_time_mono=t0,
        )
        return values

    def _nvlinks(self, got: dict[Any, Any]) -> tuple[NvLinkSample, ...]:
        """Each port's state (nvmlDeviceGetNvLinkState) and error counters (from the batch)."""
        lib, h, r = self.lib, self.raw, self._read
        out = []
        for link in range(self._links()):
            state = r("nvlink_state", lib.nvmlDeviceGetNvLinkState, h, link)
            out.append(
                NvLinkSample(
                    link=link,
                    up=(state == lib.NVML_FEATURE_ENABLED) if state is not None else None,
                    **{field: got.get((link, field)) for _, field, _, _ in NVLINK_COUNTERS},
                )
            )
        links = tuple(out)
        before = self._slow["nvlinks"] if self._slow is not None else None
        # nothing changed on any port: the same tuple again, which tells the detectors so
        return before if before == links else links

    # -- power ----------------------------------------------------------------------------------

    def instant_power(self) -> tuple[float, int] | None:
        """Field NVML_FI_DEV_POWER_INSTANT (mW) -> (watts, NVML timestamp in us). Raises GpuLost."""
        fid = self.fids.power_instant
        if fid is None:
            return None
        f = self._field_one(fid)
        return (f[0] / 1000.0, f[1]) if f else None

    def instant_power_failed(self, ret: int, of_call: bool) -> None:
        """A native read of the instant-power field answered ``ret`` (the whole call's where
        ``of_call``, else the entry's): the error rules, as ``instant_power`` applies them.
        Raises GpuLost."""
        if of_call:
            self._judge("field_values", self.lib.NVMLError(ret))
        elif self.fids.power_instant is not None:
            self._field_failed(self.fids.power_instant, ret)
