"""Scenario files: TOML scripts of faults for the fake NVML backend.

``load_scenario(name_or_path)`` reads a packaged scenario (``rasd/backends/scenarios/NAME.toml``,
found with importlib.resources so it works from a wheel) or a file. The format is documented in
``rasd/backends/scenarios/FORMAT.md``. Every problem in a file is collected and reported in one
``ScenarioError`` line naming the file and each key (``event[3].gpu: ...``).
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from rasd.backends._tomlread import TableReader
from rasd.backends.profiles import ALIASES, PROFILES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_PACKAGE = "rasd.backends.scenarios"
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
)
NVLINK_COUNTERS = ("crc_flit", "crc_data", "replay", "recovery")
THERMAL_REASONS = {"sw_thermal": 0x20, "hw_thermal": 0x40, "hw_slowdown": 0x8}
RECOVERY_ACTIONS = {"none": 0, "gpu_reset": 1, "node_reboot": 2, "drain_p2p": 3, "drain_and_reset": 4}
SDC_KINDS = ("gemm_bitflip", "memory_stuck", "memory_flip")
SDC_DTYPES = ("float64", "float32", "float16", "bfloat16")
_DTYPE_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}

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
        return problems


# --------------------------------------------------------------------------- loading


def packaged_scenarios() -> list[str]:
    """Names of the scenarios shipped with rasd."""
    root = resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A packaged scenario by name, or a TOML file by path."""
    text_name = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text_name or text_name.endswith(".toml")
    if not looks_like_path:
        res = resources.files(_PACKAGE) / f"{text_name}.toml"
        if not res.is_file():
            raise ScenarioError(
                text_name,
                [f"no packaged scenario of that name; use one of {', '.join(packaged_scenarios())} or a path to a .toml file"],
            )
        return parse_scenario(res.read_text(encoding="utf-8"), source=f"scenario {text_name}", name=text_name)
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(path), [f"cannot read the file ({e.strerror}); check the path"]) from None
    return parse_scenario(text, source=str(path), name=path.stem)


def parse_scenario(text: str, source: str = "<scenario>", name: str = "scenario") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(source, [f"not valid TOML ({e}); fix the syntax"]) from None
    problems: list[str] = []
    top = TableReader(raw, "", problems)
    description = top.text("description", "") or ""
    node = _parse_node(_table(top, "node"), problems)
    wl_table = _table(top, "workload")
    workload = _parse_workload(wl_table, problems) if "workload" in raw else None
    events = tuple(
        ev
        for i, t in enumerate(_tables(top, "event"))
        if (ev := _parse_event(i, t, problems)) is not None
    )
    faults = tuple(
        f
        for i, t in enumerate(_tables(top, "sdc_fault"))
        if (f := _parse_sdc(i, t, problems, node.seed or 0)) is not None
    )
    top.finish()
    if problems:
        raise ScenarioError(source, problems)
    scenario = Scenario(name, source, description, node, workload, events, faults)
    if node.gpus is not None or node.profile is not None:
        profile = ALIASES.get(node.profile or "h100-sxm-80gb", node.profile or "h100-sxm-80gb")
        bound = scenario.check_node(node.gpus or 8, profile)
        if bound:
            raise ScenarioError(source, bound)
    return scenario


def _table(top: TableReader, name: str) -> dict[str, Any]:
    v = top.raw(name)
    if v is None:
        return {}
    if not isinstance(v, dict):
        top.problem(name, f"must be a table; write [{name}]")
        return {}
    return v


def _tables(top: TableReader, name: str) -> list[dict[str, Any]]:
    v = top.raw(name)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        top.problem(name, f"must be an array of tables; write [[{name}]] before each entry")
        return []
    return v


def _parse_node(t: dict[str, Any], problems: list[str]) -> NodeSpec:
    r = TableReader(t, "node", problems)
    profiles = sorted(PROFILES) + sorted(ALIASES)
    spec = NodeSpec(
        profile=r.choice("profile", profiles),
        gpus=r.integer("gpus", lo=1, hi=64),
        seed=r.integer("seed", lo=0),
    )
    r.finish()
    return spec


