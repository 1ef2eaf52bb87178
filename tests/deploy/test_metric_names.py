"""Every metric the dashboard and the Prometheus rules name is one rasd really exports.

The exported names are read from a live `rasd run --backend fake` (a healthy node) and from the
daemon run in-process on a manual clock through a scenario full of faults, so the dashboard and
the rules cannot drift from the code.
A family counts as exported when /metrics declares it (``# HELP``/``# TYPE``) even without a
sample yet; outputs of the recording rules and Prometheus' own ``up`` count as defined.
Label names used in selectors are checked against the live series too.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from prometheus_client import generate_latest

from exporters.prometheus import make_registry
from rasd import config
from rasd.backends import open_backend
from rasd.daemon import Daemon
from rasd.backends.fake.clock import ManualClock
from tests.e2e.helpers import http_get, rasd_daemon, wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rasd.json"
RULE_FILES = [ROOT / "deploy" / "prometheus" / "rasd-alerts.yml", ROOT / "deploy" / "prometheus" / "rasd-recording-rules.yml"]
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
POWER_READY = "\nrasd_power_node_swing_watts "
TARGET_LABELS = {"job", "instance", "__name__"}  # added by Prometheus, not by rasd

# --------------------------------------------------------------------------- a small PromQL reader

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]\w*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_SELECTOR = re.compile(
    r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*"
    r"(\{(?:\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|[^{}\"'])*\})"  # strings may hold braces
)
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: not functions, keywords, labels, strings or variables."""
    s = _STRING.sub('""', expr)
    s = _GRAFANA_VAR.sub(" ", s)
    s = _MATCHERS.sub(" ", s)
    s = _RANGE.sub(" ", s)
    s = _LABEL_LIST.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        word, call = m.group(1), m.group(2)
        if call or word in KEYWORDS:
            continue
        names.add(word)
    return names


def selector_labels(expr: str) -> dict[str, set[str]]:
    """{metric: label names its matchers use}."""
    s = _GRAFANA_VAR.sub("v", expr)
    out: dict[str, set[str]] = {}
    for m in _SELECTOR.finditer(s):
        out.setdefault(m.group(1), set()).update(k for k, _, _ in _MATCHER.findall(m.group(2)))
    return out


def test_reader_ignores_functions_keywords_labels_strings_and_variables() -> None:
    expr = textwrap.dedent("""
        max by (instance, job, gpu) (rasd_a{job="$job",gpu=~"$gpu"} or rasd_b) == 3
        unless on (instance) (sum without (mode) (rate(rasd_c_total{x="a{b}"}[$__rate_interval] offset 5m)))
        * on (instance, job) group_left (hostname) rasd_node_info
        + label_replace(rasd_d, "direction", "up", "", "") / 1e6 > bool 2
        + instance:rasd_rec:sum + time() - vector(0) or group_left rasd_e
    """)
    assert metric_names(expr) == {"rasd_a", "rasd_b", "rasd_c_total", "rasd_node_info", "rasd_d",
                                  "instance:rasd_rec:sum", "rasd_e"}
    assert selector_labels(expr) == {"rasd_a": {"job", "gpu"}, "rasd_c_total": {"x"}}


