"""The node-level NVML adapter: open, the GPU handles, node identity, Xid event sets.

The adapter takes the library object as a parameter: the real ``pynvml`` module on a GPU node,
or ``rasd.backends.fake.FakeNvml`` (a fake NVML with the same functions and error classes)
anywhere else, so every test runs this exact code.
"""

from __future__ import annotations

import ctypes
import logging
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rasd.backends.errors import EventsFailed, NvmlStartFailed
from rasd.backends.nvml.control import Control
from rasd.backends.nvml.core import lost_reason, nvml_errors, text
from rasd.backends.nvml.fields import FieldIds
from rasd.backends.nvml.readings import Readings
from rasd.model import NodeIdentity

if TYPE_CHECKING:
    from os import PathLike

    from rasd.backends.nvml.powerloop import NativeReads

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
        # why power smoothing is refused on this node (None: allowed where the GPU supports it)
        self.smoothing_refused: str | None = None

    def open(self) -> None:
        """nvmlInit, then each GPU on its own: one GPU that cannot be opened does not stop the rest.

        nvml.h documents GPU_IS_LOST, NO_PERMISSION, INSUFFICIENT_POWER and IRQ_ISSUE for
        nvmlDeviceGetHandleByIndex; such a GPU is kept with its reason and reads as lost.
        Raises NvmlStartFailed only when the library itself cannot start."""
        lib = self.lib
        try:
            lib.nvmlInit()
            self._open = True
            count = lib.nvmlDeviceGetCount()
        except nvml_errors(lib) as e:
            self.close()
            raise NvmlStartFailed(text(e)) from None
        gpus = []
        for i in range(count):
            try:
                g = GpuHandle(self, i, lib.nvmlDeviceGetHandleByIndex(i))
            except nvml_errors(lib) as e:
                g = GpuHandle(self, i, None)
                g.unopened = f"cannot open the GPU: {text(e)}"
                g.unopened_reason = lost_reason(lib, e)
                log.error("event=gpu_open_failed gpu=%d reason=%s error=%r", i, g.unopened_reason.value, text(e))
            gpus.append(g)
        self._gpus = gpus
        self.smoothing_refused = self._check_numbering()

    def _check_numbering(self) -> str | None:
        """Refuse power smoothing where the binding numbers the smoothing fields differently
        from the driver (NVIDIA renumbered fields 251-273 between R575 / early R580 and the
        rest); one log line says so."""
        binding = binding_numbering(self.lib, self.fids)
        if binding is None:
            return "the nvidia-ml-py binding has no power-smoothing fields"
        try:
            version = text(self.lib.nvmlSystemGetDriverVersion())
        except nvml_errors(self.lib) as e:
            return f"the driver version is unknown ({text(e)})"
        driver = driver_numbering(version)
        if driver is None:
            return f"driver {version} predates power smoothing (R570)"
        if driver != binding:
            # here only: importlib.metadata loads the email parser, 1.5 MB a daemon need not carry
            from importlib import metadata

            try:
                have = metadata.version("nvidia-ml-py")
            except metadata.PackageNotFoundError:
                have = "unknown"
            reason = (
                f"driver {version} numbers the power-smoothing fields the {driver} way but "
                f"nvidia-ml-py {have} the {binding} way; install the nvidia-ml-py release "
                "that matches the driver branch"
            )
            log.warning("event=smoothing_refused reason=%r", reason)
            return reason
        return None

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

        ctypes pointers compare by identity, not address, so compare addresses; a lost GPU
        cannot be asked for its index (nvmlDeviceGetIndex answers GPU_IS_LOST)."""
        address = _address(raw)
        for g in self._gpus:
            if g.raw is not None and _address(g.raw) == address:
                return g
        return None

    def native_power(self, gpus: Sequence[GpuHandle], path: str | PathLike[str] | None = None) -> "NativeReads | None":
        """What the native power loop (``powerloop``) needs to read the instant power of ``gpus``,
        or None where it cannot: the extension was not built, the binding lacks the field or its
        layout differs, or a GPU was not opened (the Python sampler reports that GPU as lost).
        On pynvml over the C library the reader calls the library's nvmlDeviceGetFieldValues; a
        library of another kind may offer a function of that signature itself
        (``native_field_reader``: the fake NVML's C reader of its power model). ``path``: the
        built reader, by default the one the install put beside its module."""
        from rasd.backends.nvml.powerloop import NativeReads, library_path, load

        lib, fid = self.lib, self.fids.power_instant
        path = path or library_path()
        struct = getattr(lib, "c_nvmlFieldValue_t", None)
        if path is None or fid is None or struct is None or not gpus or any(g.raw is None for g in gpus):
            return None
        if not isinstance(lib, ModuleType):
            offer = getattr(lib, "native_field_reader", None)
            got = offer([g.index for g in gpus], fid) if callable(offer) else None
            native = load(str(path), struct) if got is not None else None
            if got is None or native is None:
                return None
            return NativeReads(native, got[0], tuple(got[1]), fid, keep=got[2])
        if not callable(getattr(lib, "_nvmlGetFunctionPointer", None)):
            return None
        devices = [_address(g.raw) for g in gpus]
        native = load(str(path), struct)
        if native is None or any(d is None for d in devices):
            return None
        try:
            fn = ctypes.cast(lib._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues"), ctypes.c_void_p).value
        except nvml_errors(lib) as e:
            log.warning("event=native_sampler_unavailable error=%r", text(e))
            return None
        if not fn:
            return None
        return NativeReads(native, fn, tuple(d for d in devices if d is not None), fid)

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


def _address(raw: Any) -> int | None:
    try:
        return ctypes.cast(raw, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return None


# The two numberings of power-smoothing fields 251-273 (see REFERENCE: NVML known issues).
CURRENT = "R570/R580-TRD2+"
R575 = "R575/R580-early"
_FIRST_CURRENT_R580 = 82  # 580.82 and later use the current numbering
_CURRENT_SMOOTHING_ENABLED = 251


def binding_numbering(lib: Any, fids: FieldIds) -> str | None:
    """How the binding numbers the smoothing fields (None: it has none).

    The one place a field number is written out: it identifies the numbering, it is never read.
    nvml.h from CUDA 13.0U1 on (R570, R580 TRD2+) has NVML_FI_PWR_SMOOTHING_ENABLED = 251; the R575
    headers put the smoothing fields at 256-269."""
    if fids.smoothing_enabled is None:
        return None
    return CURRENT if fids.smoothing_enabled == _CURRENT_SMOOTHING_ENABLED else R575


def driver_numbering(version: str) -> str | None:
    """How a driver numbers them, from nvmlSystemGetDriverVersion (None: before R570)."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        return None
    major, minor = int(m[1]), int(m[2])
    if major < 570:
        return None
    if 575 <= major < 580 or (major == 580 and minor < _FIRST_CURRENT_R580):
        return R575
    return CURRENT


class XidEventSet:
    """An NVML event set registered for Xid critical errors on every GPU that supports it.

    ``wait(timeout_ms)`` blocks in ``nvmlEventSetWait`` (the GIL is released meanwhile) and returns
    ``(gpu_index, xid)`` or None on timeout. pynvml's errors stay here: failures raise EventsFailed.
    A wait that answers GPU_IS_LOST drops the lost GPUs from the set and keeps watching the rest.
    """

    def __init__(self, adapter: NvmlAdapter):
        self._adapter = adapter
        self._lib = adapter.lib
        self.lost: set[int] = set()
        self._set: Any = None
        self.registered: list[int] = []
        self._build()

    def _build(self) -> None:
        lib = self._lib
        try:
            self._set = lib.nvmlEventSetCreate()
        except nvml_errors(lib) as e:
            raise EventsFailed(f"cannot create an NVML event set: {text(e)}") from None
        self.registered = []
        for g in self._adapter.gpus():
            if g.raw is None or g.index in self.lost:
                continue
            try:
                lib.nvmlDeviceRegisterEvents(g.raw, lib.nvmlEventTypeXidCriticalError, self._set)
                self.registered.append(g.index)
            except lib.NVMLError_GpuIsLost:
                self.lost.add(g.index)
            except nvml_errors(lib) as e:
                log.warning("event=xid_register_failed gpu=%d error=%r", g.index, text(e))

    def wait(self, timeout_ms: int) -> tuple[int, int] | None:
        lib = self._lib
        try:
            data = lib.nvmlEventSetWait_v2(self._set, timeout_ms)
        except lib.NVMLError_Timeout:
            return None
        except lib.NVMLError_GpuIsLost as e:
            if not self._drop_lost():
                raise EventsFailed(f"event wait: {text(e)} (no registered GPU reads as lost)") from None
            return None
        except nvml_errors(lib) as e:
            raise EventsFailed(f"event wait: {text(e)}") from None
        g = self._adapter.by_raw_handle(data.device)
        return (g.index if g else -1, int(data.eventData))

    def _drop_lost(self) -> bool:
        """Find the registered GPUs that are lost and rebuild the set without them."""
        lib, found = self._lib, []
        for g in self._adapter.gpus():
            if g.index not in self.registered:
                continue
            try:
                lib.nvmlDeviceGetUUID(g.raw)
            except lib.NVMLError_GpuIsLost:
                found.append(g.index)
            except nvml_errors(lib):
                pass
        if not found:
            return False
        self.lost.update(found)
        log.error("event=xid_watch_dropped gpus=%s reason=gpu_is_lost", ",".join(map(str, found)))
        self.close()
        self._build()
        return True

    def close(self) -> None:
        try:
            self._lib.nvmlEventSetFree(self._set)
        except nvml_errors(self._lib):
            pass
