"""The shared vocabulary of rasd: samples, GPU states, fault events, rungs.

The ground floor: it imports no other rasd module. The snapshot, which also carries each area's
state, is ``rasd.snapshot``, a floor above the areas.

Everything here is plain, immutable data. Units are in field names (``_watts``, ``_celsius``,
``_hz``, ``_bytes``, ``_ratio``, ``_joules``); ``None`` always means "not available on this GPU"
(NVML answered NotSupported, or the reading failed this poll), never zero.

Times: ``*_wall`` are Unix seconds (shown to people, stored); ``*_mono`` are ``time.monotonic()``
seconds (intervals and deadlines only).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence, overload

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- telemetry


class Health(enum.Enum):
    """What rasd knows about a GPU right now."""

    UP = "up"  # last poll finished within its deadline
    STALE = "stale"  # a poll overran its deadline (hung NVML call); last good data is kept
    LOST = "lost"  # NVML says the GPU is lost / fell off the bus


class LostReason(enum.Enum):
    """Why a GPU reads as lost, in NVML's terms (the error nvmlDeviceGetHandleByIndex or a
    reading answered). A closed set, so that it can be a metric label."""

    GPU_IS_LOST = "gpu_is_lost"  # NVML_ERROR_GPU_IS_LOST: fallen off the bus or otherwise gone
    NO_PERMISSION = "no_permission"  # NVML_ERROR_NO_PERMISSION at open (device node not accessible)
    INSUFFICIENT_POWER = "insufficient_power"  # NVML_ERROR_INSUFFICIENT_POWER: power cables not attached
    IRQ_ISSUE = "irq_issue"  # NVML_ERROR_IRQ_ISSUE: the kernel detected an interrupt problem
    OTHER = "other"  # any other error at open


class ErrorKind(enum.Enum):
    """NVML failures that are counted per GPU and retried next poll (never fatal)."""

    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    NO_PERMISSION = "no_permission"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """A GPU's power limits, watts: the one type for the NVML adapter and the power decisions.

    ``limit`` is the in-band setting (nvmlDeviceGetPowerManagementLimit); ``min``/``max`` its
    allowed range (...LimitConstraints); ``enforced`` the most conservative of all limits
    (nvmlDeviceGetEnforcedPowerLimit) and ``default`` the board default (...DefaultLimit), None
    where not read (a recorded trace knows only the limit it is given).
    """

    limit_watts: float
    min_watts: float
    max_watts: float
    enforced_watts: float | None = None
    default_watts: float | None = None


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    hostname: str
    backend: str  # "nvml" or "fake"
    driver_version: str | None
    nvml_version: str | None
    cuda_driver_version: str | None


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    index: int
    uuid: str
    name: str
    serial: str | None
    pci_bus_id: str
    vbios_version: str | None
    nvlink_count: int  # links probed (0 on parts without NVLink)


@dataclass(frozen=True, slots=True)
class NvLinkSample:
    """One NVLink port. Counters are raw NVML values (see telemetry.counters for monotonic totals)."""

    link: int
    up: bool | None
    crc_flit_errors: int | None
    crc_data_errors: int | None
    replay_errors: int | None
    recovery_errors: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One health poll of one GPU (about 1 s cadence)."""

    index: int
    time_wall: float
    time_mono: float
    poll_seconds: float
    power_instant_watts: float | None  # field 186
    power_average_watts: float | None  # nvmlDeviceGetPowerUsage (1 s average on Ampere+)
    power_limit_watts: float | None  # nvmlDeviceGetEnforcedPowerLimit
    power_limit_default_watts: float | None
    power_limit_min_watts: float | None
    power_limit_max_watts: float | None
    energy_joules: float | None  # nvmlDeviceGetTotalEnergyConsumption (mJ since driver load)
    temperature_gpu_celsius: float | None
    temperature_memory_celsius: float | None  # field 82
    clock_sm_hz: float | None
    clock_memory_hz: float | None
    clock_event_reasons: int | None  # bitmask, nvmlDeviceGetCurrentClocksEventReasons
    utilization_gpu_ratio: float | None
    utilization_memory_ratio: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    ecc_enabled: bool | None
    ecc_volatile_corrected: int | None
    ecc_volatile_uncorrected: int | None
    ecc_aggregate_corrected: int | None
    ecc_aggregate_uncorrected: int | None
    remapped_rows_correctable: int | None
    remapped_rows_uncorrectable: int | None
    remap_pending: bool | None
    remap_failure: bool | None
    retired_pages_single_bit: int | None
    retired_pages_double_bit: int | None
    retired_pages_pending: bool | None
    pcie_link_gen: int | None
    pcie_link_gen_max: int | None
    pcie_link_width: int | None
    pcie_link_width_max: int | None
    pcie_replays: int | None
    recovery_action: int | None  # field 230, a RecoveryAction code
    nvlinks: tuple[NvLinkSample, ...] = ()
    # monotonic time the slow part (ECC, pages, remapping, PCIe, NVLink) was read; the health
    # poll reads it less often and repeats it in between (None: read with this poll)
    slow_time_mono: float | None = None

    @property
    def counters_mono(self) -> float:
        """When the counters in this sample were read (monotonic seconds)."""
        return self.time_mono if self.slow_time_mono is None else self.slow_time_mono


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One distinct instant-power update (field 186) as the power sampler saw it."""

    gpu: int
    time_wall: float
    # the field's own timestamp (repeats of it are dropped); where the driver stamps every read
    # with its own time, the refresh the update came from (rasd.telemetry.refreshgrid), once known
    nvml_timestamp_us: int
    watts: float


class PowerUpdates(Sequence[PowerSample]):
    """Distinct instant-power updates judged together (a pass's native reads), kept in columns
    per GPU: the power service stores them a GPU at a time, and no PowerSample is made per update
    (at 72 GPUs and 10 updates a second each, making them cost more than judging the reads). As a
    sequence they are PowerSamples in the order they were read, made when first asked for.

    ``columns``: per GPU index, (wall seconds, NVML timestamps in us, watts), oldest first;
    ``order``: the GPU index of each update, in the order read. Not changed once made."""

    __slots__ = ("columns", "order", "_samples")

    def __init__(self, columns: Mapping[int, tuple[list[float], list[int], list[float]]], order: list[int]):
        self.columns = columns
        self.order = order
        self._samples: list[PowerSample] | None = None

    def __len__(self) -> int:
        return len(self.order)

    def samples(self) -> list[PowerSample]:
        if self._samples is None:
            at = dict.fromkeys(self.columns, 0)
            out = []
            for g in self.order:
                walls, stamps, watts = self.columns[g]
                i = at[g]
                at[g] = i + 1
                out.append(PowerSample(g, walls[i], stamps[i], watts[i]))
            self._samples = out
        return self._samples

    @overload
    def __getitem__(self, i: int) -> PowerSample: ...

    @overload
    def __getitem__(self, i: slice) -> list[PowerSample]: ...

    def __getitem__(self, i: int | slice) -> PowerSample | list[PowerSample]:
        return self.samples()[i]

    def __iter__(self) -> Iterator[PowerSample]:
        return iter(self.samples())


@dataclass(frozen=True, slots=True)
class XidEvent:
    time_wall: float
    gpu: int
    xid: int
    message: str | None  # driver message text when the kernel log has it


# NVLink counters of one link, kept in ``GpuState.counters`` as ``nvlink<link>_<counter>``
NVLINK_COUNTERS = ("crc_flit_errors", "crc_data_errors", "replay_errors", "recovery_errors")


@functools.lru_cache(maxsize=4096)
def nvlink_counter_name(link: int, counter: str) -> str:
    """The key of a link's counter. One str object per (link, counter) for every GPU (kept):
    each GPU's counters hold 72 such keys on an 18-link GPU, and every poll's totals and deltas
    are keyed by them; a copy each held 0.3 MB at 72 GPUs."""
    return f"nvlink{link}_{counter}"


@dataclass(frozen=True, slots=True)
class GpuState:
    """What the snapshot says about one GPU: health plus its latest good sample."""

    index: int
    identity: GpuIdentity | None
    health: Health
    sample: GpuSample | None
    last_update_wall: float | None
    # monotonic totals (driver reloads / resets folded in), keyed by counter name
    counters: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    counter_resets: int = 0
    errors: Mapping[tuple[str, str], int] = field(default_factory=lambda: _EMPTY)  # (reading, ErrorKind.value) -> count
    unsupported: frozenset[str] = frozenset()
    poll_overruns: int = 0
    xid_counts: Mapping[int, int] = field(default_factory=lambda: _EMPTY)
    recent_xids: tuple[XidEvent, ...] = ()
    power_watts: float | None = None  # latest distinct instant-power reading (sampler)
    power_sample_rate_hz: float | None = None  # achieved distinct-update rate
    power_dedup: str | None = None  # how repeats are recognised: "timestamp" or "value"
    lost_reason: LostReason | None = None  # set only while health is LOST
    lost_detail: str | None = None  # NVML's own words for it (the reading or open that failed)


# --------------------------------------------------------------------------- faults and rungs


class Rung(enum.IntEnum):
    """The repair ladder, cheapest cure first."""

    NONE = 0
    EXCEPTION = 1
    RESTART_PROCESS = 2
    RESET_GPU = 3
    REBOOT_NODE = 4
    RMA = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> "Rung":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown rung {text!r}; expected one of {', '.join(r.label for r in cls)}"
            ) from None


class RecoveryAction(enum.IntEnum):
    """What the driver asks for (NVML field NVML_FI_DEV_GET_GPU_RECOVERY_ACTION and Xid 154),
    numbered as nvml.h's nvmlDeviceGpuRecoveryAction_t."""

    NONE = 0
    GPU_RESET = 1
    NODE_REBOOT = 2
    DRAIN_P2P = 3
    DRAIN_AND_RESET = 4
    RECOVER_IMEX_DOMAIN = 5
    BUS_RESET = 6
    SYSTEM_REBOOT = 7

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, code: int) -> "RecoveryAction | None":
        try:
            return cls(code)
        except ValueError:
            return None


