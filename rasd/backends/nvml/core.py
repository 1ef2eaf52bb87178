"""The adapter core: loading pynvml, one error classifier, and a GPU handle's guarded read.

Error rules (README, "Error rules"):
- NotSupported / FunctionNotFound: the reading is absent (None), logged once per GPU and reading,
  and not asked again until the next re-probe (``REPROBE_POLLS`` polls later).
- GpuIsLost: the whole poll stops with ``GpuLost``.
- Unknown, Timeout, NoPermission, anything else: counted per (reading, kind), None this poll,
  retried next poll.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from rasd.backends.errors import GpuLost
from rasd.backends.nvml.fields import FieldIds
from rasd.model import ErrorKind, LostReason

if TYPE_CHECKING:
    from rasd.backends.nvml.adapter import NvmlAdapter

log = logging.getLogger("rasd.nvml")

T = TypeVar("T")

REPROBE_POLLS = 300  # re-ask an unsupported reading every ~5 min at the default 1 s poll


def pynvml_module() -> ModuleType:
    """Import and return the real ``pynvml`` (nvidia-ml-py). Importing never needs a GPU."""
    import pynvml

    return pynvml


class Outcome(enum.Enum):
    """What an NVML error means to rasd."""

    UNSUPPORTED = "unsupported"
    LOST = "lost"
    UNKNOWN = ErrorKind.UNKNOWN.value
    TIMEOUT = ErrorKind.TIMEOUT.value
    NO_PERMISSION = ErrorKind.NO_PERMISSION.value
    OTHER = ErrorKind.OTHER.value

    @property
    def kind(self) -> ErrorKind:
        """The counted error kind (UNSUPPORTED and LOST are not counted)."""
        return ErrorKind(self.value)


def nvml_errors(lib: Any) -> tuple[type[BaseException], ...]:
    """Everything a pynvml call raises for an NVML failure.

    pynvml raises ``NVMLLibraryMismatchError`` (not an NVMLError) when a versioned symbol such as
    ``nvmlDeviceGetComputeRunningProcesses_v3`` is missing from the loaded library."""
    mismatch = getattr(lib, "NVMLLibraryMismatchError", None)
    return (lib.NVMLError, mismatch) if isinstance(mismatch, type) else (lib.NVMLError,)


def _unsupported(lib: Any) -> tuple[type[BaseException], ...]:
    names = (
        "NVMLError_NotSupported",
        "NVMLError_FunctionNotFound",
        "NVMLError_Deprecated",  # removed calls answer this from CUDA 14 drivers on
        "NVMLLibraryMismatchError",
    )
    return tuple(c for n in names if isinstance(c := getattr(lib, n, None), type))


def classify(lib: Any, e: BaseException) -> Outcome:
    """The one place an NVML error is judged."""
    if isinstance(e, _unsupported(lib)):
        return Outcome.UNSUPPORTED
    if isinstance(e, lib.NVMLError_GpuIsLost):
        return Outcome.LOST
    if isinstance(e, lib.NVMLError_Unknown):
        return Outcome.UNKNOWN
    if isinstance(e, lib.NVMLError_Timeout):
        return Outcome.TIMEOUT
    if isinstance(e, lib.NVMLError_NoPermission):
        return Outcome.NO_PERMISSION
    return Outcome.OTHER


_LOST_REASONS = (
    ("NVMLError_GpuIsLost", LostReason.GPU_IS_LOST),
    ("NVMLError_NoPermission", LostReason.NO_PERMISSION),
    ("NVMLError_InsufficientPower", LostReason.INSUFFICIENT_POWER),
    ("NVMLError_IrqIssue", LostReason.IRQ_ISSUE),
)


def lost_reason(lib: Any, e: BaseException) -> LostReason:
    """Why a GPU that nvmlDeviceGetHandleByIndex refused is lost (the errors nvml.h documents
    for it; anything else is OTHER)."""
    for name, reason in _LOST_REASONS:
        cls = getattr(lib, name, None)
        if isinstance(cls, type) and isinstance(e, cls):
            return reason
    return LostReason.OTHER


def text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


# nvmlValueType_t -> the member of the nvmlValue_t union that holds the value
_VALUE_MEMBERS = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)


# Keyed by the library object itself (held for the process's life), never by id(): an id can
# be reused by another object once the first is collected.
_MEMBERS: dict[Any, dict[int, str]] = {}


def _members(lib: Any) -> dict[int, str]:
    """nvmlValueType_t value -> union member, per library object (looked up once, not per read)."""
    got = _MEMBERS.get(lib)
    if got is None:
        got = {}
        for const, member in _VALUE_MEMBERS:
            t = getattr(lib, const, None)
            if isinstance(t, int):
                got.setdefault(t, member)
        _MEMBERS[lib] = got
    return got


class HandleCore:
    """One GPU's raw handle and bookkeeping: the guarded ``_read`` and ``_fields``."""

    def __init__(self, adapter: "NvmlAdapter", index: int, raw: Any):
        self.adapter = adapter
        self.lib = adapter.lib
        self.fids: FieldIds = adapter.fids
        self.index = index
        self.raw = raw
        # why nvmlDeviceGetHandleByIndex failed for this GPU (raw is None then)
        self.unopened: str | None = None
        self.unopened_reason = LostReason.OTHER
        self._unsupported: dict[str, int] = {}  # reading -> poll number when found unsupported
        self._told_unsupported: set[str] = set()  # logged once a GPU, not at every re-probe
        self._unsupported_changes = 0  # readings marked or re-probed, ever: tells a cache it is stale
        self._errors: dict[tuple[str, str], int] = {}
        self._errors_lock = threading.Lock()
        self._polls = 0
        # prepared field requests by id list (None: the library's own call)
        self._requests: dict[tuple[int | tuple[int, int], ...], FieldRequest | None] = {}

    def error_counts(self) -> dict[tuple[str, str], int]:
        with self._errors_lock:
            return dict(self._errors)

    def unsupported(self) -> frozenset[str]:
        return frozenset(self._unsupported)

    def _count(self, reading: str, kind: ErrorKind, e: BaseException) -> None:
        key = (reading, kind.value)
        with self._errors_lock:
            n = self._errors.get(key, 0) + 1
            self._errors[key] = n
        if n == 1:  # a repeating failure is logged once, then counted
            log.warning(
                "event=nvml_error gpu=%d reading=%s kind=%s error=%r",
                self.index, reading, kind.value, str(e),
            )

    def _mark_unsupported(self, reading: str) -> None:
        if reading not in self._unsupported:
            if reading not in self._told_unsupported:
                self._told_unsupported.add(reading)
                log.info("event=reading_unsupported gpu=%d reading=%s", self.index, reading)
            self._unsupported_changes += 1
        self._unsupported.setdefault(reading, self._polls)

    def _judge(self, reading: str, e: BaseException) -> None:
        """Apply the error rules to one failed reading. Raises GpuLost."""
        outcome = classify(self.lib, e)
        if outcome is Outcome.UNSUPPORTED:
            self._mark_unsupported(reading)
        elif outcome is Outcome.LOST:
            raise GpuLost(self.index, f"{reading}: {e}") from None
        else:
            self._count(reading, outcome.kind, e)

    def _skipped(self, reading: str) -> bool:
        """A reading found unsupported is skipped until REPROBE_POLLS polls have passed, then
        asked again (a driver update or a reset can bring it back)."""
        since = self._unsupported.get(reading)
        if since is None:
            return False
        if self._polls - since < REPROBE_POLLS:
            return True
        del self._unsupported[reading]
        self._unsupported_changes += 1
        return False

    def _read(self, reading: str, fn: Callable[..., T], *args: Any) -> T | None:
        """One NVML reading under the error rules. Raises GpuLost; otherwise never raises.

        The checks cost nothing on a GPU with no unsupported reading and an open handle: a poll
        makes most of its calls through here."""
        if self._unsupported and self._skipped(reading):
            return None
        if self.raw is None:
            self._args(())  # raises GpuLost with the reason the GPU could not be opened
        try:
            return fn(*args)
        except nvml_errors(self.lib) as e:
            self._judge(reading, e)
        return None

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The call's arguments; raises GpuLost for a GPU whose handle could not be opened."""
        if self.raw is None:
            raise GpuLost(self.index, self.unopened or "not opened", self.unopened_reason)
        return args

    def _field_entries(self, ids: tuple[int | tuple[int, int], ...]) -> list[tuple[int, int, float, int]] | None:
        """nvmlDeviceGetFieldValues under the error rules: per entry (field id, its nvmlReturn,
        value, timestamp us), or None when the call itself failed. Raises GpuLost.

        Where ``lib`` is the C binding the request is prepared once per GPU and id list and the C
        function is called directly (``FieldRequest``); anything else (the fake NVML) goes through
        the library's own ``nvmlDeviceGetFieldValues``."""
        if self._skipped("field_values"):
            return None
        if self.raw is None:
            self._args(())  # raises GpuLost with the reason the GPU could not be opened
        lib = self.lib
        if ids in self._requests:
            req = self._requests[ids]
        else:
            req = self._requests[ids] = FieldRequest.prepare(lib, ids)
        try:
            if req is not None:
                return req(self.raw)
            return entries(lib, lib.nvmlDeviceGetFieldValues(self.raw, list(ids)))
        except nvml_errors(lib) as e:
            self._judge("field_values", e)
        return None

    def _field_failed(self, fid: int, ret: int) -> None:
        """One entry's own nvmlReturn is not SUCCESS: apply the error rules. Raises GpuLost."""
        self._judge(self.fids.name_of(fid) or f"field_{fid}", self.lib.NVMLError(ret))

    def _fields(
        self, ids: tuple[int | tuple[int, int] | None, ...]
    ) -> dict[int, tuple[float, int]]:
        """nvmlDeviceGetFieldValues: {field id: (value, timestamp us)} for entries that succeeded.

        An id may be ``(id, scopeId)``; None ids (fields the binding lacks) are skipped. Each
        entry carries its own nvmlReturn; a NotSupported entry is an absent reading."""
        wanted = tuple(i for i in ids if i is not None)
        if not wanted:
            return {}
        got = self._field_entries(wanted)
        out: dict[int, tuple[float, int]] = {}
        if got is None:
            return out
        for fid, ret, value, ts in got:
            if ret == 0:
                out[fid] = (value, ts)
            else:
                self._field_failed(fid, ret)
        return out

    def _field_one(self, fid: int) -> tuple[float, int] | None:
        """One field's (value, timestamp us), or None: ``_fields`` for a single id without the
        dict (the power sampler's read, about ten times a second per GPU). Raises GpuLost."""
        got = self._field_entries((fid,))
        if got is None:
            return None
        _, ret, value, ts = got[0]
        if ret != 0:
            self._field_failed(fid, ret)
            return None
        return value, ts


