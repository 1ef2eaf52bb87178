"""deploy/prometheus: `promtool check rules`, `promtool test rules` and the example configs.

promtool comes with Debian's prometheus package (tests/run.sh installs it); without it the
promtool tests skip and say so, while the structural checks below still run.
"""

from __future__ import annotations

import shutil
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
