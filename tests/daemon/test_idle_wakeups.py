"""A daemon's idle threads sleep until there is work: the scrape server and the control socket
block in their selectors (no periodic poll), so on a node where nobody scrapes or asks, they cost
no wake-ups at all. Counted by the kernel: each thread's voluntary context switches."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from exporters.prometheus import serve
from rasd import config
from rasd.control import request
from rasd.daemon import Daemon
from tests.e2e.helpers import free_port

IDLE_SECONDS = 1.3  # the stdlib's serve_forever would wake 2-3 times in this, our old selector once


def _switches(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def _thread(name: str) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == name)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc for per-thread counts")
def test_idle_scrape_and_control_threads_do_not_wake_until_asked(fake, tmp_path):
    port = free_port()
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, listen=f"127.0.0.1:{port}", state_path=str(tmp_path / "s.db"),
                       control_socket=str(tmp_path / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    d = Daemon(cfg, fake(None, gpus=2), hostname="t", serve_metrics=serve)
    d.start()
    try:
        http, control = _thread("rasd-http"), _thread("rasd-control")
        assert http.native_id is not None and control.native_id is not None
        time.sleep(0.2)  # past start-up
        before = {t.name: _switches(t.native_id) for t in (http, control) if t.native_id}
        time.sleep(IDLE_SECONDS)
        after = {t.name: _switches(t.native_id) for t in (http, control) if t.native_id}
        assert after == before
        # and both still answer at once when asked
        try:  # no tick has run: not healthy yet, but answered
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status in (200, 503)
        assert request(str(tmp_path / "c.sock"), {"op": "ping"}, timeout=5.0)["pid"] > 0
        assert _switches(http.native_id) > before["rasd-http"]
    finally:
        d.stop()
    # stop woke both selectors through their pairs: the threads have ended, not timed out
    assert not http.is_alive() and not control.is_alive()
