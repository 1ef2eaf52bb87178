"""deploy/prometheus: `promtool check rules`, `promtool test rules` and the example configs.

promtool comes with Debian's prometheus package (tests/run.sh installs it); without it the
promtool tests skip and say so, while the structural checks below still run.
"""

from __future__ import annotations

import shutil
import time
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
ALERTS = PROM / "rasd-alerts.yml"
RECORDING = PROM / "rasd-recording-rules.yml"
ALERT_TESTS = PROM / "tests" / "rasd-alerts.test.yml"
RECORDING_TESTS = PROM / "tests" / "rasd-recording-rules.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus; tests/run.sh installs it)")
    return path


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def recording_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules_is_clean(promtool: str) -> None:
    r = run(promtool, "check", "rules", str(RECORDING), str(ALERTS))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "WARNING" not in out, out
    assert out.count("SUCCESS") == 2


@pytest.mark.parametrize("tests", [ALERT_TESTS, RECORDING_TESTS], ids=["alerts", "recording"])
def test_promtool_unit_tests_pass(promtool: str, tests: Path) -> None:
    r = run(promtool, "test", "rules", str(tests))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_static_scrape_example_is_a_valid_prometheus_config(promtool: str) -> None:
    r = run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "WARNING" not in out, out


def test_kubernetes_scrape_example(promtool: str) -> None:
    path = PROM / "prometheus-kubernetes.yml"
    r = run(promtool, "check", "config", str(path))
    out = r.stdout + r.stderr
    if r.returncode != 0 and "kubernetes_sd_configs not found" in out:
        # Debian builds Prometheus without Kubernetes discovery; check the shape ourselves.
        cfg = yaml.safe_load(path.read_text())
        (job,) = cfg["scrape_configs"]
        assert job["job_name"] == "rasd"
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["rasd"]}}]
        keeps = {tuple(rc["source_labels"]): rc["regex"] for rc in job["relabel_configs"] if rc.get("action") == "keep"}
        assert keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
        assert cfg["rule_files"] == ["rasd-recording-rules.yml", "rasd-alerts.yml"]
        return
    assert r.returncode == 0, out


def test_every_alert_has_summary_description_runbook_and_severity() -> None:
    names = []
    for rule in alert_rules():
        names.append(rule["alert"])
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert ann.get(key, "").strip(), f"{rule['alert']} has no {key}"
        assert "\n" not in ann["runbook"], f"{rule['alert']}: the runbook is one line"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
    assert len(names) == len(set(names)), "alert names repeat"


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), f"alerts never shown firing: {sorted(names - firing)}"
    assert names - quiet == set(), f"alerts never shown staying quiet: {sorted(names - quiet)}"
    assert firing <= names, f"tests name alerts that do not exist: {sorted(firing - names)}"


def test_every_recording_rule_has_a_unit_test() -> None:
    tests = yaml.safe_load(RECORDING_TESTS.read_text())
    tested = {case["expr"].strip() for t in tests["tests"] for case in t.get("promql_expr_test", [])}
    recorded = {r["record"] for r in recording_rules()}
    assert recorded - tested == set(), f"untested recording rules: {sorted(recorded - tested)}"


def test_scrape_job_name_matches_the_rasd_down_alert() -> None:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = [j["job_name"] for j in cfg["scrape_configs"]]
    (down,) = [r for r in alert_rules() if r["alert"] == "RasdDown"]
    assert jobs == ["rasd"] and 'job="rasd"' in down["expr"]
    assert all(t.endswith(":9863") for sc in cfg["scrape_configs"][0]["static_configs"] for t in sc["targets"])


# --------------------------------------------------------------------------- a real Prometheus

LIVE_FAULTS = """
description = "A GPU falls off the bus and another one's row remapping fails."

[[event]]
kind = "fall_off_bus"
at = 1.0
gpu = 3

[[event]]
kind = "row_remap"
at = 1.0
gpu = 1
uncorrectable = 1
failure = true
"""


@pytest.mark.prometheus
def test_rules_evaluate_cleanly_on_a_live_node_and_alerts_fire(tmp_path: Path) -> None:
    """Prometheus with both rule files scrapes a fake node with faults: every rule evaluates
    without error (no many-to-many joins, no duplicate alert label sets) and the zero-delay
    fault alerts fire with the node's hostname."""
    import json
    import urllib.parse

    from tests.e2e.helpers import free_port, http_get, rasd_daemon, wait_for

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("the prometheus server is not installed (tests/run.sh installs Debian's package)")
    scenario = tmp_path / "faults.toml"
    scenario.write_text(LIVE_FAULTS)
    with rasd_daemon(tmp_path, "--scenario", str(scenario)) as (_proc, rasd_url):
        cfg = tmp_path / "prometheus.yml"
        for rules in (RECORDING, ALERTS):
            shutil.copy(rules, tmp_path / rules.name)
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: [{RECORDING.name}, {ALERTS.name}]\n"
            "scrape_configs:\n  - job_name: rasd\n    static_configs:\n"
            f"      - targets: ['{rasd_url.removeprefix('http://')}']\n"
        )
        port = free_port()
        with open(tmp_path / "prometheus.log", "w") as log:
            prom = subprocess.Popen(
                [prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        base = f"http://127.0.0.1:{port}"

        def api(path: str) -> dict:
            data = json.loads(http_get(base + path))
            assert data["status"] == "success", data
            return data["data"]

        def firing() -> set[tuple[str, str]]:
            q = urllib.parse.quote('ALERTS{alertstate="firing"}')
            return {(r["metric"]["alertname"], r["metric"].get("gpu", "")) for r in api(f"/api/v1/query?query={q}")["result"]}

        try:
            got = wait_for(lambda: {("RasdGpuLost", "3"), ("RasdGpuRowRemapFailure", "1")} <= (f := firing()) and f,
                           timeout=60, interval=0.5)
            assert ("RasdNodeNeedsReboot", "") not in got  # it waits 1m first
            time.sleep(2)  # a few more evaluations of every group
            rules = [r for g in api("/api/v1/rules")["groups"] for r in g["rules"]]
            assert len(rules) == len(alert_rules()) + len(recording_rules())
            bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
            assert not bad, bad
            q = urllib.parse.quote('ALERTS{alertname="RasdGpuLost"}')
            (lost,) = api(f"/api/v1/query?query={q}")["result"]
            assert lost["metric"]["hostname"] and lost["metric"]["severity"] == "critical"
        finally:
            prom.terminate()
            prom.wait(10)
