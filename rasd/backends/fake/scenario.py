"""Scenario files: TOML scripts of faults for the fake NVML backend.

``load_scenario(name_or_path)`` reads a packaged scenario (``rasd/backends/fake/scenarios/NAME.toml``,
found with importlib.resources so it works from a wheel) or a file. The format is documented in
``rasd/backends/fake/scenarios/FORMAT.md``. Every problem in a file is collected and reported in one
``ScenarioError`` line naming the file and each key (``event[3].gpu: ...``).
"""

from __future__ import annotations

import difflib
import functools
import sys
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rasd.backends.fake._tomlread import TableReader
from rasd.backends.fake.profiles import ALIASES, PROFILES
from rasd.backends.fake.scenario_model import (
    DTYPE_BITS as _DTYPE_BITS,
    ALL_GPUS,
    NVLINK_COUNTERS,
    NVML_ERRORS,
    RECOVERY_ACTIONS,
    SDC_DTYPES,
    SDC_KINDS,
    THERMAL_REASONS,
    XID_MESSAGES,
    Event,
    EventKind,
    NodeSpec,
    ProcessSpec,
    Scenario,
    ScenarioError,
    SdcFault,
    WorkloadSpec,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_PACKAGE = "rasd.backends.fake.scenarios"

__all__ = [
    "ALL_GPUS", "NVLINK_COUNTERS", "NVML_ERRORS", "RECOVERY_ACTIONS", "SDC_DTYPES", "SDC_KINDS",
    "THERMAL_REASONS", "XID_MESSAGES", "Event", "EventKind", "NodeSpec", "Scenario",
    "ScenarioError", "SdcFault", "WorkloadSpec", "load_scenario", "packaged_scenarios",
    "parse_scenario",
]


# --------------------------------------------------------------------------- loading


def packaged_scenarios() -> list[str]:
    """Names of the scenarios shipped with rasd."""
    root = resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


@functools.lru_cache(maxsize=1)
def _fake_functions() -> frozenset[str]:
    """The NVML calls the fake library implements: the only ones a fault can be injected into."""
    from rasd.backends.fake.nvml import FakeNvml  # imports this module: not at the top

    return frozenset(n for n in dir(FakeNvml) if n.startswith("nvml"))


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
    except UnicodeDecodeError as e:
        raise ScenarioError(str(path), [f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                                        "save the file as UTF-8"]) from None
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
    processes = tuple(_parse_process(i, t, problems) for i, t in enumerate(_tables(top, "process")))
    top.finish()
    scenario = Scenario(name, source, description, node, workload, events, faults, processes)
    if node.gpus is not None or node.profile is not None:
        # Bind to the node the file names (GPU range only if it says how many); the fake node
        # checks again against the node it really builds.
        key = node.profile or "h100-sxm-80gb"
        problems += scenario.check_node(node.gpus or 64, ALIASES.get(key, key))
    if problems:
        raise ScenarioError(source, problems)
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


def _parse_process(i: int, t: dict[str, Any], problems: list[str]) -> ProcessSpec:
    r = TableReader(t, f"process[{i}]", problems)
    gpu = r.integer("gpu", lo=0)
    if gpu is None:
        r.problem("gpu", "is required; add gpu = 0")
    spec = ProcessSpec(gpu or 0, r.integers("pids", lo=1))
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
        elif p["function"] != "*" and p["function"] not in _fake_functions():
            near = difflib.get_close_matches(str(p["function"]), sorted(_fake_functions()), n=1)
            hint = f"did you mean {near[0]!r}?" if near else 'see FORMAT.md, or write "*" for every call'
            r.problem("function", f"{p['function']!r} is not an NVML call the fake node answers (a fault there "
                      f"would never fire); {hint}")
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
            r.problem("value", f"{v!r} is not a recovery action; use 0..7 or one of {', '.join(RECOVERY_ACTIONS)}")
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
