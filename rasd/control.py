"""The daemon's local control socket: one JSON object per line each way, over a Unix socket.

Access is by file permissions: the socket is owned by root (the daemon's user) and, when a group is
configured, group read-write so a training job in that group can accuse a GPU. Requests name an
``op``; each service registers the ops it answers. A bad request gets ``{"ok": false, "error": ...}``
and never disturbs the daemon.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("rasd.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST_BYTES = 64 * 1024


class ControlUnavailable(RuntimeError):
    """No daemon answers on the socket."""


def request(socket_path: str, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_path)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        s.close()
        raise ControlUnavailable(f"no rasd daemon listens on {socket_path}") from e
    except PermissionError as e:
        s.close()
        raise ControlUnavailable(
            f"no permission to use {socket_path}: join the control group configured in "
            "[daemon].control_group, or run as root"
        ) from e
    try:
        with s, s.makefile("rwb") as f:
            f.write(json.dumps(payload).encode() + b"\n")
            f.flush()
            line = f.readline(MAX_REQUEST_BYTES * 16)
    except (socket.timeout, OSError) as e:
        raise ControlUnavailable(f"the daemon on {socket_path} did not answer: {e}") from e
    if not line:
        raise ControlUnavailable(f"the daemon on {socket_path} closed the connection")
    return json.loads(line)


class _RequestHandler(socketserver.StreamRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        reply = self.server.dispatch(line)
        try:
            self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, handlers: dict[str, Handler]):
        self.handlers = handlers
        super().__init__(path, _RequestHandler)

    def dispatch(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request larger than {MAX_REQUEST_BYTES} bytes"}
        try:
            req = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON: send one JSON object per line"}
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"ok": False, "error": 'request must be an object with an "op" string'}
        fn = self.handlers.get(req["op"])
        if fn is None:
            return {"ok": False, "error": f"unknown op {req['op']!r}; known: {', '.join(sorted(self.handlers))}"}
        try:
            out = fn(req)
        except (ValueError, KeyError, TypeError) as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a handler bug must not kill the server
            log.exception("event=control_handler_failed op=%s", req["op"])
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        return {"ok": True, **out} if "ok" not in out else out


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler], group: str = ""):
        self.path = path
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            try:  # a live daemon keeps its socket: refuse to steal it
                request(path, {"op": "ping"}, timeout=1.0)
                raise RuntimeError(f"another rasd daemon already listens on {path}; stop it first")
            except ControlUnavailable:
                p.unlink()
        old = os.umask(0o117)
        try:
            self._server = _Server(path, handlers)
        finally:
            os.umask(old)
        mode = 0o600
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
                os.chown(path, -1, gid)
                mode = 0o660
            except (KeyError, PermissionError) as e:
                log.warning("event=control_group_unavailable group=%s error=%r", group, str(e))
        os.chmod(path, mode)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rasd-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