_PLAIN: dict[Any, Any] = {}  # by library object, as _MEMBERS


def plain_field_value(lib: Any) -> Any:
    """A plain ctypes twin of the binding's ``c_nvmlFieldValue_t`` (its own ``_fields_``, so the
    layout nvml.h gives it), without pynvml's Python-level ``__getattribute__``/``__setattr__``
    on every member access. None where the binding has no such type or the sizes differ."""
    got = _PLAIN.get(lib, False)
    if got is False:
        base = getattr(lib, "c_nvmlFieldValue_t", None)
        got = None
        if isinstance(base, type) and issubclass(base, ctypes.Structure):
            attrs: dict[str, Any] = {"_fields_": list(base._fields_)}
            if hasattr(base, "_pack_"):
                attrs["_pack_"] = base._pack_
            twin = type("FieldValue", (ctypes.Structure,), attrs)
            got = twin if ctypes.sizeof(twin) == ctypes.sizeof(base) else None
        _PLAIN[lib] = got
    return got


def entries(lib: Any, values: Any) -> list[tuple[int, int, float, int]]:
    """The binding's ``c_nvmlFieldValue_t`` entries -> (field id, nvmlReturn, value, timestamp us);
    the value is 0.0 where the entry failed (NVML_SUCCESS is 0 in nvml.h).

    A ctypes array is read through the plain twin of its entry type (the same memory, without
    the Python-level attribute hooks); anything else entry by entry."""
    members = _members(lib)
    twin = plain_field_value(lib)
    if twin is not None and isinstance(values, ctypes.Array) and values._type_ is lib.c_nvmlFieldValue_t:
        values = (twin * len(values)).from_buffer(values)
    out = []
    for v in values:
        ret = int(v.nvmlReturn)
        value = float(getattr(v.value, members.get(v.valueType, "ullVal"))) if ret == 0 else 0.0
        out.append((int(v.fieldId), ret, value, int(v.timestamp)))
    return out


