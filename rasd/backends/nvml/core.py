"""The adapter core: loading pynvml, one error classifier, and a GPU handle's guarded read.

Error rules (README, "Error rules"):
- NotSupported / FunctionNotFound: the reading is absent (None), logged once per GPU and reading,
  and not asked again until the next re-probe (``REPROBE_POLLS`` polls later).
- GpuIsLost: the whole poll stops with ``GpuLost``.
- Unknown, Timeout, NoPermission, anything else: counted per (reading, kind), None this poll,
  retried next poll.
"""

from __future__ import annotations

import enum
import logging
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from rasd.backends.errors import GpuLost
from rasd.backends.nvml.fields import FieldIds
from rasd.backends.nvml.values import FieldRequest, entries, plain_field_value
from rasd.model import ErrorKind, LostReason

if TYPE_CHECKING:
    from rasd.backends.nvml.adapter import NvmlAdapter

__all__ = ["FieldRequest", "entries", "plain_field_value"]  # the fake NVML fills entries with the twin

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
        # Marks and re-probes come from the health poll's thread and the power reads' (the power
        # loop, or the main loop judging native reads): changed under this lock, read without it
        self._unsupported_lock = threading.Lock()
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
        with self._unsupported_lock:
            if reading in self._unsupported:
                return
            self._unsupported[reading] = self._polls
            self._unsupported_changes += 1
            tell = reading not in self._told_unsupported
            self._told_unsupported.add(reading)
        if tell:
            log.info("event=reading_unsupported gpu=%d reading=%s", self.index, reading)

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
        with self._unsupported_lock:
            if self._unsupported.pop(reading, None) is not None:  # the other thread may be first
                self._unsupported_changes += 1
        return False

    def _read(self, reading: str, fn: Callable[..., T], *args: Any) -> T | None:
        """One NVML reading under the error rules. Raises GpuLost; otherwise never raises.

        The checks cost two lookups for a reading not set aside on an open handle (the usual
        case, also on GPUs where some other reading is unsupported, such as retired pages on
        Ampere and later)."""
        if reading in self._unsupported and self._skipped(reading):
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
        if "field_values" in self._unsupported and self._skipped("field_values"):
            return None
        raw = self.raw
        if raw is None:
            self._args(())  # raises GpuLost with the reason the GPU could not be opened
        lib = self.lib
        try:
            req = self._requests[ids]
        except KeyError:  # the first read of this id list
            req = self._requests[ids] = FieldRequest.prepare(lib, ids)
        try:
            if req is not None:
                return req(raw)
            return entries(lib, lib.nvmlDeviceGetFieldValues(raw, list(ids)))
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