# --------------------------------------------------------------------------- what the files name


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append(a["expr"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\)\s*", q)
        exprs.append(m.group(1) if m else q)
    return exprs


def rule_exprs() -> tuple[list[str], set[str]]:
    exprs, recorded = [], set()
    for f in RULE_FILES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                exprs.append(r["expr"])
                if "record" in r:
                    recorded.add(r["record"])
    return exprs, recorded


def test_dashboard_and_rules_name_metrics_at_all() -> None:
    d, (r, recorded) = dashboard_exprs(), rule_exprs()
    assert len(d) > 50 and len(r) > 20 and len(recorded) > 10
    assert all(metric_names(e) for e in d + r), "an expression without a metric"


# --------------------------------------------------------------------------- what rasd exports

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s")


def exported(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """(declared or sampled names, {name: label names of its samples})."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
            continue
        m = _SAMPLE.match(line)
        if m:
            names.add(m.group(1))
            labels.setdefault(m.group(1), set()).update(re.findall(r'([A-Za-z_]\w*)="', m.group(3) or ""))
    return names, labels


FAULTS = """
description = "Faults for the metric-name test: a lost GPU, uncorrectable ECC with a failed row remap, a flapping NVLink port, a corrupting GPU."

[workload]
kind = "idle"

[[event]]
kind = "fall_off_bus"
at = 1.0
gpu = 3

[[event]]
kind = "ecc"
at = 1.0
gpu = 1
type = "uncorrected"
count = 2

[[event]]
kind = "xid"
at = 1.0
gpu = 1
xid = 48

[[event]]
kind = "row_remap"
at = 1.0
gpu = 1
uncorrectable = 1
failure = true

[[event]]
kind = "nvlink_flap"
at = 1.0
gpu = 2
link = 7
times = 5
period_seconds = 1.0

[[sdc_fault]]
gpu = 5
kind = "gemm_bitflip"
bit = 30
fraction = 0.001
dtypes = ["float32", "float64"]
deterministic = true
"""


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("healthy")
    with rasd_daemon(tmp) as (_, url):
        # The node-level power series appear once the first analysis window has samples (~3 s).
        def ready() -> str | None:
            text = http_get(url + "/metrics")
            return text if POWER_READY in text else None

        yield wait_for(ready, timeout=120)  # generous: the daemon's pace is the machine's


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The faulty node runs in-process on a manual clock: the daemon's own code and exporter, with
    every power sample, poll and tick driven here, so what it shows never depends on how fast a
    loaded machine runs it (a subprocess waited on for 30 s did not always get there)."""
    tmp = tmp_path_factory.mktemp("faulty")
    scenario = tmp / "faults.toml"
    scenario.write_text(FAULTS)
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / "rasd.db"), control_socket=str(tmp / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    clock = ManualClock(0.0)
    d = Daemon(cfg, open_backend("fake", str(scenario), clock=clock), hostname="node-f",
               wall=lambda: 1.7e9 + clock())
    try:
        for step in range(1, 8 * 20 + 1):  # 8 s: the faults at 1 s, then a full power window
            clock.advance(0.05)
            d.sampler.round()
            if step % 20 == 0:
                for p in d.pollers:
                    p.poll_once()
                d.tick()
        text = generate_latest(make_registry(lambda: d.snapshot)).decode()
    finally:
        d.stop()
    assert 'rasd_gpu_up{gpu="3"} 0.0' in text and POWER_READY in text
    assert re.search(r'rasd_gpu_repair_rung_info\{[^}]*rung="rma"', text)
    yield text


def _check(text: str) -> None:
    names, _ = exported(text)
    d = dashboard_exprs()
    r, recorded = rule_exprs()
    defined = names | recorded | PROMETHEUS_BUILTIN
    missing = {}
    for where, exprs in (("dashboard", d), ("rules", r)):
        for e in exprs:
            unknown = metric_names(e) - defined
            if unknown:
                missing.setdefault(where, set()).update(unknown)
    assert not missing, f"names rasd does not export: {missing}"


def test_names_exist_on_a_healthy_node(healthy: str) -> None:
    _check(healthy)


def test_names_exist_after_faults(faulty: str) -> None:
    _check(faulty)


def test_selector_labels_exist_on_the_live_series(healthy: str, faulty: str) -> None:
    _, la = exported(healthy)
    _, lb = exported(faulty)
    live = {k: la.get(k, set()) | lb.get(k, set()) for k in set(la) | set(lb)}
    wrong = []
    for e in dashboard_exprs() + rule_exprs()[0]:
        for metric, used in selector_labels(e).items():
            if metric in live:
                extra = used - live[metric] - TARGET_LABELS
                if extra:
                    wrong.append(f"{metric}: {sorted(extra)} in {e.strip()[:80]!r}")
    assert not wrong, "\n".join(wrong)


def test_alert_inputs_carry_data_after_faults(faulty: str) -> None:
    """The series the fault alerts read really move when the faults happen (not only declared)."""
    text = faulty
    assert re.search(r'rasd_gpu_ecc_volatile_errors_total\{gpu="1",type="uncorrected"\} [1-9]', text)
    assert 'rasd_gpu_row_remap_failure{gpu="1"} 1.0' in text
    assert re.search(r'rasd_gpu_repair_rung\{gpu="\d+",scope="\w+"\} [1-5]', text)
    assert re.search(r'rasd_ladder_faults_total\{gpu="\d+",kind="\w+",rung="\w+"\} [1-9]', text)
    assert re.search(r'rasd_node_info\{[^}]*hostname="[^"]+"', text)