class FieldRequest:
    """A prepared nvmlDeviceGetFieldValues request for one GPU and one list of field ids.

    pynvml's wrapper allocates and fills a new array and converts every member through Python on
    each call, and the power sampler makes that call about ten times a second per GPU. Here the
    array is built once, the C function comes from pynvml's own function-pointer lookup (its
    cache, its errors), and a failed call raises pynvml's own ``NVMLError`` subclass, so the one
    classifier judges it as before. A request in use by another thread is not shared: that
    caller gets a fresh one."""

    __slots__ = ("lib", "ids", "struct", "arr", "ref", "count", "fn", "lock")

    def __init__(self, lib: Any, ids: tuple[int | tuple[int, int], ...], struct: Any):
        self.lib = lib
        self.ids = ids
        self.struct = struct
        self.arr = (struct * len(ids))()
        self.ref = ctypes.byref(self.arr)
        self.count = ctypes.c_int32(len(ids))
        self.fn: Any = None
        self.lock = threading.Lock()

    @staticmethod
    def prepare(lib: Any, ids: tuple[int | tuple[int, int], ...]) -> "FieldRequest | None":
        """A request where ``lib`` is pynvml over the C library, else None (use the library's
        own call: the fake NVML, or a binding without the function-pointer lookup)."""
        if not isinstance(lib, ModuleType) or not callable(getattr(lib, "_nvmlGetFunctionPointer", None)):
            return None
        struct = plain_field_value(lib)
        return FieldRequest(lib, ids, struct) if struct is not None else None

    def __call__(self, raw: Any) -> list[tuple[int, int, float, int]]:
        if not self.lock.acquire(False):  # another thread is in this request: use a fresh one
            return FieldRequest(self.lib, self.ids, self.struct)(raw)
        try:
            fn = self.fn
            if fn is None:  # raises NVMLError (uninitialised, function not found) as pynvml does
                fn = self.fn = self.lib._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")
            ctypes.memset(self.arr, 0, ctypes.sizeof(self.arr))  # a fresh request, as pynvml's
            for e, fid in zip(self.arr, self.ids):
                if type(fid) is tuple:
                    e.fieldId, e.scopeId = fid
                else:
                    e.fieldId = fid
            ret = fn(raw, self.count, self.ref)
            if ret != 0:
                raise self.lib.NVMLError(ret)
            return entries(self.lib, self.arr)  # copied out before another caller can reuse it
        finally:
            self.lock.release()
