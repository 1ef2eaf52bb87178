"""The daemon's local control socket: one JSON object per line each way, over a Unix socket.

Access is by file permissions: the socket is owned by root (the daemon's user) and, when a group is
configured, group read-write so a training job in that group can accuse a GPU; ops that undo rasd's
own judgement (``root_only``: closing a decision, resetting the breaker) answer root in the
daemon's own PID namespace alone, by the caller's credentials (SO_PEERCRED): root in a job's
container can reach the socket (Kubernetes) but is not the node's operator. Requests name an
``op``; each service registers the ops it answers. A bad request gets ``{"ok": false, "error": ...}``
and never disturbs the daemon.

Bounded under misuse: one thread reads every connection (a selector), at most
``max_connections`` are open at once (the next one is told so and closed, which keeps the listen
queue draining), a client has ``client_timeout`` seconds to send its request line, and requests are
answered by a small fixed pool of workers. Thousands of idle or half-open connections cost neither
threads nor poll time.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from rasd.paths import parent_dir

log = logging.getLogger("rasd.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST_BYTES = 64 * 1024
MAX_CONNECTIONS = 64
CLIENT_TIMEOUT_SECONDS = 5.0
WORKERS = 4
LISTEN_BACKLOG = 128
# sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL
MAX_SOCKET_PATH_BYTES = 107


class ControlUnavailable(RuntimeError):
    """No daemon answers on the socket."""


class ControlDenied(ControlUnavailable):
    """A daemon listens but this user may not use its socket; ``str()`` names the group to join."""


class ControlSocketError(RuntimeError):
    """The daemon cannot offer its socket (a configuration problem); ``str()`` says what to change."""


def check_socket_path(path: str) -> str | None:
    """Why ``path`` cannot be a Unix socket address, or None when it can."""
    n = len(os.fsencode(path))
    if n > MAX_SOCKET_PATH_BYTES:
        return (f"the control socket path {path} is {n} bytes, longer than a Unix socket address allows "
                f"({MAX_SOCKET_PATH_BYTES}); set daemon.control_socket to a shorter path")
    return None


def _denied_message(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and st.st_mode & stat.S_IRWXG:
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return (f"no permission to use the rasd control socket {path}: your user must be in the group "
                f"{group!r} (daemon.control_group), or run as root")
    return (f"no permission to use the rasd control socket {path}: only root may use it "
            "(daemon.control_group is empty); run as root, or set a control group")


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
        raise ControlDenied(_denied_message(socket_path)) from e
    except OSError as e:
        s.close()
        raise ControlUnavailable(f"cannot reach the daemon on {socket_path} ({e.strerror or e})") from e
    try:
        with s, s.makefile("rwb") as f:
            f.write(json.dumps(payload).encode() + b"\n")
            f.flush()
            line = f.readline(MAX_REQUEST_BYTES * 16)
    except (socket.timeout, OSError) as e:
        raise ControlUnavailable(f"the daemon on {socket_path} did not answer: {e}") from e
    if not line:
        raise ControlUnavailable(f"the daemon on {socket_path} closed the connection")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ControlUnavailable(f"the daemon on {socket_path} answered something that is not an object")
    return reply


ROOT_ONLY = "_rasd_root_only"


def root_only(fn: Handler) -> Handler:
    """Mark an op that only root (or the daemon's own user) may ask for: what undoes rasd's own
    judgement (closing an RMA, resetting the breaker), as against what a job in the control group
    may do (accuse a GPU, validate, read state)."""
    setattr(fn, ROOT_ONLY, True)
    return fn


def peer(sock: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED; the pid as this
    process's namespace sees it, 0 where it cannot), or None."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    except (OSError, AttributeError):  # not Linux, or not a Unix socket
        return None
    pid, uid, _ = struct.unpack("iII", creds)
    return int(pid), int(uid)


def same_pid_namespace(pid: int) -> bool:
    """Whether ``pid`` runs in this process's PID namespace. A job's container has its own: root
    there is uid 0 here too (without user namespaces), but never the node's operator."""
    if pid <= 0:
        return False  # not visible from here: another namespace
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


_refusals: dict[str, int] = {}  # op -> refused root-only requests (the first of each is logged)


def dispatch(handlers: dict[str, Handler], line: bytes, caller: tuple[int, int] | None = None) -> dict[str, Any]:
    """One request line -> its reply object. Never raises. ``caller``: the caller's (pid, uid)
    (None: unknown), checked for ops marked ``root_only``: root (or the daemon's own user) in the
    daemon's own PID namespace (a shell on the node, ``sudo``, ``kubectl exec`` into rasd's
    container), never a job's container that can reach the socket."""
    if len(line) > MAX_REQUEST_BYTES:
        return {"ok": False, "error": f"request larger than {MAX_REQUEST_BYTES} bytes"}
    try:
        req = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "request is not JSON: send one JSON object per line"}
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        return {"ok": False, "error": 'request must be an object with an "op" string'}
    fn = handlers.get(req["op"])
    if fn is None:
        return {"ok": False, "error": f"unknown op {req['op']!r}; known: {', '.join(sorted(handlers))}"}
    if getattr(fn, ROOT_ONLY, False) and not (
            caller is not None and caller[1] in (0, os.geteuid()) and same_pid_namespace(caller[0])):
        op = req["op"]
        n = _refusals[op] = _refusals.get(op, 0) + 1
        if n == 1:
            log.warning("event=control_refused op=%s caller=%s reason=root_only (logged once; counted)", op, caller)
        return {"ok": False, "error": f"{op!r} may only be asked by root on the node (or in rasd's container): "
                                      "run the command with sudo there; a job may accuse, validate and read state"}
    try:
        out = fn(req)
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - a handler bug must not kill the server
        log.exception("event=control_handler_failed op=%s", req["op"])
        return {"ok": False, "error": f"the daemon failed on {req['op']!r}: {type(e).__name__}: {e}"}
    return {"ok": True, **out} if "ok" not in out else out


