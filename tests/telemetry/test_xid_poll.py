"""The Xid thread polls NVML's event wait without blocking inside the library, and the main loop
has it poll right before reading, so an Xid still comes with the readings of the same pass."""

from __future__ import annotations

import time

from rasd.telemetry.xid import XidWatcher
from tests.waiting import eventually

XID48 = """
[[event]]
kind = "xid"
at = 0.5
gpu = 2
xid = 48
"""


def _recording(be):
    lib = be.adapter.lib
    timeouts: list[int] = []
    wait = lib.nvmlEventSetWait_v2

    def recording(event_set, timeoutms):
        timeouts.append(timeoutms)
        return wait(event_set, timeoutms)

    lib.nvmlEventSetWait_v2 = recording
    return timeouts


def test_the_event_wait_never_blocks_and_a_sync_brings_a_due_xid_at_once(fake, clock):
    be = fake(XID48, clock=clock)
    timeouts = _recording(be)
    w = XidWatcher(be.adapter, None, wait_ms=60_000)  # no timed poll within the test
    w.start()
    try:
        assert w.sync(2.0)
        assert w.drain() == []
        clock.advance(1.0)  # the Xid falls due; only a sync can ask for it now
        t0 = time.monotonic()
        assert w.sync(2.0)
        got = w.drain()
        took = time.monotonic() - t0
    finally:
        w.stop()
        w.join(2)
    assert [(x.gpu, x.xid) for x in got] == [(2, 48)]
    assert took < 1.0
    assert timeouts and set(timeouts) == {0}


def test_timed_polls_deliver_without_a_sync(fake, clock):
    be = fake(XID48, clock=clock)
    w = XidWatcher(be.adapter, None, wait_ms=20)
    w.start()
    try:
        clock.advance(1.0)
        got: list = []
        eventually(lambda: got.extend(w.drain()) or got, 3.0, interval=0.01)
    finally:
        w.stop()
        w.join(2)
    assert [(x.gpu, x.xid) for x in got] == [(2, 48)]


def test_sync_without_a_running_thread_returns_at_once(fake, clock):
    w = XidWatcher(fake(XID48, clock=clock).adapter, None)
    t0 = time.monotonic()
    assert w.sync(1.0) is False
    assert time.monotonic() - t0 < 0.5
