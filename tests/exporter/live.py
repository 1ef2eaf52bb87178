"""A whole daemon's exposition, in-process: every section over a fake node, without threads."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from exporters.prometheus import make_registry
from rasd import config
from rasd.daemon import Daemon


def live_exposition(fake, tmp_path: Path, scenario: str | None = None, ticks: int = 2, clock=None) -> str:
    cfg = config.Config.default()
    from dataclasses import replace

    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp_path / "rasd.db"), control_socket=str(tmp_path / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    kw = {"clock": clock} if clock is not None else {}
    be = fake(scenario, **kw)
    d = Daemon(cfg, be, hostname="node-a")
    try:
        for _ in range(ticks):
            for p in d.pollers:
                p.poll_once()
            d.sampler.round()
            d.tick()
            if clock is not None:
                clock.advance(1.0)
        return generate_latest(make_registry(lambda: d.snapshot)).decode()
    finally:
        d.stop()


def sample_name(name: str, typ: str) -> str:
    """The name a user queries: counters end in _total and info in _info (text format 0.0.4
    already declares a counter's family with the suffix; OpenMetrics does not)."""
    suffix = {"counter": "_total", "info": "_info"}.get(typ, "")
    return name if name.endswith(suffix) else name + suffix


def exported_names(text: str) -> set[str]:
    """Sample names as a user queries them (counters with _total, info with _info)."""
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, typ = m.groups()
        names.add(sample_name(name, typ))
    return names


def readme_names(readme: Path) -> set[str]:
    return set(re.findall(r"^\| `(rasd_[a-z0-9_]+)`", readme.read_text(), re.M))
