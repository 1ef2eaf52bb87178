"""TOML configuration -> frozen dataclasses.

Each table of the file is one settings dataclass, owned by the package that uses it; this module
only composes them and validates generically from the dataclass fields. Every bad key or value
is collected and reported at once (``ConfigError.problems``), never the first one only.

Supported field types: bool, int, float, str, ``tuple[str, ...]``, ``tuple[float, ...]``,
``tuple[int, ...]`` and ``Mapping[str, tuple[str, ...]]`` (a table of argument lists).
Optional fields (``X | None``) accept the value or are left out.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

DEFAULT_PORT = 9863
DEFAULT_CONFIG_PATH = "/etc/rasd/rasd.toml"


class ConfigError(ValueError):
    """Raised with every problem found; ``str()`` is one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"  # HOST:PORT of the /metrics server
    state_path: str = ""  # SQLite store; "" = /var/lib/rasd/rasd.db (nvml) or a per-user path (fake)
    control_socket: str = ""  # "" = /run/rasd/control.sock (root) or a per-user path
    control_group: str = ""  # group allowed to use the control socket ("" = root only)
    log_level: str = "info"
    watchdog: bool = True  # send WATCHDOG=1 when systemd asks for it


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    health_interval_seconds: float = 1.0
    slow_interval_seconds: float = 30.0  # counters and NVLink: read this often, Xids read them sooner
    poll_deadline_seconds: float = 2.0  # a GPU whose poll runs longer is marked stale
    power_sample_hz: float = 12.5  # 1..100; above NVML's 10 Hz refresh, so no update is missed
    native_power_reads: bool = True  # read instant power on a native thread where rasd was built with it
    xid_wait_ms: int = 2000  # the main loop asks every pass; this is for a late pass
    recent_xids: int = 16
    kernel_log: str = "/dev/kmsg"  # where driver Xid messages are read from ("" = off)


def _section_types() -> dict[str, type]:
    sections: dict[str, type] = {"daemon": DaemonSettings, "telemetry": TelemetrySettings}
    sections.update(_area_sections())
    return sections


