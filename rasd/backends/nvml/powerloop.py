"""The power sampler's reads on a native thread (``_powerloop.c``), for the C NVML library.

The extension is built when rasd is installed where a C compiler is present (``pyproject.toml``:
an optional extension, so an install without one still succeeds); without it, or where its
layouts do not match the binding's, the sampler reads from Python as before. It is loaded with
``ctypes`` (it has no Python API of its own), and is handed nvmlDeviceGetFieldValues through
pynvml's own function-pointer lookup, so it always calls the library pynvml loaded.

``NativeLoop`` gives the sampler and the watchdog the same face as ``rasd.telemetry.loops``'s
loops: ``check`` gives a hung read up (its GPU is set aside, another thread reads the others),
``hung`` names the GPUs set aside, and a GPU comes back once its read has returned. Results are
taken in batches with ``drain``: each is one read, in order, with the times it returned on the
monotonic and the wall clock.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import logging
import operator
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Sequence, TypeVar

log = logging.getLogger("rasd.power.native")

T = TypeVar("T")
# one read: (position, nvmlReturn, 1 if that is the whole call's, monotonic ns, wall ns, stamp us, value)
Result = tuple[int, int, int, int, int, int, float]

QUEUE_SECONDS = 8.0  # reads kept for the daemon to take, at least: its main loop takes them every pass


class Record(ctypes.Structure):
    """One read's result (``pl_record``)."""

    _fields_ = [
        ("gpu", ctypes.c_int32),
        ("ret", ctypes.c_int32),  # nvmlReturn: the call's where it failed, else the entry's
        ("of_call", ctypes.c_int32),
        ("pad", ctypes.c_int32),
        ("mono_ns", ctypes.c_int64),
        ("wall_ns", ctypes.c_int64),
        ("stamp_us", ctypes.c_int64),
        ("value", ctypes.c_double),
    ]


# ``Record`` as ``struct`` reads it (native sizes and alignment, as ctypes and the C compiler lay
# it out; the pad skipped): a batch is unpacked into result tuples in C, where reading each field of
# each record through ctypes costs about 0.2 us a read. ``_typed`` refuses a build where the two
# disagree.
RECORD_STRUCT = struct.Struct("@iii4xqqqd")


def library_path() -> str | None:
    """The built extension beside this module, if the install built it."""
    # os.path, not pathlib: a daemon on NVML loads nothing else that needs pathlib (0.6 MB)
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = os.path.join(here, f"_powerloop{suffix}")
        if os.path.isfile(p):
            return p
    return None


def field_layout(field_struct: Any) -> list[int]:
    """The size and members' offsets of ``field_struct`` (the binding's nvmlFieldValue_t), in the
    order a C library built with nvml.h's layout reports them."""
    f = field_struct
    return [
        ctypes.sizeof(f), f.fieldId.offset, f.scopeId.offset, f.timestamp.offset,
        f.latencyUsec.offset, f.valueType.offset, f.nvmlReturn.offset, f.value.offset,
    ]


def _layout(field_struct: Any) -> list[int]:
    """What ``pl_layout`` must report for ``field_struct`` (the binding's nvmlFieldValue_t)."""
    return field_layout(field_struct) + [
        ctypes.sizeof(Record), Record.gpu.offset, Record.ret.offset, Record.of_call.offset,
        Record.mono_ns.offset, Record.wall_ns.offset, Record.stamp_us.offset, Record.value.offset,
    ]


@functools.cache
def load(path: str, field_struct: Any) -> ctypes.CDLL | None:
    """The library at ``path`` with its functions typed, or None (logged once) where it cannot be
    loaded or was built with other layouts than ``field_struct``'s and ``Record``'s."""
    try:
        return _typed(ctypes.CDLL(path), field_struct)
    except Exception as e:  # noqa: BLE001 - a stale or foreign build: read from Python instead
        log.warning("event=native_sampler_unavailable path=%s error=%r", path, str(e))
        return None