class Scope(enum.Enum):
    LINK = "link"
    GPU = "gpu"
    NODE = "node"


class FaultKind(enum.Enum):
    """Kinds of fault event; the names match `rasd replay`'s event log."""

    XID = "xid"
    ECC = "ecc"
    REMAP = "remap"
    RETIRED_PAGES = "retired_pages"
    NVLINK = "nvlink"
    PCIE_REPLAY = "pcie_replay"
    RECOVERY_ACTION = "recovery_action"
    GPU_LOST = "gpu_lost"
    THERMAL = "thermal"
    SDC = "sdc"
    REMEDY = "remedy"
    NVSWITCH = "nvswitch"  # an NVSwitch SXid report: a fault of the node's fabric


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """Something happened to a GPU (or one of its links) that the ladder must weigh.

    ``details`` holds the per-kind fields named in README's event-log format, e.g. for ``xid``
    ``{"xid": 79, "message": "..."}``, for ``ecc`` ``{"volatile_uncorrected": 2}``.
    """

    time_wall: float
    gpu: int
    kind: FaultKind
    link: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __init__(self, time_wall: float, gpu: int, kind: FaultKind, link: int | None = None,
                 details: Mapping[str, Any] = _EMPTY) -> None:
        # written out rather than generated, each field through its slot's own setter (bound
        # below the class; the generated one looks up object.__setattr__ per field): a fleet's
        # replay builds millions of events
        _set_time_wall(self, time_wall)
        _set_gpu(self, gpu)
        _set_kind(self, kind)
        _set_link(self, link)
        _set_details(self, details)


# the slots' setters the written-out ``FaultEvent.__init__`` writes its fields with (what
# object.__setattr__ would find for each, found once)
(_set_time_wall, _set_gpu, _set_kind, _set_link, _set_details) = (
    FaultEvent.__dict__[name].__set__ for name in ("time_wall", "gpu", "kind", "link", "details"))
