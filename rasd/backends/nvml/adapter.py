"""The node-level NVML adapter: open, the GPU handles, node identity, Xid event sets.

The adapter takes the library object as a parameter: the real ``pynvml`` module on a GPU node,
or ``rasd.backends.fake.FakeNvml`` (a fake NVML with the same functions and error classes)
anywhere else, so every test runs this exact code.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from rasd.backends.nvml.control import Control
from rasd.backends.nvml.core import text
from rasd.backends.nvml.fields import FieldIds
from rasd.backends.nvml.readings import Readings
from rasd.model import NodeIdentity

log = logging.getLogger("rasd.nvml")


class GpuHandle(Readings, Control):
    """One GPU. ``poll()`` is called by that GPU's own poller thread only (no locking needed for
    its bookkeeping); ``instant_power()`` by its own sampler thread."""


class NvmlAdapter:
    """Node-level NVML access. ``open()`` initialises the library; ``gpus()`` lists handles."""

    def __init__(self, lib: Any):
        self.lib = lib
        self.fids = FieldIds.of(lib)
        self._gpus: list[GpuHandle] = []
        self._open = False

    def open(self) -> None:
        lib = self.lib
        lib.nvmlInit()
        self._open = True
        count = lib.nvmlDeviceGetCount()
        self._gpus = [GpuHandle(self, i, lib.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.lib.nvmlShutdown()
            except self.lib.NVMLError as e:  # shutting down anyway
                log.debug("event=nvml_shutdown_failed error=%r", str(e))

    def gpus(self) -> list[GpuHandle]:
        return list(self._gpus)

    def by_raw_handle(self, raw: Any) -> GpuHandle | None:
        """The GpuHandle for a raw NVML device handle (e.g. an event's ``device``).

        ctypes pointers compare by identity, not address, so ask NVML for the index instead."""
        try:
            index = self.lib.nvmlDeviceGetIndex(raw)
        except self.lib.NVMLError:
            return None
        for g in self._gpus:
            if g.index == index:
                return g
        return None

    def node_identity(self, hostname: str, backend: str) -> NodeIdentity:
        lib = self.lib

        def opt(fn: Callable[[], Any]) -> str | None:
            try:
                return text(fn())
            except lib.NVMLError:
                return None

        cuda = opt(lib.nvmlSystemGetCudaDriverVersion)
        if cuda and cuda.isdigit():  # 12040 -> "12.4"
            n = int(cuda)
            cuda = f"{n // 1000}.{(n % 1000) // 10}"
        return NodeIdentity(
            hostname=hostname,
            backend=backend,
            driver_version=opt(lib.nvmlSystemGetDriverVersion),
            nvml_version=opt(lib.nvmlSystemGetNVMLVersion),
            cuda_driver_version=cuda,
        )

    # -- Xid events ---------------------------------------------------------------------------

    def xid_event_set(self) -> "XidEventSet":
        return XidEventSet(self)


class XidEventSet:
    """An NVML event set registered for Xid critical errors on every GPU that supports it.

    ``wait(timeout_ms)`` blocks in ``nvmlEventSetWait`` (the GIL is released meanwhile) and returns
    ``(gpu_index, xid)`` or None on timeout.
    """

    def __init__(self, adapter: NvmlAdapter):
        lib = adapter.lib
        self._adapter = adapter
        self._lib = lib
        self._set = lib.nvmlEventSetCreate()
        self.registered: list[int] = []
        for g in adapter.gpus():
            try:
                lib.nvmlDeviceRegisterEvents(g.raw, lib.nvmlEventTypeXidCriticalError, self._set)
                self.registered.append(g.index)
            except lib.NVMLError as e:
                log.warning("event=xid_register_failed gpu=%d error=%r", g.index, str(e))

    def wait(self, timeout_ms: int) -> tuple[int, int] | None:
        lib = self._lib
        try:
            data = lib.nvmlEventSetWait_v2(self._set, timeout_ms)
        except lib.NVMLError_Timeout:
            return None
        g = self._adapter.by_raw_handle(data.device)
        return (g.index if g else -1, int(data.eventData))

    def close(self) -> None:
        try:
            self._lib.nvmlEventSetFree(self._set)
        except self._lib.NVMLError:
            pass