def _area_sections() -> dict[str, type]:
    """Settings owned by the ladder, SDC and power packages (imported lazily: no cycles)."""
    from rasd.ladder.settings import ActionSettings, LadderSettings
    from rasd.power.settings import PowerSettings
    from rasd.scheduler.settings import SchedulerSettings
    from rasd.sdc.settings import SdcSettings

    return {
        "ladder": LadderSettings,
        "actions": ActionSettings,
        "sdc": SdcSettings,
        "power": PowerSettings,
        "scheduler": SchedulerSettings,
    }


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    ladder: Any = None
    actions: Any = None
    sdc: Any = None
    power: Any = None
    scheduler: Any = None

    @classmethod
    def default(cls) -> "Config":
        return cls(**{name: t() for name, t in _section_types().items()})


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the defaults."""
    if path is None:
        return Config.default()
    # open(), not pathlib: nothing else a daemon on NVML runs needs pathlib, which brings
    # urllib.parse and ipaddress with it (0.6 MB of its memory)
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(p, [f"cannot read the file ({e.strerror}); check the path"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(p, [f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                                "save the file as UTF-8"]) from None
    return parse(text, source=p)


def parse(text: str, source: str = "<config>") -> Config:
    # The TOML parser loads only when there is a file to read: a daemon at its defaults never
    # reads one (the parser's modules and compiled patterns: about 0.1 MB of a daemon's RSS).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 on Ubuntu 22.04
        import tomli as tomllib
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"not valid TOML: {e}; fix the syntax"]) from None
    problems: list[str] = []
    sections = _section_types()
    built: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in sections:
            problems.append(
                f"unknown table [{name}]; known tables: {', '.join(sorted(sections))}"
            )
        elif not isinstance(value, dict):
            problems.append(f"[{name}] must be a table, got {type(value).__name__}")
    for name, cls in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            built[name] = cls()
            continue
        built[name] = build_section(cls, table, name, problems)
    cfg = Config(**built)  # bad values were left at their defaults: check the rest too
    _check_semantics(cfg, problems)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def build_section(cls: type, table: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    """Validate ``table`` against the dataclass ``cls``; append problems, return an instance."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            problems.append(
                f"unknown key {prefix}.{key}; known keys: {', '.join(sorted(fields))}"
            )
            continue
        ok, converted, why = _convert(hints[key], value)
        if ok:
            kwargs[key] = converted
        else:
            problems.append(f"{prefix}.{key} = {value!r}: {why}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        problems.append(f"[{prefix}] {e}")
        return cls()
    check = getattr(obj, "validate", None)
    if callable(check):
        for why in check():
            problems.append(f"{prefix}.{why}")
    return obj


def _convert(tp: Any, value: Any) -> tuple[bool, Any, str]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value)
    if tp is bool:
        return (isinstance(value, bool), value, "expected true or false")
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (ok, value, "expected a whole number")
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (ok, float(value) if ok else value, "expected a number")
    if tp is str:
        return (isinstance(value, str), value, "expected a string")
    if origin is tuple:
        elem = args[0] if args else str
        if not isinstance(value, list):
            return (False, value, f"expected a list of {_tname(elem)}")
        out = []
        for v in value:
            ok, c, _ = _convert(elem, v)
            if not ok:
                return (False, value, f"expected a list of {_tname(elem)}, found {v!r}")
            out.append(c)
        return (True, tuple(out), "")
    if origin in (collections.abc.Mapping, dict) or tp is dict:
        vt = args[1] if len(args) == 2 else Any
        if not isinstance(value, dict):
            return (False, value, "expected a table")
        out_map = {}
        for k, v in value.items():
            if vt is Any:
                out_map[k] = v
                continue
            ok, c, why = _convert(vt, v)
            if not ok:
                return (False, value, f"entry {k!r}: {why}")
            out_map[k] = c
        return (True, MappingProxyType(out_map), "")
    return (True, value, "")


def _tname(tp: Any) -> str:
    return {str: "strings", int: "whole numbers", float: "numbers", bool: "booleans"}.get(
        tp, str(tp)
    )


def _check_semantics(cfg: Config, problems: list[str]) -> None:
    t = cfg.telemetry
    if not 0.05 <= t.health_interval_seconds <= 3600:
        problems.append("telemetry.health_interval_seconds must be between 0.05 and 3600")
    if not 0 <= t.slow_interval_seconds <= 3600:
        problems.append("telemetry.slow_interval_seconds must be between 0 and 3600")
    if t.poll_deadline_seconds <= 0:
        problems.append("telemetry.poll_deadline_seconds must be positive")
    if not 1 <= t.power_sample_hz <= 100:
        problems.append("telemetry.power_sample_hz must be between 1 and 100")
    try:
        parse_listen(cfg.daemon.listen)
    except ValueError as e:
        problems.append(f"daemon.listen: {e}")
    if cfg.daemon.log_level.lower() not in ("debug", "info", "warning", "error"):
        problems.append("daemon.log_level must be one of debug, info, warning, error")
    _check_control(cfg.daemon, problems)


def _check_control(d: DaemonSettings, problems: list[str]) -> None:
    """A socket the daemon could not create, or a group that does not exist, would leave the
    daemon unreachable or its socket root-only: both are configuration errors, found here."""
    import grp

    from rasd.control import check_socket_path

    if d.control_socket:
        why = check_socket_path(d.control_socket)
        if why:
            problems.append(f"daemon.control_socket: {why}")
    if d.control_group:
        try:
            grp.getgrnam(d.control_group)
        except KeyError:
            problems.append(f"daemon.control_group = {d.control_group!r}: no such group on this node; "
                            "create it (groupadd) or leave it empty for root only")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_PORT})")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