class _Conn:
    __slots__ = ("sock", "buf", "deadline")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.buf = b""
        self.deadline = deadline


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler], group: str = "", *,
                 max_connections: int = MAX_CONNECTIONS, client_timeout: float = CLIENT_TIMEOUT_SECONDS,
                 workers: int = WORKERS):
        self.path = path
        self.handlers = handlers
        self.max_connections = max_connections
        self.client_timeout = client_timeout
        why = check_socket_path(path)
        if why:
            raise ControlSocketError(why)
        gid = None
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ControlSocketError(f"daemon.control_group {group!r} is not a group on this node; "
                                         "create it (groupadd) or leave it empty for root only") from None
        parent = parent_dir(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise ControlSocketError(f"cannot create {parent} for the control socket ({e.strerror}); "
                                     "set daemon.control_socket to a writable place") from None
        if os.path.lexists(path):  # a socket, or a link to one
            try:  # a live daemon keeps its socket: refuse to steal it
                request(path, {"op": "ping"}, timeout=1.0)
                raise ControlSocketError(f"another rasd daemon already listens on {path}; stop it first, "
                                         "or give this one its own daemon.control_socket")
            except ControlDenied:
                raise ControlSocketError(f"another daemon's socket {path} exists and is not ours to use; "
                                         "stop that daemon or choose another daemon.control_socket") from None
            except ControlUnavailable:
                os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            self._sock.bind(path)
        except OSError as e:
            self._sock.close()
            raise ControlSocketError(f"cannot create the control socket {path} ({e.strerror}); "
                                     "set daemon.control_socket to a writable place") from None
        finally:
            os.umask(old)
        mode = 0o600
        if gid is not None:
            try:
                os.chown(path, -1, gid)
                mode = 0o660
            except PermissionError as e:
                self._sock.close()
                raise ControlSocketError(f"cannot give the control socket to group {group!r} ({e.strerror}); "
                                         "run rasd as root or leave daemon.control_group empty") from None
        os.chmod(path, mode)
        self._sock.listen(LISTEN_BACKLOG)
        self._sock.setblocking(False)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rasd-control")
        self._lock = threading.Lock()
        self._open = 0  # connections accepted and not yet closed (reading, queued or answering)
        self.refused = 0  # connections turned away at the limit (tests and logs read it)
        self._closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name="rasd-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the selector thread -------------------------------------------------------------------

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        reading: dict[int, _Conn] = {}
        try:
            while not self._closing.is_set():
                # idle, block until a client or the wake pipe: a daemon's idle thread never polls
                timeout = None
                if reading:
                    timeout = max(0.0, min(c.deadline for c in reading.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "wake":
                        continue
                    if key.data is None:
                        self._accept(sel, reading)
                    else:
                        self._read(sel, reading, key.data)
                now = time.monotonic()
                for fd, c in list(reading.items()):
                    if c.deadline <= now:  # silent or half-open: drop it, the client gets EOF
                        sel.unregister(c.sock)
                        del reading[fd]
                        self._close(c.sock)
        finally:
            for c in reading.values():
                self._close(c.sock)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, reading: dict[int, _Conn]) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: log once a burst, keep serving
                log.warning("event=control_accept_failed error=%r", str(e))
                return
            with self._lock:
                full = self._open >= self.max_connections
                if not full:
                    self._open += 1
            if full:
                self.refused += 1
                try:  # best effort: a client that reads learns why
                    conn.setblocking(False)
                    conn.send(json.dumps({"ok": False, "error": f"the daemon is busy ({self.max_connections} "
                                          "control connections open); retry in a moment"}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()
                continue
            conn.setblocking(False)
            c = _Conn(conn, time.monotonic() + self.client_timeout)
            reading[conn.fileno()] = c
            sel.register(conn, selectors.EVENT_READ, c)

    def _read(self, sel: selectors.BaseSelector, reading: dict[int, _Conn], c: _Conn) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            c.buf += data
            end = c.buf.find(b"\n")
            if end < 0 and len(c.buf) <= MAX_REQUEST_BYTES:
                return
            line = c.buf if end < 0 else c.buf[:end + 1]
        else:
            line = b""
        sel.unregister(c.sock)
        del reading[c.sock.fileno()]
        if not line.strip():
            self._close(c.sock)
            return
        try:
            self._pool.submit(self._answer, c.sock, line)
        except RuntimeError:  # stopping
            self._close(c.sock)

    # -- workers ---------------------------------------------------------------------------------

    def _answer(self, sock: socket.socket, line: bytes) -> None:
        try:
            reply = dispatch(self.handlers, line, peer(sock))
            sock.setblocking(True)
            sock.settimeout(self.client_timeout)  # a client that never reads frees the worker
            sock.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass
        finally:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        try:
            sock.close()
        finally:
            with self._lock:
                self._open -= 1

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def close(self) -> None:
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