def _parse_workload(t: dict[str, Any], problems: list[str]) -> WorkloadSpec:
    r = TableReader(t, "workload", problems)
    d = WorkloadSpec()
    spec = WorkloadSpec(
        kind=r.choice("kind", ("training", "idle"), d.kind),
        seed=r.integer("seed", lo=0),
        step_seconds=r.number("step_seconds", lo=0.05, hi=60.0),
        compute_fraction=r.number("compute_fraction", d.compute_fraction, lo=0.05, hi=0.95),
        compute_power_ratio=r.number("compute_power_ratio", d.compute_power_ratio, lo=0.05, hi=1.5),
        comm_power_ratio=r.number("comm_power_ratio", d.comm_power_ratio, lo=0.0, hi=1.5),
        jitter_ms=r.number("jitter_ms", d.jitter_ms, lo=0.0, hi=1000.0),
        checkpoint_every_seconds=r.number("checkpoint_every_seconds", d.checkpoint_every_seconds, lo=0.0),
        checkpoint_seconds=r.number("checkpoint_seconds", d.checkpoint_seconds, lo=0.0),
        idle_gpus=r.integers("idle_gpus"),
    )
    r.finish()
    return spec


def _gpus(r: TableReader, default_all: bool) -> tuple[int, ...] | None:
    v = r.raw("gpu")
    if v is None:
        if not default_all:
            r.problem("gpu", "is required for this kind; add gpu = 0 (or a list, or \"all\")")
        return ALL_GPUS
    if v == "all":
        return ALL_GPUS
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return (v,)
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        return tuple(v)
    r.problem("gpu", f"{v!r} is not a GPU index; write gpu = 0, gpu = [0, 3] or gpu = \"all\"")
    return ALL_GPUS


# Kinds that may leave out ``gpu`` (meaning every GPU).
_GPU_OPTIONAL = {EventKind.RESET, EventKind.NVML_ERROR, EventKind.NVML_HANG}


def _parse_event(i: int, t: dict[str, Any], problems: list[str]) -> Event | None:
    r = TableReader(t, f"event[{i}]", problems)
    before = len(problems)
    kind_name = r.choice("kind", [k.value for k in EventKind], required=True)
    at = r.number("at", lo=0.0, required=True)
    if kind_name is None:
        return None
    kind = EventKind(kind_name)
    gpus = _gpus(r, kind in _GPU_OPTIONAL)
    end = _end(r, at or 0.0)
    p: dict[str, Any] = {}
    if kind is EventKind.XID:
        p["xid"] = r.integer("xid", lo=1, hi=999, required=True)
        p["message"] = r.text("message", XID_MESSAGES.get(p["xid"] or 0, "Unspecified driver error"))
        p["pid"] = r.integer("pid", 0, lo=0)
        p["process"] = r.text("process", "python")
    elif kind is EventKind.ECC:
        p["type"] = r.choice("type", ("corrected", "uncorrected"), required=True)
        p["count"] = r.integer("count", 1, lo=1)
    elif kind is EventKind.ROW_REMAP:
        p["correctable"] = r.integer("correctable", 0, lo=0)
        p["uncorrectable"] = r.integer("uncorrectable", 0, lo=0)
        p["pending"] = r.flag("pending")
        p["failure"] = r.flag("failure")
    elif kind is EventKind.RETIRED_PAGES:
        p["cause"] = r.choice("cause", ("single_bit", "double_bit"), required=True)
        p["count"] = r.integer("count", 1, lo=1, hi=4096)
        p["pending"] = r.flag("pending")
    elif kind in (EventKind.NVLINK_DOWN, EventKind.NVLINK_FLAP, EventKind.NVLINK_ERRORS):
        p["link"] = r.integer("link", lo=0, hi=63, required=True)
        if kind is EventKind.NVLINK_FLAP:
            p["times"] = r.integer("times", 3, lo=1)
            p["period_seconds"] = r.number("period_seconds", 2.0, lo=0.01)
        if kind is EventKind.NVLINK_ERRORS:
            p["counter"] = r.choice("counter", NVLINK_COUNTERS, required=True)
            p["rate_per_second"] = r.number("rate_per_second", lo=0.0, required=True)
    elif kind is EventKind.PCIE_REPLAY:
        p["rate_per_second"] = r.number("rate_per_second", lo=0.0, required=True)
    elif kind is EventKind.THERMAL:
        p["temperature_rise_celsius"] = r.number("temperature_rise_celsius", 25.0, lo=0.0, hi=100.0)
        p["reasons"] = r.choices("reasons", tuple(THERMAL_REASONS), ("sw_thermal", "hw_thermal"))
    elif kind is EventKind.FALL_OFF_BUS:
        p["message"] = r.text("message", XID_MESSAGES[79])
    elif kind in (EventKind.NVML_ERROR, EventKind.NVML_HANG):
        p["function"] = r.text("function", "*")
        if p["function"] != "*" and not str(p["function"]).startswith("nvml"):
            r.problem("function", f"{p['function']!r} is not an NVML function name; write e.g. \"nvmlDeviceGetPowerUsage\" or \"*\"")
        p["calls"] = r.integer("calls", lo=1)
        if kind is EventKind.NVML_ERROR:
            p["error"] = r.choice("error", NVML_ERRORS, required=True)
        else:
            p["seconds"] = r.number("seconds", lo=0.0, hi=3600.0, required=True)
    elif kind is EventKind.RECOVERY_ACTION:
        v = r.raw("value")
        if isinstance(v, str) and v in RECOVERY_ACTIONS:
            p["value"] = RECOVERY_ACTIONS[v]
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
            p["value"] = v
        else:
            r.problem("value", f"{v!r} is not a recovery action; use 0..4 or one of {', '.join(RECOVERY_ACTIONS)}")
    _check_window(kind, r, end, at)
    r.finish()
    if len(problems) > before:
        return None
    return Event(i, kind, float(at), end, gpus, MappingProxyType(p))


