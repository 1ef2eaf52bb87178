"""Xid events through nvmlEventSetWait: real blocking, wake-ups, and pynvml's event struct."""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

XID79 = """
    [[event]]
    kind = "fall_off_bus"
    at = 2.0
    gpu = 3

    [[event]]
    kind = "xid"
    at = 3.0
    gpu = 1
    xid = 94
    """


def _event_set(lib, base, gpus=range(8)):
    es = lib.nvmlEventSetCreate()
    assert isinstance(es, base.c_nvmlEventSet_t)
    for g in gpus:
        lib.nvmlDeviceRegisterEvents(lib.nvmlDeviceGetHandleByIndex(g), base.nvmlEventTypeXidCriticalError, es)
    return es


def test_wait_blocks_for_the_timeout_then_raises_timeout(make, base):
    _, lib = make(XID79)
    es = _event_set(lib, base)
    t0 = time.monotonic()
    with pytest.raises(base.NVMLError_Timeout):
        lib.nvmlEventSetWait_v2(es, 150)
    assert 0.14 <= time.monotonic() - t0 < 1.0
    lib.nvmlEventSetFree(es)
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlEventSetWait(es, 10)


def _address(handle):
    return ctypes.cast(handle, ctypes.c_void_p).value


def test_due_events_are_returned_in_order_with_the_device_handle(make, mclock, base):
    _, lib = make(XID79)
    es = _event_set(lib, base)
    handles = [_address(lib.nvmlDeviceGetHandleByIndex(g)) for g in range(8)]
    mclock.advance(5)
    first = lib.nvmlEventSetWait(es, 0)
    assert isinstance(first, base.c_nvmlEventData_t)
    assert first.eventType == base.nvmlEventTypeXidCriticalError and first.eventData == 79
    assert handles.index(_address(first.device)) == 3
    with pytest.raises(base.NVMLError_GpuIsLost):  # nvml.h: GetIndex answers lost for a lost GPU
        lib.nvmlDeviceGetIndex(first.device)
    second = lib.nvmlEventSetWait_v2(es, 0)
    assert (lib.nvmlDeviceGetIndex(second.device), second.eventData) == (1, 94)
    # nothing pending and GPU 3 (registered) is lost: the wait answers GPU_IS_LOST
    with pytest.raises(base.NVMLError_GpuIsLost):
        lib.nvmlEventSetWait(es, 0)
    healthy = _event_set(lib, base, gpus=[0, 1, 2])
    with pytest.raises(base.NVMLError_Timeout):
        lib.nvmlEventSetWait(healthy, 0)


def test_a_waiter_wakes_when_the_clock_makes_an_event_due(make, mclock, base):
    _, lib = make(XID79)
    es = _event_set(lib, base)
    got = []

    def wait():
        t0 = time.monotonic()
        got.append((lib.nvmlEventSetWait(es, 5000).eventData, time.monotonic() - t0))

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.1)
    assert not got
    mclock.advance(2.5)
    th.join(2)
    assert got and got[0][0] == 79 and got[0][1] < 1.0


def test_only_registered_gpus_and_events_after_registration(make, mclock, base):
    _, lib = make(XID79)
    es = _event_set(lib, base, gpus=[1])
    mclock.advance(10)
    assert lib.nvmlEventSetWait(es, 0).eventData == 94
    with pytest.raises(base.NVMLError_Timeout):
        lib.nvmlEventSetWait(es, 0)
    with pytest.raises(base.NVMLError_GpuIsLost):  # GPU 3 fell off the bus at 2 s
        _event_set(lib, base, gpus=[3])
    late = _event_set(lib, base, gpus=[0, 1, 2])  # registered after both Xids: sees neither
    with pytest.raises(base.NVMLError_Timeout):
        lib.nvmlEventSetWait(late, 0)


def test_real_time_clock_delivers_without_a_notify(base):
    from rasd.backends.fake import FakeNode, FakeNvml
    from rasd.backends.fake.scenario import parse_scenario

    scn = parse_scenario('[[event]]\nkind = "xid"\nat = 0.2\ngpu = 0\nxid = 31\n')
    lib = FakeNvml(FakeNode(scenario=scn), base)
    lib.nvmlInit()
    es = _event_set(lib, base, gpus=[0])
    t0 = time.monotonic()
    assert lib.nvmlEventSetWait(es, 2000).eventData == 31
    assert time.monotonic() - t0 < 1.0
