"""The scenario vocabulary: event kinds, events, SDC faults, node and workload settings.

Plain frozen data produced by ``rasd.backends.fake.scenario`` (the parser) and read by the fake node.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from rasd.backends.fake.profiles import PROFILES
from rasd.model import RecoveryAction

ALL_GPUS = None  # Event.gpus value meaning "every GPU on the node"


class ScenarioError(ValueError):
    """One line: the file, then every ``key: what is wrong; fix`` found in it."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class EventKind(enum.Enum):
    XID = "xid"
    ECC = "ecc"
    ROW_REMAP = "row_remap"
    RETIRED_PAGES = "retired_pages"
    NVLINK_DOWN = "nvlink_down"
    NVLINK_FLAP = "nvlink_flap"
    NVLINK_ERRORS = "nvlink_errors"
    PCIE_REPLAY = "pcie_replay"
    THERMAL = "thermal"
    FALL_OFF_BUS = "fall_off_bus"
    RESET = "reset"
    NVML_ERROR = "nvml_error"
    NVML_HANG = "nvml_hang"
    RECOVERY_ACTION = "recovery_action"


NVML_ERRORS = (
    "not_supported",
    "unknown",
    "timeout",
    "no_permission",
    "gpu_is_lost",
    "invalid_argument",
    "reset_required",
    "insufficient_power",
    "irq_issue",
    "deprecated",
    "function_not_found",
)
NVLINK_COUNTERS = ("crc_flit", "crc_data", "replay", "recovery")
THERMAL_REASONS = {"sw_thermal": 0x20, "hw_thermal": 0x40, "hw_slowdown": 0x8}
RECOVERY_ACTIONS = {a.label: int(a) for a in RecoveryAction}
SDC_KINDS = ("gemm_bitflip", "memory_stuck", "memory_flip")
SDC_DTYPES = ("float64", "float32", "float16", "bfloat16")
DTYPE_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}

# Default driver text per Xid when an event gives none (the text after "<xid>, pid=..., name=...,").
XID_MESSAGES = {
    13: "Graphics Exception: ESR 0x50da30=0x80009 0x50da34=0x0 0x50da28=0x0 0x50da2c=0x1174",
    31: "Ch 00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f2a_1c000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
    43: "Ch 00000010, engmask 00000101",
    45: "Ch 00000010, engmask 00000101, intr 10000000",
    48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.",
    63: "Row Remapper: New row (0x0000000000a15f00) was marked for remapping, reset gpu to activate.",
    64: "Row Remapper: Failed to remap row (0x0000000000a15f00), rows exhausted.",
    74: "NVLink: fatal error detected on link 4(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)",
    79: "GPU has fallen off the bus.",
    92: "High single-bit ECC error rate detected.",
    94: "Contained: SM (0x1). RST: No, D-RST: No",
    95: "Uncontained: FBHUB. RST: Yes, D-RST: No",
    119: "Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL).",
    154: "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)",
}