def _typed(lib: ctypes.CDLL, field_struct: Any) -> ctypes.CDLL:
    """``lib`` with its functions typed; raises where it lacks one or its layouts differ."""
    c, i32, i64, p = ctypes, ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    lib.pl_layout.argtypes, lib.pl_layout.restype = [c.POINTER(i64), c.c_int], c.c_int
    got = (i64 * 32)()
    n = lib.pl_layout(got, 32)
    want = _layout(field_struct)
    if list(got[:n]) != want:
        raise ValueError(f"built with layouts {list(got[:n])}, the binding has {want}")
    if RECORD_STRUCT.size != ctypes.sizeof(Record):
        raise ValueError(f"records of {ctypes.sizeof(Record)} bytes unpacked as {RECORD_STRUCT.size}")
    lib.pl_start.argtypes = [p, c.POINTER(p), c.POINTER(i32), c.c_int, c.c_uint, i64, c.c_int]
    lib.pl_start.restype = p
    lib.pl_drain.argtypes, lib.pl_drain.restype = [p, c.POINTER(Record), c.c_int], c.c_int
    lib.pl_busy.argtypes, lib.pl_busy.restype = [p, c.POINTER(i64)], c.c_int
    lib.pl_set_enabled.argtypes, lib.pl_set_enabled.restype = [p, c.c_int, c.c_int], None
    lib.pl_set_period.argtypes, lib.pl_set_period.restype = [p, i64], None
    lib.pl_counts.argtypes = [p, c.POINTER(c.c_longlong), c.POINTER(c.c_longlong)]
    lib.pl_counts.restype = None
    for name in ("pl_stop", "pl_release"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [p], None
    lib.pl_done.argtypes, lib.pl_done.restype = [p], c.c_int
    return lib


_RETURNED = operator.itemgetter(3)  # a result's monotonic ns, when its read returned


@dataclass(frozen=True)
class NativeReads:
    """What the native loop needs to read one field of every GPU: the library, the C
    nvmlDeviceGetFieldValues (an address), each GPU's device handle (an address) and the field.
    ``keep``: what owns the memory behind ``fn`` and ``devices`` where Python owns it (the fake
    node's C reader), held as long as the loop is."""

    lib: ctypes.CDLL
    fn: int
    devices: tuple[int, ...]
    field_id: int
    keep: Any = field(default=None, compare=False, repr=False)


class NativeLoop(Generic[T]):
    """Reads ``reads.field_id`` of every item's GPU (``items[i]`` is ``reads.devices[i]``) each
    ``interval`` seconds on a native thread; a read past ``deadline`` is given up by ``check``."""

    def __init__(
        self, name: str, items: Sequence[T], reads: NativeReads, interval: float, deadline: float,
        queue_seconds: float = QUEUE_SECONDS,
    ):
        if len(items) != len(reads.devices):
            raise ValueError("one device per item")
        self.name = name
        self.items = list(items)
        self.reads = reads
        self.deadline = deadline
        self.queue_seconds = queue_seconds
        self._interval = interval
        # the watchdog's check runs on any loop's thread and drain on the main loop's
        self._lock = threading.Lock()
        self._runner: int | None = None
        # (runner, position of its hung read, or -1 for one replaced by resize)
        self._abandoned: list[tuple[int, int]] = []
        self._hung: set[int] = set()
        self._taken: list[Result] = []  # from abandoned runners
        n = len(items)
        self._devices = (ctypes.c_void_p * n)(*reads.devices)
        self._out = (Record * max(64, n * 4))()
        self._bytes = memoryview(self._out).cast("B")  # the same memory, for RECORD_STRUCT
        self._since = ctypes.c_int64()
        self._reads, self._dropped = ctypes.c_longlong(), ctypes.c_longlong()
        self.dropped = 0  # results lost to a full queue (the main loop did not take them in time)
        self._runner_dropped = 0  # of those, the current runner's
        self._start_failed = False  # a thread could not be started (logged once)
        self.abandoned = 0
        self.stop_event = threading.Event()

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._interval = seconds
        with self._lock:
            if self._runner is not None:
                self.reads.lib.pl_set_period(self._runner, int(seconds * 1e9))

    def _new_runner(self, skip: set[int]) -> int:
        """A runner reading every GPU but those in ``skip``; raises OSError where its thread
        cannot start."""
        n = len(self.items)
        enabled = (ctypes.c_int32 * n)(*(0 if i in skip else 1 for i in range(n)))
        capacity = max(256, round(n * self.queue_seconds / self._interval))
        r = self.reads.lib.pl_start(
            self.reads.fn, self._devices, enabled, n, self.reads.field_id, int(self._interval * 1e9),
            capacity,
        )
        if not r:
            raise OSError("the native power reader could not start a thread")
        return int(r)

    def start(self) -> None:
        """Start the thread; raises OSError where it cannot (the caller reads from Python)."""
        with self._lock:
            self._runner, self._runner_dropped = self._new_runner(self._hung), 0

    def stop(self) -> None:
        self.stop_event.set()
        with self._lock:
            if self._runner is not None:
                self.reads.lib.pl_stop(self._runner)

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (a read hung on an abandoned one is not waited for), take
        what it left, and let go of every runner."""
        lib, end = self.reads.lib, time.monotonic() + timeout
        r = self._runner
        if r is None:
            return
        while not lib.pl_done(r) and time.monotonic() < end:
            time.sleep(0.01)
        with self._lock:
            self._taken.extend(self._take(r))
            self._runner = None
            lib.pl_release(r)
            for old, _ in self._abandoned:
                if lib.pl_done(old):
                    self._taken.extend(self._take(old))
                lib.pl_release(old)  # a hung one's thread frees it when its read returns
            self._abandoned.clear()

    def resize(self, queue_seconds: float) -> None:
        """Hold ``queue_seconds`` of reads from now on (the main loop's pass got longer or
        shorter): a runner with the new queue takes over. It starts before the old one stops, so
        every GPU is read without a gap: what the old one read is kept but for a read in flight
        when it stops, which the new one has made again by then. Raises OSError where the new
        runner's thread cannot start: the old one goes on, and ``queue_seconds`` is unchanged so
        that the next resize asks again."""
        with self._lock:
            r = self._runner
            if r is None or self.stop_event.is_set():
                self.queue_seconds = queue_seconds
                return
            before, self.queue_seconds = self.queue_seconds, queue_seconds
            try:
                new = self._new_runner(self._hung)
            except OSError:
                self.queue_seconds = before
                raise
            self._hand_over(new, -1)

    def _hand_over(self, new: int, pos: int) -> None:
        """Runner ``new`` takes over (caller holds the lock): the current one is stopped, what it
        read is kept, and it is released once its thread has ended (``pos``: the GPU of its hung
        read, read again then; -1 where it was replaced for another reason)."""
        r = self._runner
        assert r is not None
        self.reads.lib.pl_stop(r)
        self._taken.extend(self._take(r))
        self._count_dropped(r)  # before its count is left behind with it
        self._abandoned.append((r, pos))
        self._runner, self._runner_dropped = new, 0

    def _count_dropped(self, r: int) -> None:
        """Add what runner ``r`` dropped since the last count (caller holds the lock)."""
        self.reads.lib.pl_counts(r, ctypes.byref(self._reads), ctypes.byref(self._dropped))
        new = self._dropped.value - self._runner_dropped
        if new > 0:
            if self.dropped == 0:
                log.warning("event=power_reads_dropped loop=%s reason=%r", self.name,
                            "the main loop did not take the native reads in time")
            self.dropped += new
            self._runner_dropped = self._dropped.value

    def hung(self) -> frozenset[T]:
        with self._lock:
            return frozenset(self.items[i] for i in self._hung)

    def _take(self, r: int) -> list[Result]:
        out: list[Result] = []
        lib, buf, size, raw = self.reads.lib, self._out, len(self._out), self._bytes
        unpack, rs = RECORD_STRUCT.iter_unpack, RECORD_STRUCT.size
        while True:
            k = lib.pl_drain(r, buf, size)
            out += unpack(raw[: k * rs])  # taken before the next pl_drain overwrites the buffer
            if k < size:
                return out

    def drain(self) -> list[Result]:
        """Every result since the last drain, oldest first: (position, nvmlReturn, 1 if that is
        the whole call's, monotonic ns, wall ns, NVML timestamp us, value)."""
        with self._lock:
            self._reclaim()
            out, self._taken = self._taken, []
            replaced = bool(out)
            r = self._runner
            if r is not None:
                out.extend(self._take(r))
                self._count_dropped(r)
            if replaced:
                # a runner that took over read beside the one it replaced for a moment (or a hung
                # read returned late): one GPU's reads in the order they returned, as one runner
                # gives them (a stable sort: each runner's own are in order already)
                out.sort(key=_RETURNED)
            return out

    def _reclaim(self) -> None:
        """A GPU whose hung read has returned is read again (caller holds the lock)."""
        lib = self.reads.lib
        for entry in list(self._abandoned):
            old, pos = entry
            if lib.pl_done(old):
                self._abandoned.remove(entry)
                self._taken.extend(self._take(old))  # a read that was under way when it was given up
                lib.pl_release(old)
                if pos >= 0:
                    self._hung.discard(pos)
                    if self._runner is not None:
                        lib.pl_set_enabled(self._runner, pos, 1)

    def check(self, now: float | None = None) -> int | None:
        """Watchdog: give up a read running past the deadline; returns its position, else None.

        ``now`` is ignored: the native thread stamps its reads on the monotonic clock, which is
        read here too."""
        with self._lock:
            r = self._runner
            if r is None or self.stop_event.is_set():
                return None
            lib = self.reads.lib
            self._reclaim()
            pos = lib.pl_busy(r, ctypes.byref(self._since))
            if pos < 0 or time.monotonic() - self._since.value / 1e9 <= self.deadline:
                return None
            try:  # the others' reader first: where none can start, the hung one is kept
                new = self._new_runner(self._hung | {pos})
            except OSError as e:
                if not self._start_failed:
                    log.error("event=call_hung loop=%s item=%d action=kept_waiting error=%r",
                              self.name, pos, str(e))
                self._start_failed = True
                return None
            self._hand_over(new, pos)
            self._hung.add(pos)
            self.abandoned += 1
        log.warning(
            "event=call_hung loop=%s item=%d deadline_seconds=%.2f action=continued_on_new_thread",
            self.name, pos, self.deadline,
        )
        return pos
