"""A whole `rasd run` on the fake node drains its real Slurm node with the reason, exports it,
and answers `rasd scheduler status` / `reset-breaker` through its control socket."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from rasd.ladder.decision import Decision
from rasd.scheduler.policy import reason_for
from tests.e2e.helpers import http_get, rasd_daemon, wait_for
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import REASON, sinfo


# what GPU 3 falling off the bus drains the node for (the reboot command fails here, so the
# ladder may go on to RMA for the same fault)
LOST_GPU3 = re.compile(r"rasd: (xid 79|gpu_lost) gpu 3 -> (reboot_node|rma)")


def _config(tmp: Path, slurm: SlurmCluster, **extra: str) -> str:
    lines = "\n".join(f"{k} = {v}" for k, v in extra.items())
    p = tmp / "rasd.toml"
    p.write_text(f"""
[daemon]
state_path = "{tmp / 'rasd.db'}"
control_socket = "{tmp / 'control.sock'}"
[telemetry]
kernel_log = ""
[actions]
enforce = true
min_interval_seconds = 0
[actions.commands]
reboot_node = ["false"]
[scheduler]
kind = "slurm"
node_name = "{slurm.node}"
slurm_conf = "{slurm.conf}"
partition = "{slurm.partition}"
retry_seconds = 1.0
{lines}
""")
    return str(p)


def _metrics_with(url: str, needle: str) -> str:
    def look() -> str | None:
        text = http_get(url + "/metrics")
        return text if needle in text else None

    return str(wait_for(look, timeout=20))


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rasd", "scheduler", *args, "--socket",
                           str(tmp / "control.sock")], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ), check=False)


def test_daemon_drains_with_the_reason_and_exports_it(slurm: SlurmCluster,
                                                      tmp_path: Path) -> None:
    with rasd_daemon(tmp_path, "--scenario", "xid79", config=_config(tmp_path, slurm)) as (_, url):
        wait_for(lambda: sinfo(slurm, slurm.node)[0] == "drained", timeout=30)
        # Xid 79 (event thread) and the lost GPU (health poll) race to the ladder: the first to
        # reach the gate names the drain
        assert LOST_GPU3.fullmatch(sinfo(slurm, slurm.node)[1]), sinfo(slurm, slurm.node)
        text = _metrics_with(url, 'rasd_scheduler_node_out{reason="rasd:')
        assert 'rasd_scheduler_info{enforced="true",kind="slurm",node="rasd0"} 1.0' in text
        assert "rasd_scheduler_drains_total 1.0" in text
        r = _cli(tmp_path, "status", "--json")
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert st["out_by_rasd"] and LOST_GPU3.fullmatch(st["reason"]), st
        assert st["scope"]["nodes"] == 4


def test_cli_resets_a_tripped_breaker_and_the_deferred_decision_acts(slurm: SlurmCluster,
                                                                     tmp_path: Path) -> None:
    for node in ("rasdx1", "rasdx2"):
        slurm.run("scontrol", "update", f"nodename={node}", "state=drain",
                  "reason=rasd: xid 79 gpu 0 -> reboot_node")
    cfg = _config(tmp_path, slurm, max_nodes_out='"100%"')
    with rasd_daemon(tmp_path, "--scenario", "xid79", config=cfg) as (_, url):
        # Xid 79 and the lost GPU: two decisions, both held back
        text = _metrics_with(url, 'rasd_scheduler_deferred_decisions{why="breaker"} 2.0')
        assert "rasd_scheduler_breaker_tripped 1.0" in text
        r = _cli(tmp_path, "status")
        assert "BREAKER TRIPPED" in r.stdout and "3 of 4" in r.stdout, r.stdout + r.stderr
        assert sinfo(slurm, slurm.node) == ("idle", "none")
        # which of the two reaches the ladder first is a race between the event thread and the
        # health poll; both are GPU 3's, both reboot the node
        held = _state(tmp_path)["deferred"]
        reasons = {reason_for(Decision.from_dict(e["decision"])) for e in held}
        assert reasons == {REASON, "rasd: gpu_lost gpu 3 -> reboot_node"}, held
        assert {e["why"] for e in held} == {"breaker"}
        r = _cli(tmp_path, "reset-breaker")
        assert r.returncode == 0 and "breaker reset" in r.stdout, r.stdout + r.stderr
        wait_for(lambda: sinfo(slurm, slurm.node)[0] == "drained", timeout=30)
        # the first deferred decision to pass the gate drains the node with its reason; the other,
        # no worse, finds the node out already: neither stays deferred. The reboot command here
        # fails, so the ladder may go on to RMA, which says the worse rung for the same fault.
        fault, rung = sinfo(slurm, slurm.node)[1].rsplit(" -> ", 1)
        assert fault in {r.rsplit(" -> ", 1)[0] for r in reasons} and rung in ("reboot_node", "rma")
        wait_for(lambda: (st := _state(tmp_path))["out_by_rasd"] and not st["deferred"]
                 and st["reason"] == sinfo(slurm, slurm.node)[1], timeout=30)


def _state(tmp: Path) -> dict:
    r = _cli(tmp, "status", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(json.loads(r.stdout))
