"""README's metric table, generated from real expositions of a daemon that has seen everything.

Three fake nodes run the whole daemon in-process on a hand-moved clock, each long enough for every
section to have data: an H100 node with faults of every kind, an SDC check and NVLink counters; a
GB200 node whose swinging training load gets analysed, smoothed and budgeted; a V100 node for
retired pages (the pre-Ampere mechanism) and a GPU that cannot be opened (insufficient power).
The table lists every family once: the name as it is queried (counters with ``_total``, info with ``_info``), its type, the label names its samples carry,
and its help text. Parsing uses prometheus_client's own exposition parser.

    python -m tests.exporter.metric_table           # print the table
    python -m tests.exporter.metric_table --write   # replace README's table with it
"""

from __future__ import annotations

import re
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.prometheus import make_registry
from rasd import config
from rasd.backends import open_backend
from rasd.backends.fake.clock import ManualClock
from rasd.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
HEADER = "| metric | type | labels | meaning |\n| --- | --- | --- | --- |"

FAULTS_H100 = """
    [workload]
    kind = "idle"

    [[event]]
    kind = "xid"
    at = 1.0
    gpu = 0
    xid = 48

    [[event]]
    kind = "xid"
    at = 1.0
    gpu = 4
    xid = 165

    [[event]]
    kind = "ecc"
    at = 1.0
    gpu = 0
    type = "uncorrected"
    count = 2

    [[event]]
    kind = "row_remap"
    at = 1.0
    gpu = 0
    uncorrectable = 1
    pending = true

    [[event]]
    kind = "nvlink_errors"
    at = 1.0
    duration_seconds = 5.0
    gpu = 2
    link = 7
    counter = "replay"
    rate_per_second = 2.0

    [[event]]
    kind = "nvlink_down"
    at = 2.0
    gpu = 2
    link = 7

    [[event]]
    kind = "nvml_error"
    at = 0.0
    gpu = 1
    function = "nvmlDeviceGetPcieReplayCounter"
    error = "timeout"
    calls = 1

    [[event]]
    kind = "recovery_action"
    at = 2.0
    gpu = 3
    value = "gpu_reset"

    [[sdc_fault]]
    gpu = 5
    kind = "gemm_bitflip"
    bit = 30
    fraction = 0.0001
    dtypes = ["float32", "float64"]
    deterministic = true
    """

SWING_GB200 = """
    [node]
    profile = "gb200"
    gpus = 4

    [workload]
    kind = "training"
    step_seconds = 1.0
    compute_power_ratio = 1.0
    comm_power_ratio = 0.2
    """

RETIRED_V100 = """
    [node]
    profile = "v100"
    gpus = 2

    [[event]]
    kind = "retired_pages"
    at = 1.0
    gpu = 0
    cause = "double_bit"
    count = 1

    [[event]]
    kind = "nvml_error"
    at = 0.0
    gpu = 1
    function = "nvmlDeviceGetHandleByIndex"
    error = "insufficient_power"
    """


def _config(tmp: Path) -> config.Config:
    """Private state; slow counters read every poll; actions enforced with a harmless command (so remedies run and are
    counted); a node swing and ramp limit the GB200 load exceeds (so smoothing is decided)."""
    cfg = config.Config.default()
    harmless = MappingProxyType({k: ("true",) for k in ("reset_gpu", "reboot_node", "drain", "restart_process")})
    return replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / "rasd.db"), control_socket=str(tmp / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log="", slow_interval_seconds=1.0),
        ladder=replace(cfg.ladder, node_remedy_count=1),
        actions=replace(cfg.actions, enforce=True, commands=harmless, min_interval_seconds=0.0),
        power=replace(cfg.power, allowed_swing_percent=50.0, energy_budget_percent=100.0, max_ramp_watts_per_second=1000.0),
    )