def _end(r: TableReader, at: float) -> float | None:
    duration = r.number("duration_seconds", lo=0.0)
    until = r.number("until", lo=0.0)
    if duration is not None and until is not None:
        r.problem("until", "give duration_seconds or until, not both; drop one")
        return None
    if until is not None:
        if until < at:
            r.problem("until", f"{until} is before at = {at}; make until later than at")
            return None
        return until
    return at + duration if duration is not None else None


# Kinds whose effect needs a time window (a rate over a duration).
_NEEDS_END = {EventKind.NVLINK_ERRORS, EventKind.PCIE_REPLAY}
_POINT_KINDS = {
    EventKind.XID,
    EventKind.FALL_OFF_BUS,
    EventKind.RESET,
    EventKind.ROW_REMAP,
    EventKind.RETIRED_PAGES,
    EventKind.RECOVERY_ACTION,
    EventKind.NVLINK_FLAP,
}


def _check_window(kind: EventKind, r: TableReader, end: float | None, at: float | None) -> None:
    has_window = r.has("duration_seconds") or r.has("until")
    if kind in _NEEDS_END and not has_window:
        r.problem("duration_seconds", f"is required for {kind.value} (a rate needs a duration); add duration_seconds = 10")
    if kind in _POINT_KINDS and has_window:
        r.problem("duration_seconds", f"{kind.value} happens at one instant; remove duration_seconds/until")


def _parse_sdc(i: int, t: dict[str, Any], problems: list[str], node_seed: int) -> SdcFault | None:
    r = TableReader(t, f"sdc_fault[{i}]", problems)
    before = len(problems)
    gpu = r.integer("gpu", lo=0, required=True)
    kind = r.choice("kind", SDC_KINDS, required=True)
    dtypes = r.choices("dtypes", SDC_DTYPES)
    bit = r.integer("bit", 0, lo=0, hi=63)
    narrowest = min((_DTYPE_BITS[d] for d in dtypes), default=64)
    if kind == "gemm_bitflip" and bit is not None and bit >= narrowest and dtypes:
        r.problem("bit", f"{bit} does not exist in {'/'.join(dtypes)} ({narrowest} bits); use 0..{narrowest - 1}")
    min_size = r.integer("min_size", 0, lo=0)
    max_size = r.integer("max_size", lo=1)
    if max_size is not None and min_size is not None and max_size < min_size:
        r.problem("max_size", f"{max_size} is below min_size = {min_size}; raise it")
    addresses = r.integers("addresses")
    if kind in ("memory_stuck", "memory_flip") and not addresses:
        r.problem("addresses", f"{kind} needs byte offsets; add addresses = [4096]")
    at = r.number("at", 0.0, lo=0.0)
    until = r.number("until", lo=0.0)
    if until is not None and at is not None and until <= at:
        r.problem("until", f"{until} is not after at = {at}; make until later")
    fault = SdcFault(
        gpu=gpu if gpu is not None else 0,
        kind=kind or "gemm_bitflip",
        bit=bit if bit is not None else 0,
        fraction=r.number("fraction", 0.0, lo=0.0, hi=1.0),
        dtypes=dtypes,
        min_size=min_size or 0,
        max_size=max_size,
        min_power_watts=r.number("min_power_watts", 0.0, lo=0.0),
        min_temperature_celsius=r.number("min_temperature_celsius", 0.0, lo=-50.0),
        probability=r.number("probability", 1.0, lo=0.0, hi=1.0),
        deterministic=r.flag("deterministic", True),
        addresses=addresses,
        stuck_value=r.integer("stuck_value", 0, lo=0, hi=1),
        at=at if at is not None else 0.0,
        until=until,
        seed=r.integer("seed", (node_seed * 1_000_003 + i * 7919) % (2**31), lo=0),
    )
    r.finish()
    return fault if len(problems) == before else None
