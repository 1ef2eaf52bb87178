"""CLI (explain, replay, history, ladder), the service with enforced actions, the exporter."""

from __future__ import annotations

import json

from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from exporters.sections.ladder import collect
from rasd.cli import main
from rasd.ladder.actions import Actuator, RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, NodeIdentity, Rung
from rasd.snapshot import Snapshot
from rasd.store import Store

LOG = "\n".join([
    '{"time": "2025-01-31T12:00:00Z", "kind": "xid", "gpu": 3, "xid": 79}',
    '{"time": 1738325000, "kind": "nvlink", "gpu": 1, "link": 4, "state": "down"}',
    '{"time": "2025-01-31T12:05:00+00:00", "kind": "sdc", "gpu": 2, "verdict": "suspect"}',
    '{"time": 1738325400.5, "kind": "remedy", "gpu": 3, "action": "reboot_node", "result": "ok"}',
])


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_explain_xid_json():
    r = run("explain", "xid", "79", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rung"] == "reboot_node" and out["scope"] == "node" and out["reason"]
    assert out["buckets"]["immediate"] == "RESTART_BM"
    r = run("explain", "xid", "74", "--message", "fatal error on link 9", "--json")
    assert json.loads(r.output)["scope"] == "link"
    assert run("explain", "xid", "13").exit_code == 0


def test_replay_good_log(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text(LOG)
    r = run("replay", str(p), "--json")
    assert r.exit_code == 0, r.output
    ds = json.loads(r.output)["decisions"]
    assert [d["rung"] for d in ds] == ["reboot_node", "reset_gpu", "none"]
    assert ds[0]["time"] == 1738324800.0 and ds[0]["link"] is None
    assert ds[1]["link"] == 4 and ds[1]["scope"] == "link"
    assert all(set(d) >= {"time", "gpu", "link", "rung", "scope", "reason", "investigate"}
               for d in ds)
    assert ds[2]["investigate"] == ["sdc_check"]
    assert run("replay", str(p), "--json").output == r.output  # twice, the same
    plain = run("replay", str(p))
    assert plain.exit_code == 0 and "rung=reboot_node" in plain.output


def test_replay_bad_line_reports_line_number(tmp_path):
    p = tmp_path / "e.jsonl"
    for bad in ('{"time": 1, "kind": "xid"}', "not json", '{"time": "yesterday", "kind": '
                '"thermal", "gpu": 0}', '{"time": 1, "kind": "remedy", "gpu": 0, "action": '
                '"fix", "result": "ok"}', '{"time": "2025-01-01T00:00:00", "kind": "thermal", '
                '"gpu": 0}'):
        p.write_text(LOG + "\n" + bad + "\n")
        r = run("replay", str(p))
        assert r.exit_code == 2, (bad, r.output)
        assert "line 5" in r.output and "Traceback" not in r.output


def test_service_enforced_actions_and_history_cli(tmp_path):
    db = tmp_path / "r.db"
    runner = RecordingRunner({"nvidia-smi": 1})
    acts = ActionSettings(enforce=True, min_interval_seconds=0, commands={
        "reset_gpu": ("nvidia-smi", "-r", "-i", "{gpu_index}"),
        "drain": ("scontrol", "update", "nodename={hostname}", "state=drain"),
        "reboot_node": ("systemctl", "reboot")})
    svc = LadderService(LadderSettings(), acts, Store(db), "node7",
                        gpu_info=lambda g: {"uuid": f"GPU-{g}"},
                        actuator=Actuator(acts, runner, synchronous=True), now_wall=0)
    svc.ingest([FaultEvent(10.0, 1, FaultKind.ECC, None, {"volatile_uncorrected": 2})], 10.0)
    assert ("nvidia-smi", "-r", "-i", "1") in runner.calls
    assert ("scontrol", "update", "nodename=node7", "state=drain") in runner.calls
    assert runner.calls[-1] == ("systemctl", "reboot")  # the failed reset climbed
    stored = svc.store.decisions(gpu=1)
    assert [d.body["rung"] for d in stored] == ["reset_gpu", "reboot_node"]
    assert all(d.state == "remedied" for d in stored[1:])  # the reboot ran and worked
    assert svc.rung(1) is Rung.NONE
    results = {(a.kind, a.result) for a in svc.store.actions()}
    assert ("reset_gpu", "failed") in results and ("reboot_node", "ok") in results
    svc.store.close()
    r = run("history", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["actions"]
    r = run("ladder", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    r = run("ladder", "--db", str(tmp_path / "missing.db"))
    assert r.exit_code == 2 and "--db" in r.output


def test_advisory_runs_nothing():
    runner = RecordingRunner()
    acts = ActionSettings(commands={"reset_gpu": ("nvidia-smi", "-r")})
    svc = LadderService(LadderSettings(), acts, Store(":memory:"), "n",
                        actuator=Actuator(acts, runner, synchronous=True), now_wall=0)
    assert svc.ingest([FaultEvent(1.0, 0, FaultKind.XID, None, {"xid": 62})], 1.0)
    assert runner.calls == []


def test_settings_validation():
    assert ActionSettings(commands={"reset_gpu": ("x", "{nope}")}).validate()
    assert ActionSettings(commands={"format_disk": ("x",)}).validate()
    assert not ActionSettings(commands={"reset_gpu": ("nvidia-smi", "-i", "{gpu_index}")}
                              ).validate()
    assert LadderSettings(resets_not_holding=0).validate()
    assert not LadderSettings().validate()


def test_exporter_section():
    svc = LadderService(LadderSettings(), ActionSettings(), Store(":memory:"), "n", now_wall=0)
    svc.ingest([FaultEvent(1.0, 0, FaultKind.XID, None, {"xid": 79}),
                FaultEvent(2.0, 1, FaultKind.NVLINK, 3, {"link": 3, "state": "down"}),
                FaultEvent(3.0, 2, FaultKind.REMAP, None, {"failure": True}),
                FaultEvent(4.0, 3, FaultKind.SDC, None, {"verdict": "suspect"})], 4.0)
    snap = Snapshot(5.0, NodeIdentity("n", "fake", None, None, None), (), ladder=svc.state(5.0))

    class C:
        def collect(self):
            return collect(snap)

    reg = CollectorRegistry()
    reg.register(C())
    g = reg.get_sample_value
    assert g("rasd_gpu_repair_rung", {"gpu": "0", "scope": "node"}) == 4
    assert g("rasd_node_repair_rung") == 5
    assert g("rasd_gpu_nvlink_repair_rung", {"gpu": "1", "link": "3", "scope": "link"}) == 3
    assert g("rasd_gpu_repair_rung", {"gpu": "1", "scope": "gpu"}) == 0  # the link only
    assert g("rasd_ladder_rma_queue_length") == 1
    assert g("rasd_gpu_excluded", {"gpu": "2"}) == 1
    assert g("rasd_gpu_sdc_suspect", {"gpu": "3"}) == 1
    assert g("rasd_gpu_technician_flag", {"gpu": "2", "fault": "remap_failure"}) == 1
    assert g("rasd_ladder_faults_total", {"gpu": "0", "kind": "xid", "rung": "reboot_node"}) == 1
    empty = Snapshot(5.0, NodeIdentity("n", "fake", None, None, None), ())
    assert list(collect(empty)) == []
