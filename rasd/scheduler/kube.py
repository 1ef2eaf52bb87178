"""Kubernetes through the official client (``kubernetes`` package), with in-cluster config.

What rasd changes on its own Node (NODE_NAME from the downward API):

* ``status.conditions``: ``RasdGpuHealthy`` (False with the rung as reason and rasd's reason as
  message while a decision is open) and ``RasdSdcSuspect`` (True while a GPU is suspected of
  silent data corruption), patched on change and refreshed every ``retry_seconds``.
* ``spec.taints``: ``<taint_key>=<rung>:NoSchedule`` while rasd holds the node out; removed when
  the cure held. Other taints are never touched (the whole list is patched with the node's
  resourceVersion, so a concurrent change makes the patch fail and it is tried again).
* ``spec.unschedulable`` (cordon) only with ``cordon = true``, and uncordoned only if rasd
  cordoned it.
* Events (namespace ``default``, involvedObject the Node): ``RasdDecision`` per ladder decision,
  ``RasdTakeOut`` and ``RasdBringBack`` when rasd takes the node out and brings it back.

The disruption budget's scope is the nodes matching ``label_selector``; a node is out for rasd's
reasons while it carries rasd's taint, since its RasdGpuHealthy condition's last transition.

API_CALLS lists every (verb, resource) rasd uses; the DaemonSet's ClusterRole grants exactly
these (a test keeps them equal).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from rasd.scheduler.cluster import REASON_PREFIX, NodeOut, NodeView, SchedulerError, ScopeView
from rasd.scheduler.settings import SchedulerSettings

log = logging.getLogger("rasd.scheduler.kube")

API_CALLS = frozenset({("get", "nodes"), ("list", "nodes"), ("patch", "nodes"),
                       ("patch", "nodes/status"), ("create", "events")})
HEALTH = "RasdGpuHealthy"
SDC = "RasdSdcSuspect"
STRATEGIC = "application/strategic-merge-patch+json"
EVENT_NAMESPACE = "default"  # where the kubelet and the node controller put Node events
CORDON_ANNOTATION = "rasd.io/cordoned"  # set when rasd cordoned: a person's cordon stays
# When rasd tainted the node (unix seconds), for the breaker's count of recent outages: the
# health condition's lastTransitionTime moves only when its status flips, and an earlier open
# decision may have flipped it hours before the taint
OUT_SINCE_ANNOTATION = "rasd.io/out-since"


def _out_since(n: Any) -> float | None:
    """When rasd tainted the node (``OUT_SINCE_ANNOTATION``), None where it is not marked."""
    raw = (n.metadata.annotations or {}).get(OUT_SINCE_ANNOTATION)
    try:
        return float(raw) if raw is not None else None
    except ValueError:  # edited by hand: fall back to the condition's time
        return None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _camel(label: str) -> str:
    return "".join(w.capitalize() for w in label.split("_")) or "None"


class KubeCluster:
    kind = "kubernetes"

    def __init__(self, settings: SchedulerSettings, node: str, api_client: Any = None):
        try:
            from kubernetes import client, config
        except ImportError:
            raise SchedulerError("the kubernetes package is not installed; pip install "
                                 "'rasd[kubernetes]'") from None
        self.s = settings
        self.node_name = node
        if api_client is None:
            conf = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=conf)
            except config.ConfigException as e:
                raise SchedulerError(f"not running in a Kubernetes pod ({e}); run rasd as the "
                                     "DaemonSet in deploy/kubernetes") from None
            api_client = client.ApiClient(conf)
        self._api = client.CoreV1Api(api_client)
        self._client = client
        self._timeout = settings.command_timeout_seconds
        self._conditions: dict[str, tuple[str, str, str]] = {}

    # ------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, _request_timeout=self._timeout, **kw)
        except ApiException as e:
            raise SchedulerError(f"{what}: the API server answered {e.status} {e.reason}"
                                 + (" (check the ClusterRole in deploy/kubernetes)"
                                    if e.status == 403 else "")) from None
        except Exception as e:  # noqa: BLE001 - connection errors come from urllib3
            raise SchedulerError(f"{what}: {type(e).__name__}: {e}") from None

    def _read(self) -> Any:
        return self._call(f"get node {self.node_name}", self._api.read_node, self.node_name)

    def _patch(self, body: dict[str, Any], status: bool = False) -> None:
        fn = self._api.patch_node_status if status else self._api.patch_node
        what = f"patch node {self.node_name}" + ("/status" if status else "")
        self._call(what, fn, self.node_name, body, _content_type=STRATEGIC)

    # ------------------------------------------------------------------ Cluster

    def _mine(self, n: Any) -> Any:
        return next((t for t in (n.spec.taints or []) if t.key == self.s.taint_key), None)

    def _reason(self, n: Any) -> tuple[str, float | None]:
        since = _out_since(n)
        for c in (n.status.conditions or []) if n.status else []:
            if c.type == HEALTH and c.status == "False":
                if since is None and c.last_transition_time:  # tainted by an older rasd
                    since = c.last_transition_time.timestamp()
                msg = c.message or ""
                return (msg if msg.startswith(REASON_PREFIX) else f"{REASON_PREFIX} {msg}"), since
        return f"{REASON_PREFIX} tainted {self.s.taint_key}", since

    def node(self) -> NodeView:
        n = self._read()
        if self._mine(n) is not None:
            return NodeView(self.node_name, True, self._reason(n)[0])
        if n.spec.unschedulable:
            return NodeView(self.node_name, True, "cordoned")
        return NodeView(self.node_name, False, "")

    def scope(self) -> ScopeView:
        kw = {"label_selector": self.s.label_selector} if self.s.label_selector else {}
        nodes = self._call("list nodes", self._api.list_node, **kw).items
        out = []
        for n in nodes:
            name = n.metadata.name
            if self._mine(n) is not None:
                reason, since = self._reason(n)
                out.append(NodeOut(name, reason, since))
            elif n.spec.unschedulable:
                out.append(NodeOut(name, "cordoned", None))
        return ScopeView(len(nodes), tuple(out))

    def take_out(self, reason: str) -> None:
        n = self._read()
        rung = reason.rsplit("-> ", 1)[-1].strip() or "out"
        taints = self._other_taints(n)
        taints.append({"key": self.s.taint_key, "value": rung, "effect": "NoSchedule"})
        spec: dict[str, Any] = {"taints": taints}
        annotations: dict[str, Any] = {}
        if self._mine(n) is None:  # a new outage (a worse reason for one under way keeps its time)
            annotations[OUT_SINCE_ANNOTATION] = f"{time.time():.3f}"
        meta: dict[str, Any] = {"resourceVersion": n.metadata.resource_version}
        if self.s.cordon and not n.spec.unschedulable:
            spec["unschedulable"] = True
            annotations[CORDON_ANNOTATION] = "true"
        if annotations:
            meta["annotations"] = annotations
        self._patch({"metadata": meta, "spec": spec})
        self.set_conditions({HEALTH: ("False", _camel(rung), reason)})
        log.info("event=kube_taint node=%s taint=%s reason=%r cordon=%s", self.node_name,
                 self.s.taint_key, reason, "unschedulable" in spec)

    def bring_back(self) -> None:
        n = self._read()
        spec: dict[str, Any] = {"taints": self._other_taints(n)}
        annotations: dict[str, Any] = {OUT_SINCE_ANNOTATION: None}  # null deletes the key
        if n.spec.unschedulable and self._rasd_cordoned(n):
            spec["unschedulable"] = False
            annotations[CORDON_ANNOTATION] = None
        meta: dict[str, Any] = {"resourceVersion": n.metadata.resource_version,
                                "annotations": annotations}
        self._patch({"metadata": meta, "spec": spec})
        self.set_conditions({HEALTH: ("True", "Healthy", "rasd: no open decision needs the "
                                      "node out")})
        log.info("event=kube_untaint node=%s uncordon=%s", self.node_name, "unschedulable" in spec)

    def _other_taints(self, n: Any) -> list[dict[str, Any]]:
        """Everyone else's taints as the API spells them (camelCase wire names)."""
        sanitize = self._api.api_client.sanitize_for_serialization
        return [sanitize(t) for t in (n.spec.taints or []) if t.key != self.s.taint_key]

    def _rasd_cordoned(self, n: Any) -> bool:
        """rasd marks its cordon with an annotation, so a person's cordon is never undone."""
        return (n.metadata.annotations or {}).get(CORDON_ANNOTATION) == "true"

    def set_conditions(self, want: dict[str, tuple[str, str, str]], force: bool = False) -> None:
        """(status, reason, message) per condition type; patched only when something changed
        (or ``force``: the heartbeat)."""
        changed = {t: v for t, v in want.items() if force or self._conditions.get(t) != v}
        if not changed:
            return
        now = _now()
        conds = []
        for t, (status, reason, message) in changed.items():
            c = {"type": t, "status": status, "reason": reason, "message": message[:1024],
                 "lastHeartbeatTime": now}
            prev = self._conditions.get(t)
            if prev is None or prev[0] != status:
                c["lastTransitionTime"] = now
            conds.append(c)
        self._patch({"status": {"conditions": conds}}, status=True)
        self._conditions.update(changed)

    def report(self, decision: dict[str, Any], reason: str, out: bool) -> None:
        rung = str(decision.get("rung", "none"))
        if out:
            self._event("RasdTakeOut", reason, "Warning", _camel(rung))
        else:
            self._event("RasdBringBack", "rasd: the cure held; the node is back in service",
                        "Normal", "Resume")

    def decision_event(self, decision: dict[str, Any], reason: str) -> None:
        """An Event per ladder decision (``RasdDecision``), whatever it asks for."""
        why = str(decision.get("reason", ""))
        self._event("RasdDecision", f"{reason}: {why}" if why else reason, "Warning",
                    _camel(str(decision.get("rung", "none"))))

    def _event(self, reason: str, message: str, type_: str, action: str) -> None:
        if not self.s.events:
            return
        now = _now()
        body = {
            "metadata": {"generateName": f"{self.node_name}.rasd-", "namespace": EVENT_NAMESPACE},
            "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": self.node_name},
            "reason": reason, "message": message[:1024], "type": type_, "action": action,
            "source": {"component": "rasd", "host": self.node_name},
            "reportingComponent": "rasd", "reportingInstance": self.node_name,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        # this client's create methods send no Content-Type of their own (the API server
        # answers 415 without one): name it
        self._call("create event", self._api.create_namespaced_event, EVENT_NAMESPACE, body,
                   _headers={"Content-Type": "application/json"})
