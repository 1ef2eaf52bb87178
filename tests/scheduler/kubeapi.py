"""A local stand-in for the Kubernetes API server (port 0) that checks every request rasd makes.

Bodies are validated with the official client's models (pydantic models generated from the
Kubernetes OpenAPI schema, unknown fields forbidden): a Node for node patches, a Node holding only
``status`` for status patches, a CoreV1Event for Events. Patches must be strategic-merge patches
and are applied the way the API server applies them for the fields rasd touches: conditions
merge by ``type``, taints replace the list, annotations merge with null deleting a key, and a
stale ``metadata.resourceVersion`` answers 409. Every (verb, resource) is recorded, so tests can
hold RBAC to the calls rasd really makes.
"""

from __future__ import annotations

import copy
import json
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client
from pydantic import BaseModel, ValidationError

STRATEGIC = "application/strategic-merge-patch+json"


def _drop_nulls(x: Any) -> Any:
    """A merge patch's null means "delete this key": not a value the schema has to accept.
    (Unknown keys, null or not, are caught by ``wire_names``.)"""
    if isinstance(x, dict):
        return {k: _drop_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_nulls(v) for v in x]
    return x


def wire_names(cls: Any, data: Any, where: str = "") -> list[str]:
    """Keys the API does not know: the schema's names are the camelCase wire names (the
    client's models also accept their Python names, which the API server would not)."""
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in wire_names(cls, v, f"{where}[{i}]")]
    if not (isinstance(data, dict) and isinstance(cls, type) and issubclass(cls, BaseModel)):
        return []
    fields = {(f.serialization_alias or name): f for name, f in cls.model_fields.items()}
    problems = []
    for k, v in data.items():
        f = fields.get(k)
        if f is None:
            problems.append(f"{where}.{k}: unknown field")
            continue
        problems += wire_names(_model_of(f.annotation), v, f"{where}.{k}")
    return problems


def _model_of(tp: Any) -> Any:
    """The model class inside Optional[...] / List[...] / Dict[str, ...], if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        m = _model_of(arg)
        if m is not None:
            return m
    return None


class FakeApiServer:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.rejected: list[str] = []
        self._version = 1
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length", "0"))
                return json.loads(self.rfile.read(n) or b"null")

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                code, body = outer.get(urlparse(self.path))
                self._send(code, body)

            def do_PATCH(self) -> None:  # noqa: N802
                code, body = outer.patch(self.path, self.headers.get("Content-Type", ""),
                                         self._body())
                self._send(code, body)

            def do_POST(self) -> None:  # noqa: N802
                code, body = outer.post(self.path, self.headers.get("Content-Type", ""),
                                        self._body())
                self._send(code, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def api_client(self) -> Any:
        conf = client.Configuration()
        conf.host = self.url
        return client.ApiClient(conf)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ objects

    def add_node(self, name: str, labels: dict[str, str] | None = None,
                 taints: list[dict[str, Any]] | None = None, unschedulable: bool = False,
                 conditions: list[dict[str, Any]] | None = None) -> None:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {},
                             "resourceVersion": str(self._version)},
                "spec": {"taints": taints or [], "unschedulable": unschedulable},
                "status": {"conditions": conditions or []}}
        client.V1Node.model_validate(node)  # the fixture itself must be a valid Node
        self.nodes[name] = node

    def _bump(self, node: dict[str, Any]) -> None:
        self._version += 1
        node["metadata"]["resourceVersion"] = str(self._version)

    def _reject(self, code: int, why: str) -> tuple[int, Any]:
        self.rejected.append(why)
        return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": why,
                      "code": code}

    # ------------------------------------------------------------------ verbs

    def get(self, url: Any) -> tuple[int, Any]:
        parts = url.path.strip("/").split("/")
        with self._lock:
            if parts == ["api", "v1", "nodes"]:
                self.calls.append(("list", "nodes"))
                sel = parse_qs(url.query).get("labelSelector", [""])[0]
                want = dict(p.split("=", 1) for p in sel.split(",") if p)
                items = [n for n in self.nodes.values()
                         if all(n["metadata"]["labels"].get(k) == v for k, v in want.items())]
                return 200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                             "items": copy.deepcopy(items)}
            if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
                self.calls.append(("get", "nodes"))
                node = self.nodes.get(parts[3])
                return (200, copy.deepcopy(node)) if node else self._reject(404, "no such node")
        return self._reject(404, f"GET {url.path} is not an API rasd should call")

    def patch(self, path: str, ctype: str, body: Any) -> tuple[int, Any]:
        parts = urlparse(path).path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "nodes"] or len(parts) not in (4, 5):
            return self._reject(404, f"PATCH {path} is not an API rasd should call")
        status = len(parts) == 5
        if status and parts[4] != "status":
            return self._reject(404, f"PATCH {path} is not an API rasd should call")
        with self._lock:
            self.calls.append(("patch", "nodes/status" if status else "nodes"))
            if ctype.split(";")[0] != STRATEGIC:
                return self._reject(415, f"expected a strategic merge patch, got {ctype!r}")
            try:
                client.V1Node.model_validate(_drop_nulls(body))
            except ValidationError as e:
                return self._reject(422, f"not a Node: {e}")
            unknown = wire_names(client.V1Node, body)
            if unknown:
                return self._reject(422, f"not a Node: {'; '.join(unknown)}")
            if status and set(body) != {"status"}:
                return self._reject(422, "a status patch changes status only")
            if not status and "status" in body:
                return self._reject(422, "status changes go to the status subresource")
            node = self.nodes.get(parts[3])
            if node is None:
                return self._reject(404, "no such node")
            rv = body.get("metadata", {}).get("resourceVersion")
            if rv is not None and rv != node["metadata"]["resourceVersion"]:
                return self._reject(409, "the object has been modified")
            self._apply(node, body)
            self._bump(node)
            return 200, copy.deepcopy(node)

    def _apply(self, node: dict[str, Any], body: dict[str, Any]) -> None:
        for k, v in (body.get("metadata", {}).get("annotations") or {}).items():
            ann = node["metadata"].setdefault("annotations", {})
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        spec = body.get("spec", {})
        if "taints" in spec:  # no patch strategy on taints: the list is replaced
            node["spec"]["taints"] = spec["taints"]
        if "unschedulable" in spec:
            node["spec"]["unschedulable"] = spec["unschedulable"]
        conds = node["status"]["conditions"]
        for c in body.get("status", {}).get("conditions", []):  # patchMergeKey: type
            old = next((x for x in conds if x["type"] == c["type"]), None)
            if old is None:
                conds.append(dict(c))
            else:
                old.update(c)

    def post(self, path: str, ctype: str, body: Any) -> tuple[int, Any]:
        parts = urlparse(path).path.strip("/").split("/")
        if not (len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"]
                and parts[4] == "events"):
            return self._reject(404, f"POST {path} is not an API rasd should call")
        with self._lock:
            self.calls.append(("create", "events"))
            if ctype.split(";")[0] != "application/json":
                return self._reject(415, f"expected application/json, got {ctype!r}")
            try:
                client.CoreV1Event.model_validate(body)
            except ValidationError as e:
                return self._reject(422, f"not an Event: {e}")
            unknown = wire_names(client.CoreV1Event, body)
            if unknown:
                return self._reject(422, f"not an Event: {'; '.join(unknown)}")
            if body["metadata"].get("namespace", parts[3]) != parts[3]:
                return self._reject(422, "the Event's namespace differs from the URL's")
            ev = dict(body, metadata=dict(body["metadata"], name=f"ev{len(self.events)}"))
            self.events.append(ev)
            return 201, ev
