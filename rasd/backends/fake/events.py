"""Xid events for the fake NVML: event sets, registration, and a wait that really blocks.

``nvmlEventSetWait`` waits on the node's condition variable: on a real-time clock it sleeps until
the next scripted Xid falls due (or the timeout), and a manual clock wakes it when it moves.
Like NVML, a set only reports events that happen after a GPU was registered with it.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, Callable, NoReturn

_XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError


class _EventSet:
    def __init__(self) -> None:
        self.registered: dict[int, float] = {}  # gpu -> seconds since start it registered at
        self.position = 0  # index into Effects.xids of the next candidate


class EventsMixin:
    """The event half of FakeNvml (uses its ``_node``, ``_base``, ``_handles``, ``_sets``)."""

    _node: Any
    _base: Any
    _handles: list[Any]
    _sets: dict[int, tuple[Any, "_EventSet"]]
    _raise: Callable[[str], NoReturn]  # FakeNvml's: raise base.NVMLError_<Name>()
    _gpu_of: Callable[[Any], int]  # FakeNvml's: device handle -> GPU index

    # ------------------------------------------------------------------ events

    def nvmlEventSetCreate(self) -> Any:
        mem = ctypes.create_string_buffer(8)
        handle = ctypes.cast(mem, self._base.c_nvmlEventSet_t)
        self._sets[ctypes.addressof(mem)] = (mem, _EventSet())
        return handle

    def _address_of(self, event_set: Any) -> int:
        try:
            address = ctypes.cast(event_set, ctypes.c_void_p).value
        except (ctypes.ArgumentError, TypeError):
            address = None
        if address is None or address not in self._sets:
            self._raise("invalid_argument")
        return address

    def _set_of(self, event_set: Any) -> _EventSet:
        return self._sets[self._address_of(event_set)][1]

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        gpu = self._gpu_of(handle)
        es = self._set_of(eventSet)
        if eventTypes & _XID_EVENT:
            es.registered.setdefault(gpu, self._node.elapsed())

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        del self._sets[self._address_of(eventSet)]

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Any:
        return self._wait(eventSet, timeoutms)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        return self._wait(eventSet, timeoutms)

    def _wait(self, eventSet: Any, timeoutms: int) -> Any:
        """Blocks up to ``timeoutms`` real milliseconds; raises NVMLError_Timeout if nothing fell due."""
        es = self._set_of(eventSet)
        node = self._node
        xids = node.effects.xids
        deadline = time.monotonic() + max(0, timeoutms) / 1000.0
        with node.changed:
            while True:
                now = node.elapsed()
                while es.position < len(xids) and xids[es.position].at <= now:
                    x = xids[es.position]
                    es.position += 1
                    since = es.registered.get(x.gpu)
                    if since is not None and x.at >= since:
                        data = self._base.c_nvmlEventData_t()
                        data.device = self._handles[x.gpu]
                        data.eventType = _XID_EVENT
                        data.eventData = x.xid
                        data.gpuInstanceId = data.computeInstanceId = 0xFFFFFFFF
                        return data
                # nvml.h documents GPU_IS_LOST for nvmlEventSetWait_v2: a registered GPU that
                # fell off the bus makes every wait on the set answer it, once nothing is pending.
                if any(node.lost(g) for g in es.registered):
                    self._raise("gpu_is_lost")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._raise("timeout")
                nxt = node.effects.next_xid_after(now)
                # On a real-time clock the next Xid falls due by itself; a manual clock notifies.
                wait = remaining if nxt is None else min(remaining, max(nxt - now, 0.001))
                node.changed.wait(wait)