def _run(tmp: Path, scenario: str, seconds: float, sdc: bool = False) -> str:
    path = tmp / "scenario.toml"
    path.write_text(textwrap.dedent(scenario))
    clock = ManualClock(1000.0)
    be = open_backend("fake", str(path), clock=clock)
    d = Daemon(_config(tmp), be, hostname="node-a")
    d.xids.start()
    try:
        hz = d.cfg.telemetry.power_sample_hz
        steps = int(seconds * hz)
        for i in range(steps):
            d.sampler.round()
            clock.advance(1.0 / hz)
            if i % int(hz) == 0:
                for p in d.pollers:
                    p.poll_once()
                d.tick()
        if sdc:  # a check finds GPU 5's corruption: results, an accusation, a suspect
            validate = d.sdc.handlers()["validate"]
            job = validate({"level": "quick", "gpus": "all", "wait_seconds": 5})
            deadline = time.monotonic() + 120
            while not (got := validate({"job": job["job"]}))["done"] and time.monotonic() < deadline:
                time.sleep(0.05)
            if not got["done"] or not got.get("report"):
                raise RuntimeError(f"the SDC check did not finish: {got}")
            # the job reports done as its results are being recorded: wait until a tick shows them
            while time.monotonic() < deadline:
                d.tick()
                if d.snapshot.sdc is not None and d.snapshot.sdc.checks and d.snapshot.sdc.accusations:
                    break
                time.sleep(0.05)
        for p in d.pollers:
            p.poll_once()
        d.tick()
        return generate_latest(make_registry(lambda: d.snapshot)).decode()
    finally:
        d.stop()


def expositions() -> list[str]:
    out = []
    for scenario, seconds, sdc in ((FAULTS_H100, 6.0, True), (SWING_GB200, 75.0, False), (RETIRED_V100, 3.0, False)):
        with tempfile.TemporaryDirectory() as tmp:
            out.append(_run(Path(tmp), scenario, seconds, sdc))
    return out


@dataclass(frozen=True, slots=True)
class Row:
    name: str  # as queried
    type: str
    labels: frozenset[str]
    help: str

    def line(self) -> str:
        labels = ", ".join(sorted(self.labels))
        return f"| `{self.name}` | {self.type} | {labels} | {self.help.replace('|', '/')} |"


def rows(texts: Iterable[str]) -> tuple[dict[str, Row], set[str]]:
    """Every family in the expositions, and the families none of them gave a sample."""
    found: dict[str, Row] = {}
    sampled: set[str] = set()
    for text in texts:
        for fam in text_string_to_metric_families(text):
            name = fam.name + "_total" if fam.type == "counter" else fam.name + "_info" if fam.type == "info" else fam.name
            labels: set[str] = set()
            for s in fam.samples:
                labels.update(s.labels)
            if fam.samples:
                sampled.add(name)
            old = found.get(name)
            found[name] = Row(name, fam.type, frozenset(labels | (old.labels if old else set())), fam.documentation)
    return found, set(found) - sampled


def table(found: dict[str, Row]) -> str:
    return HEADER + "\n" + "\n".join(found[n].line() for n in sorted(found))


def readme_rows(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """README's table: name -> (type, label names)."""
    out = {}
    for m in re.finditer(r"^\| `(rasd_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \|", text, re.M):
        labels = frozenset(x.strip() for x in m.group(3).split(",") if x.strip())
        out[m.group(1)] = (m.group(2), labels)
    return out


def replace_table(readme: str, new: str) -> str:
    start = readme.index(HEADER)
    end = start + len(HEADER)
    rest = readme[end:].split("\n")
    n = 1
    while n < len(rest) and rest[n].startswith("| `rasd_"):
        n += 1
    return readme[:start] + new + "\n" + "\n".join(rest[n:])


def main(argv: list[str]) -> int:
    found, empty = rows(expositions())
    if empty:
        print(f"families with no sample in any run: {', '.join(sorted(empty))}", file=sys.stderr)
    new = table(found)
    if "--write" in argv:
        README.write_text(replace_table(README.read_text(), new))
    else:
        print(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
