"""Helpers for end-to-end tests: free ports, a running `rasd run`, HTTP reads."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(fn, timeout: float, interval: float = 0.2):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")


def _wait_started(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    """Until the daemon serves its first GPU series. Starting is imports and a first poll: slow
    on a loaded machine, hence the generous deadline; a daemon that exits says so at once."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"rasd run exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if "rasd_gpu_up" in http_get(url + "/metrics"):
                return
        except OSError as e:  # not listening yet
            last = e
        if time.monotonic() >= end:
            raise AssertionError(f"rasd run did not serve within {timeout}s (last error: {last!r})")
        time.sleep(0.2)


@contextlib.contextmanager
def rasd_daemon(tmp: Path, *args: str, config: str | None = None, env: dict | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run `rasd run --backend fake` on a free port with private state; yields (proc, base url)."""
    port = free_port()
    e = dict(os.environ)
    e.update({"XDG_STATE_HOME": str(tmp / "state"), "XDG_RUNTIME_DIR": str(tmp / "run")})
    e.update(env or {})
    cmd = [sys.executable, "-m", "rasd", "run", "--backend", "fake", "--listen", f"127.0.0.1:{port}", *args]
    if config:
        cmd += ["--config", config]
    log = open(tmp / "rasd.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=e)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_started(proc, url, tmp / "rasd.log", timeout=120)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