@dataclass(frozen=True, slots=True)
class NodeSpec:
    profile: str | None = None
    gpus: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """Real PIDs NVML names as processes on one GPU (so job attribution can be tested)."""

    gpu: int
    pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """The simulated job. Power ratios are shares of the GPU's default power limit."""

    kind: str = "training"  # training | idle
    seed: int | None = None  # None: the node's seed
    step_seconds: float | None = None  # None: drawn from the seed in 0.3..3 s
    compute_fraction: float = 0.65  # share of a step spent computing
    compute_power_ratio: float = 1.02  # demand while computing (above 1: the cap clips it)
    comm_power_ratio: float = 0.45  # demand while communicating
    jitter_ms: float = 4.0  # per-GPU phase offset, at most
    checkpoint_every_seconds: float = 60.0  # 0: no checkpoints
    checkpoint_seconds: float = 4.0
    idle_gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One scripted event. ``gpus`` is None for every GPU; ``end`` is None for "never ends"."""

    index: int
    kind: EventKind
    at: float
    end: float | None
    gpus: tuple[int, ...] | None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def applies_to(self, gpu: int) -> bool:
        return self.gpus is None or gpu in self.gpus

    def active(self, t: float) -> bool:
        return self.at <= t and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class SdcFault:
    """A silent-data-corruption fault the SDC engine injects into its own results.

    ``bit`` indexes the element's bits from the least significant (62: a float64 exponent bit,
    10: a float32 mantissa bit). ``fraction`` is the share of GEMM output elements corrupted
    (always at least one). ``deterministic`` faults hit the same elements and bit every run, so
    comparing a GPU with itself cannot see them. Times are seconds since the node started.
    """

    gpu: int
    kind: str  # gemm_bitflip | memory_stuck | memory_flip
    bit: int = 0
    fraction: float = 0.0
    dtypes: tuple[str, ...] = ()  # empty: every dtype
    min_size: int = 0
    max_size: int | None = None
    min_power_watts: float = 0.0
    min_temperature_celsius: float = 0.0
    probability: float = 1.0
    deterministic: bool = True
    addresses: tuple[int, ...] = ()  # byte offsets (memory faults)
    stuck_value: int = 0  # memory_stuck: the value the bit is stuck at
    at: float = 0.0
    until: float | None = None
    seed: int = 0  # drawn per fault from the scenario seed: where a deterministic fault lands

    def active(self, t: float) -> bool:
        return self.at <= t and (self.until is None or t < self.until)

    def applies(self, dtype: str, size: int, power_watts: float, temperature_celsius: float) -> bool:
        """Whether a run of ``dtype`` at matrix size ``size`` under these conditions is exposed."""
        if self.dtypes and dtype not in self.dtypes:
            return False
        if size < self.min_size or (self.max_size is not None and size > self.max_size):
            return False
        return power_watts >= self.min_power_watts and temperature_celsius >= self.min_temperature_celsius


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    source: str
    description: str = ""
    node: NodeSpec = field(default_factory=NodeSpec)
    workload: WorkloadSpec | None = None
    events: tuple[Event, ...] = ()
    sdc_faults: tuple[SdcFault, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()

    def check_node(self, gpu_count: int, profile_key: str) -> list[str]:
        """Problems binding this scenario to a node (GPU indexes, links, profile features)."""
        profile = PROFILES[profile_key]
        problems: list[str] = []

        def gpu_ok(key: str, g: int) -> None:
            if g >= gpu_count:
                problems.append(f"{key}: GPU {g} does not exist; this node has GPUs 0..{gpu_count - 1}")

        for ev in self.events:
            key = f"event[{ev.index}]"
            for g in ev.gpus or ():
                gpu_ok(f"{key}.gpu", g)
            link = ev.params.get("link")
            if link is not None and link >= profile.nvlink_count:
                problems.append(
                    f"{key}.link: {profile_key} has links 0..{profile.nvlink_count - 1}; pick one of those"
                )
            if ev.kind is EventKind.RETIRED_PAGES and not profile.page_retirement:
                problems.append(
                    f"{key}.kind: {profile_key} has no page retirement (NVML answers NotSupported); "
                    "use profile v100-sxm2-32gb or a row_remap event"
                )
            if ev.kind is EventKind.ROW_REMAP and not profile.row_remapping:
                problems.append(f"{key}.kind: {profile_key} has no row remapping; use retired_pages")
            if ev.kind is EventKind.NVLINK_ERRORS and not profile.nvlink_error_counters:
                problems.append(
                    f"{key}.kind: {profile_key} does not support the NVLink error counters; "
                    "use an h100/a100 profile"
                )
        for i, f in enumerate(self.sdc_faults):
            gpu_ok(f"sdc_fault[{i}].gpu", f.gpu)
        for g in self.workload.idle_gpus if self.workload else ():
            gpu_ok("workload.idle_gpus", g)
        for i, ps in enumerate(self.processes):
            gpu_ok(f"process[{i}].gpu", ps.gpu)
        return problems
