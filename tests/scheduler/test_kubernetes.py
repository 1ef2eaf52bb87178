"""The Kubernetes integration's calls against a local API server that checks each request
(method, path, content type, body against the API's Node and Event schemas).

Not a live cluster: what these tests prove is that rasd sends well-formed requests for the
documented effects, applied as the API server applies them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("kubernetes", reason="the kubernetes client package is not installed "
                    "(tests/run.sh installs rasd[test], which brings it)")

from rasd.ladder.actions import Actuator  # noqa: E402
from rasd.ladder.service import LadderService  # noqa: E402
from rasd.ladder.settings import ActionSettings, LadderSettings  # noqa: E402
from rasd.model import FaultEvent, FaultKind  # noqa: E402
from rasd.scheduler.build import build_service  # noqa: E402
from rasd.scheduler.kube import API_CALLS, HEALTH, OUT_SINCE_ANNOTATION, KubeCluster  # noqa: E402
from rasd.scheduler.service import open_decisions  # noqa: E402
from rasd.scheduler.settings import SchedulerSettings  # noqa: E402
from rasd.store import Store  # noqa: E402
from tests.scheduler.kubeapi import FakeApiServer  # noqa: E402

REASON = "rasd: xid 79 gpu 3 -> reboot_node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    srv.add_node("gpu-0", labels={"pool": "a"}, taints=[dict(GPU_TAINT)])
    for i in (1, 2, 3):
        srv.add_node(f"gpu-{i}", labels={"pool": "a"})
    srv.add_node("cpu-0", labels={"pool": "b"})
    yield srv
    assert not srv.rejected, srv.rejected  # every request rasd made was well-formed
    srv.close()


class KNode:
    def __init__(self, api: FakeApiServer, db: Path, reboot: str | None = "true", **kw: Any):
        self.t = time.time()
        settings = SchedulerSettings(kind="kubernetes", node_name="gpu-0", retry_seconds=10,
                                     resume_hold_seconds=60, label_selector="pool=a", **kw)
        actions = ActionSettings(enforce=True, min_interval_seconds=0,
                                 commands={"reboot_node": (reboot,)} if reboot else {})
        cluster = KubeCluster(settings, "gpu-0", api_client=api.api_client())
        self.sched = build_service(settings, True, str(db), cluster=cluster, wall=self.clock,
                                   clock=self.clock, synchronous=True)
        act = Actuator(actions, synchronous=True, wall=self.clock)
        act.gate = self.sched.gate
        self.sched.submit = act.submit
        self.store = Store(db)
        self.ladder = LadderService(LadderSettings(), actions, self.store, "h", actuator=act,
                                    now_wall=self.t)

    def clock(self) -> float:
        return self.t

    def event(self, gpu: int, kind: FaultKind, details: dict[str, Any]) -> None:
        self.sched.on_decisions(
            self.ladder.ingest([FaultEvent(self.t, gpu, kind, None, details)], self.t))
        self.tick()

    def tick(self, advance: float = 0.0) -> None:
        self.t += advance
        self.ladder.tick(self.t)
        self.sched.tick(self.t, open_decisions(self.ladder.state(self.t)))
        self.ladder.tick(self.t)

    def close(self) -> None:
        self.ladder.close()
        self.sched.close()
        self.store.close()


def cond(api: FakeApiServer, node: str, type_: str) -> dict[str, Any]:
    return next(c for c in api.nodes[node]["status"]["conditions"] if c["type"] == type_)


def taints(api: FakeApiServer, node: str) -> list[dict[str, Any]]:
    return api.nodes[node]["spec"]["taints"]


def test_taint_condition_and_events_then_back_once_the_cure_held(api: FakeApiServer,
                                                                 tmp_path: Path) -> None:
    n = KNode(api, tmp_path / "rasd.db")
    n.event(3, FaultKind.XID, {"xid": 79})
    assert taints(api, "gpu-0") == [GPU_TAINT, {"key": "rasd.io/gpu-unhealthy",
                                                "value": "reboot_node", "effect": "NoSchedule"}]
    assert api.nodes["gpu-0"]["spec"]["unschedulable"] is False  # cordon is off by default
    ev = next(e for e in api.events if e["reason"] == "RasdTakeOut")
    assert (ev["message"], ev["type"], ev["action"]) == (REASON, "Warning", "RebootNode")
    assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "gpu-0"}
    n.tick(30)
    n.tick(31)  # the reboot held for the hold time: back
    assert taints(api, "gpu-0") == [GPU_TAINT]
    health = cond(api, "gpu-0", "RasdGpuHealthy")
    assert (health["status"], health["reason"]) == ("True", "Healthy")
    n.close()
    assert [e["reason"] for e in api.events if e["reason"] != "RasdDecision"] == \
        ["RasdTakeOut", "RasdBringBack"]
    (dec,) = [e for e in api.events if e["reason"] == "RasdDecision"]
    assert dec["message"].startswith(REASON + ": Xid 79") and dec["action"] == "RebootNode"


def test_conditions_carry_the_rung_reason_and_sdc_suspicion(api: FakeApiServer,
                                                            tmp_path: Path) -> None:
    n = KNode(api, tmp_path / "rasd.db", reboot=None)  # nobody reboots: decisions stay open
    n.event(2, FaultKind.SDC, {"verdict": "suspect"})
    sdc = cond(api, "gpu-0", "RasdSdcSuspect")
    assert sdc["status"] == "True" and "GPU 2" in sdc["message"]
    n.event(3, FaultKind.XID, {"xid": 79})
    health = cond(api, "gpu-0", "RasdGpuHealthy")
    assert (health["status"], health["reason"]) == ("False", "RebootNode")
    assert health["message"] == REASON
    n.close()


def test_cordon_when_configured_and_never_undo_a_persons_cordon(api: FakeApiServer,
                                                                tmp_path: Path) -> None:
    n = KNode(api, tmp_path / "rasd.db", cordon=True)
    n.event(3, FaultKind.XID, {"xid": 79})
    assert api.nodes["gpu-0"]["spec"]["unschedulable"] is True
    n.tick(30)
    n.tick(31)
    assert api.nodes["gpu-0"]["spec"]["unschedulable"] is False
    assert "rasd.io/cordoned" not in api.nodes["gpu-0"]["metadata"].get("annotations", {})
    n.close()
    api.nodes["gpu-0"]["spec"]["unschedulable"] = True  # a person cordons the node
    again = KNode(api, tmp_path / "rasd2.db", cordon=True)
    again.event(3, FaultKind.XID, {"xid": 79})  # out already: rasd adds nothing of its own
    again.tick(30)
    again.tick(31)
    assert api.nodes["gpu-0"]["spec"]["unschedulable"] is True
    assert taints(api, "gpu-0") == [GPU_TAINT]
    again.close()


def test_budget_counts_tainted_nodes_of_the_label_scope(api: FakeApiServer,
                                                        tmp_path: Path) -> None:
    api.nodes["gpu-1"]["spec"]["taints"] = [{"key": "rasd.io/gpu-unhealthy",
                                             "value": "reset_gpu", "effect": "NoSchedule"}]
    api.nodes["cpu-0"]["spec"]["taints"] = [{"key": "rasd.io/gpu-unhealthy",
                                             "value": "reset_gpu", "effect": "NoSchedule"}]
    n = KNode(api, tmp_path / "rasd.db", max_nodes_out="1")
    n.event(3, FaultKind.XID, {"xid": 79})
    st = n.sched.state()
    assert [w for w, *_ in st.deferred] == ["budget"]
    assert (st.scope_nodes, st.scope_out) == (4, 1)  # cpu-0 is outside pool=a
    assert taints(api, "gpu-0") == [GPU_TAINT]
    api.nodes["gpu-1"]["spec"]["taints"] = []
    n.tick(11)
    assert taints(api, "gpu-0")[-1]["key"] == "rasd.io/gpu-unhealthy"
    n.close()


def test_an_outage_counts_from_the_taint_not_from_an_older_flag(api: FakeApiServer) -> None:
    """The breaker counts nodes out recently. A node whose health condition an earlier open
    decision flipped hours before is tainted now: it went out now, not when the flag flipped."""
    settings = SchedulerSettings(kind="kubernetes", node_name="gpu-0", label_selector="pool=a")
    cluster = KubeCluster(settings, "gpu-0", api_client=api.api_client())
    cluster.set_conditions({HEALTH: ("False", "RestartProcess", "rasd: xid 13 gpu 1 -> restart_process")})
    cond(api, "gpu-0", HEALTH)["lastTransitionTime"] = "2020-01-01T00:00:00Z"  # long ago
    before = time.time()
    cluster.take_out("rasd: xid 79 gpu 3 -> reboot_node")
    (out,) = [o for o in cluster.scope().out if o.name == "gpu-0"]
    assert out.since_wall is not None and out.since_wall >= before - 1
    # a worse reason for the same outage keeps its time; back in service, the mark goes
    first = api.nodes["gpu-0"]["metadata"]["annotations"][OUT_SINCE_ANNOTATION]
    cluster.take_out("rasd: xid 79 gpu 3 -> rma")
    assert api.nodes["gpu-0"]["metadata"]["annotations"][OUT_SINCE_ANNOTATION] == first
    cluster.bring_back()
    assert OUT_SINCE_ANNOTATION not in api.nodes["gpu-0"]["metadata"].get("annotations", {})


def test_rbac_grants_exactly_the_calls_rasd_makes(api: FakeApiServer, tmp_path: Path) -> None:
    import yaml

    n = KNode(api, tmp_path / "rasd.db")
    n.event(3, FaultKind.XID, {"xid": 79})
    n.tick(30)
    n.tick(31)
    n.close()
    assert set(api.calls) == API_CALLS  # every call exercised here, none outside the list
    docs = list(yaml.safe_load_all((Path(__file__).resolve().parents[2] / "deploy" /
                                    "kubernetes" / "daemonset.yaml").read_text()))
    (role,) = [d for d in docs if d and d["kind"] == "ClusterRole"]
    granted = {(verb, res) for rule in role["rules"] for res in rule["resources"]
               for verb in rule["verbs"]}
    assert granted == API_CALLS
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    assert groups == {""}  # core API only
    (binding,) = [d for d in docs if d and d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rasd", "namespace": "rasd"}]


def test_the_checker_refuses_what_the_api_server_would(api: FakeApiServer) -> None:
    """The stand-in is not a rubber stamp: Python field names, a taint without its effect and a
    merge patch sent as JSON are refused as the API server refuses them."""
    import json
    import urllib.request

    def send(method: str, path: str, body: Any, ctype: str) -> int:
        req = urllib.request.Request(api.url + path, json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    sm = "application/strategic-merge-patch+json"
    assert send("PATCH", "/api/v1/nodes/gpu-1", {"spec": {"taints": [
        {"key": "a", "effect": "NoSchedule", "time_added": None}]}}, sm) == 422
    assert send("PATCH", "/api/v1/nodes/gpu-1", {"spec": {"taints": [{"key": "a"}]}}, sm) == 422
    assert send("PATCH", "/api/v1/nodes/gpu-1", {"spec": {"unschedulable": True}},
                "application/json") == 415
    assert send("POST", "/api/v1/namespaces/default/events", {"reason": "x"},
                "application/json") == 422
    api.rejected.clear()
