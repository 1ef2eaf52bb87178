"""The ladder as a service: enforced actions climb the rungs, advisory runs nothing; the history
and ladder commands read what it stored."""

from __future__ import annotations

import json

from rasd.ladder.actions import Actuator
from rasd.ladder.runner import RecordingRunner
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from tests.ladder.test_cli import run


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
