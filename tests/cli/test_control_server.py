"""The control socket under misuse: idle and half-open connections, floods, bad requests."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from rasd.config import ConfigError, parse
from rasd.control import ControlServer, ControlSocketError, request
from tests.waiting import eventually


@pytest.fixture
def server(tmp_path: Path):
    handlers = {"echo": lambda req: {"echo": req.get("value")}}
    srv = ControlServer(str(tmp_path / "c.sock"), handlers, max_connections=32, client_timeout=0.5)
    srv.start()
    yield srv
    srv.close()


def _wait(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    return eventually(cond, timeout)


def test_idle_connections_cost_no_threads_and_expire(server: ControlServer) -> None:
    before = threading.active_count()
    idle = []
    for _ in range(2000):  # connect and never send: half-open clients
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(server.path)
        idle.append(s)
    try:
        assert _wait(lambda: server.open_connections() + server.refused == 2000)
        assert server.open_connections() <= 32
        assert threading.active_count() <= before + 1
        # the ones over the limit were told why and closed
        s = idle[-1]
        s.settimeout(2.0)
        assert b"busy" in s.recv(200)
        # the silent ones are dropped after client_timeout, and the daemon answers again
        assert _wait(lambda: server.open_connections() == 0, timeout=3.0)
        assert request(server.path, {"op": "echo", "value": 7})["echo"] == 7
    finally:
        for s in idle:
            s.close()


def test_concurrent_clients_each_get_their_answer(server: ControlServer) -> None:
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda i: request(server.path, {"op": "echo", "value": i})["echo"], range(30)))
    assert answers == list(range(30))


def test_bad_requests_get_a_reason(server: ControlServer) -> None:
    assert "unknown op" in request(server.path, {"op": "nope"})["error"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(server.path)
    s.sendall(b"not json\n")
    s.settimeout(2.0)
    assert b"not JSON" in s.recv(200)
    s.close()


def test_a_live_socket_is_not_stolen(server: ControlServer) -> None:
    with pytest.raises(ControlSocketError, match="already listens"):
        ControlServer(server.path, {})


def test_socket_path_too_long_is_a_config_error(tmp_path: Path) -> None:
    long = "/tmp/" + "x" * 120 + "/c.sock"
    with pytest.raises(ControlSocketError, match="shorter path"):
        ControlServer(long, {})
    with pytest.raises(ConfigError, match="control_socket.*shorter path"):
        parse(f'[daemon]\ncontrol_socket = "{long}"\n')


def test_a_socket_path_ending_in_a_slash_is_refused_and_makes_no_directory_of_its_name(tmp_path: Path) -> None:
    with pytest.raises(ControlSocketError):
        ControlServer(str(tmp_path / "ctl" / "c.sock") + "/", {})
    assert not (tmp_path / "ctl" / "c.sock").exists()


def test_unknown_control_group_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control_group = 'no-such-rasd-group'.*no such group"):
        parse('[daemon]\ncontrol_group = "no-such-rasd-group"\n')
    with pytest.raises(ControlSocketError, match="not a group"):
        ControlServer(str(tmp_path / "c.sock"), {}, "no-such-rasd-group")




def test_root_only_ops_answer_root_alone(tmp_path: Path) -> None:
    """A job in the control group may accuse and validate; closing a decision or resetting the
    breaker undoes rasd's own judgement and answers root alone, in rasd's own PID namespace, by
    the caller's credentials."""
    import os

    from rasd.control import dispatch, peer, root_only

    calls: list[str] = []
    handlers = {"read": lambda req: {"n": len(calls)},
                "close": root_only(lambda req: calls.append("close") or {})}
    line = json.dumps({"op": "close"}).encode()
    me = os.getpid()
    # another user; root not visible from here (another PID namespace); a caller unknown
    for caller in ((me, 65534), (0, 0), None):
        refused = dispatch(handlers, line, caller)
        assert not refused["ok"] and "may only be asked by root" in refused["error"]
    assert calls == []
    assert dispatch(handlers, json.dumps({"op": "read"}).encode(), (0, 65534)) == {"ok": True, "n": 0}
    assert dispatch(handlers, line, (me, 0))["ok"] and calls == ["close"]
    # the server reads the caller's credentials from the connection itself
    srv = ControlServer(str(tmp_path / "c.sock"), handlers)
    srv.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as a:
            a.connect(srv.path)
            assert peer(a) == (os.getpid(), os.geteuid())
        assert request(srv.path, {"op": "close"})["ok"] and calls == ["close", "close"]
    finally:
        srv.close()


def test_root_in_a_containers_pid_namespace_is_refused(tmp_path: Path) -> None:
    """Root in a job's container (its own PID namespace) that can reach the socket, as on
    Kubernetes, is not the node's operator."""
    import os
    import shutil
    import subprocess
    import sys

    from rasd.control import root_only

    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to start a process in a PID namespace of its own")
    if subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not let a process have a PID namespace of its own")
    calls: list[str] = []
    srv = ControlServer(str(tmp_path / "c.sock"), {"close": root_only(lambda req: calls.append("x") or {})})
    srv.start()
    try:
        ask = "import json, sys; from rasd.control import request; print(json.dumps(request(sys.argv[1], {'op': 'close'})))"
        out = subprocess.run([unshare, "--pid", "--fork", sys.executable, "-c", ask, srv.path], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert not reply["ok"] and "may only be asked by root" in reply["error"]
        assert calls == []
        assert request(srv.path, {"op": "close"})["ok"] and calls == ["x"]  # root here still may
    finally:
        srv.close()
