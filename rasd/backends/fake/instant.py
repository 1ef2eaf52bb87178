"""The fake node's instant-power field for rasd's native power reader (``_powerstep.c``, ``fk_*``).

On the C NVML library rasd reads instant power (field 186) on a native thread that calls
nvmlDeviceGetFieldValues 12.5 times a second a GPU and runs no Python between reads
(``rasd.backends.nvml.powerloop``). The fake node offers that thread a function of the same
signature, ``fk_field_values``, and one opaque device per GPU (a ``Board``): the power model
publishes its raw draws there as it computes them, up to a few seconds ahead (``GpuPowerSim``), with
the power limit in force from which step on, and the C function answers from them exactly as
``GpuPowerSim.instant`` would (the loader checks this on a test node before offering it).

Whatever the published state cannot answer goes to a fallback that reads through the fake NVML
in Python, with everything a Python read goes through: scripted call faults (a hang hangs the
native thread, which the power loop's watchdog gives up, as with a hung driver), lost GPUs, power
smoothing (delivered power then depends on its own past), an uninitialised library, a step not
published yet. A GPU with scripted events, any scripted call fault on the node, or smoothing on
the GPU sends every read of that GPU there.

Offered only where the node runs on ``time.monotonic`` (the native thread reads CLOCK_MONOTONIC,
the clock ``time.monotonic`` reads) and the fake's library was built (``stepper``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
import weakref
from array import array
from typing import TYPE_CHECKING, Any, Sequence

from rasd.backends.fake import stepper
from rasd.backends.nvml.powerloop import field_layout

if TYPE_CHECKING:
    from rasd.backends.fake.node import FakeNode
    from rasd.backends.fake.nvml import FakeNvml

log = logging.getLogger("rasd.fake")

RING_STEPS = 512  # 2.56 s of raw draws a GPU (the model publishes at most 2 s ahead of a read)
FAR_PAST = -(1 << 62)  # a step before any: where the first limit holds from
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_UNKNOWN = 999
# nvmlDeviceGetFieldValues(device, count, values)
READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)

_boards: "weakref.WeakValueDictionary[int, Board]" = weakref.WeakValueDictionary()


@READ
def _fallback(device: int | None, count: int, values: int | None) -> int:
    """The fallback of every board: the read through the fake NVML in Python (on the native
    thread, which takes the interpreter for it)."""
    board = _boards.get(device or 0)
    if board is None or not values:  # its node is gone
        return NVML_ERROR_UNINITIALIZED
    try:
        return board.read_python(count, values)
    except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
        board.failed(e)
        return NVML_ERROR_UNKNOWN


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    c, p, ll, d = ctypes, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_double
    lib.fk_size.argtypes, lib.fk_size.restype = [], c.c_size_t
    lib.fk_init.argtypes = [p, c.c_uint, c.c_int, d, d, p, c.c_int, READ]
    lib.fk_init.restype = None
    lib.fk_put.argtypes, lib.fk_put.restype = [p, ll, p, c.c_int], None
    lib.fk_limit.argtypes, lib.fk_limit.restype = [p, ll, d, c.c_int, c.c_int, ll, c.c_uint], None
    lib.fk_plain.argtypes, lib.fk_plain.restype = [p, c.c_int], None
    lib.fk_answered.argtypes, lib.fk_answered.restype = [p, ll, c.c_uint], None
    lib.fk_counts.argtypes, lib.fk_counts.restype = [p, c.POINTER(ll), c.POINTER(ll)], None
    lib.fk_value_at.argtypes = [p, d, c.POINTER(ll), c.POINTER(c.c_uint), c.POINTER(ll)]
    lib.fk_value_at.restype = c.c_int
    lib.fk_layout.argtypes, lib.fk_layout.restype = [c.POINTER(ll), c.c_int], c.c_int
    return lib


def _layout_differs(lib: ctypes.CDLL, field_struct: Any) -> str | None:
    got = (ctypes.c_longlong * 16)()
    n = lib.fk_layout(got, 16)
    want = field_layout(field_struct)
    return None if list(got[:n]) == want else f"built with layout {list(got[:n])}, the binding has {want}"


class Board:
    """One GPU's published instant-power state: an ``fk_gpu`` in memory this object owns, the
    device the native thread is handed for this GPU."""

    def __init__(self, lib: ctypes.CDLL, nvml: "FakeNvml", gpu: int, field_id: int, offset: int, t0: float,
                 wall0: float):
        self._lib = lib
        self._nvml = nvml
        self.gpu = gpu
        self.field_id = field_id
        self._mem = ctypes.create_string_buffer(lib.fk_size())
        self._ring = (ctypes.c_double * RING_STEPS)()
        self.address = ctypes.addressof(self._mem)
        lib.fk_init(self._mem, field_id, offset, t0, wall0, self._ring, RING_STEPS, _fallback)
        self._failures = 0
        self._device = nvml.device(gpu)  # as the Python sampler reads: the handle it opened with
        _boards[self.address] = self

    # ------------------------------------------------------------------ the model publishes

    def put(self, first: int, raws: array, n: int) -> None:
        """The raw draws of steps ``first`` .. ``first + n - 1``: the last ``n`` of ``raws``."""
        if n > 0:
            self._lib.fk_put(self._mem, first, raws.buffer_info()[0] + 8 * (len(raws) - n), n)

    def limit(self, from_step: int, watts: float, refresh_step: int, mw: int, forget: bool = False) -> None:
        """Raw draws are clipped at ``watts`` from ``from_step`` on, and the model's last refresh
        (``refresh_step``) answers ``mw``. ``forget``: steps before ``from_step`` are answered by
        the model alone from now on (their delivered power followed other rules)."""
        self._lib.fk_limit(self._mem, from_step, watts, int(forget), 1, refresh_step, mw & 0xFFFF_FFFF)

    def answered(self, refresh_step: int, mw: int) -> None:
        """The model answered refresh ``refresh_step`` with ``mw``: a native read of it gives the
        same (a refresh the published raws cannot answer is then read from Python once)."""
        self._lib.fk_answered(self._mem, refresh_step, mw & 0xFFFF_FFFF)

    def plain(self, on: bool) -> None:
        """Whether reads are answered from what is published (else all go to the fallback)."""
        self._lib.fk_plain(self._mem, int(on))

    # ------------------------------------------------------------------ reads

    def value_at(self, t: float) -> tuple[int, int, int] | None:
        """(refresh step, value mW, NVML stamp us) a native read at ``t`` seconds since start
        answers from what is published; None where the fallback would answer."""
        r, mw, stamp = ctypes.c_longlong(), ctypes.c_uint(), ctypes.c_longlong()
        if not self._lib.fk_value_at(self._mem, t, ctypes.byref(r), ctypes.byref(mw), ctypes.byref(stamp)):
            return None
        return r.value, mw.value, stamp.value

    def counts(self) -> tuple[int, int]:
        """(reads answered natively, reads that went to the fallback)."""
        native, fallback = ctypes.c_longlong(), ctypes.c_longlong()
        self._lib.fk_counts(self._mem, ctypes.byref(native), ctypes.byref(fallback))
        return native.value, fallback.value

    def read_python(self, count: int, values: int) -> int:
        """The fallback: the fields asked for in ``values`` read through the fake NVML, written
        back there; returns the call's nvmlReturn."""
        nvml = self._nvml
        struct = nvml.c_nvmlFieldValue_t
        entries = (struct * count).from_address(values)
        ids: list[Any] = [(e.fieldId, e.scopeId) if e.scopeId else e.fieldId for e in entries]
        try:
            got = nvml.nvmlDeviceGetFieldValues(self._device, ids)
        except nvml.NVMLError as e:
            return int(e.value)
        ctypes.memmove(values, ctypes.addressof(got), ctypes.sizeof(struct) * count)
        return 0

    def failed(self, e: BaseException) -> None:
        self._failures += 1
        if self._failures == 1:
            log.error("event=fake_native_read_failed gpu=%d error=%r", self.gpu, str(e))


def _disagrees(lib: ctypes.CDLL, base: Any) -> str | None:
    """None if a board answers as the Python model does on a test node, else what differs:
    reads across a second and a half, a limit below the draw set and lifted among them, the
    model stepped at uneven times in between (its raws published in uneven pieces)."""
    from rasd.backends.fake.clock import ManualClock
    from rasd.backends.fake.node import FakeNode
    from rasd.backends.fake.nvml import FakeNvml

    clocks = (ManualClock(), ManualClock())
    published, twin = (FakeNode(gpu_count=1, seed=3, clock=c, wall_clock=lambda: 1.7e9 + 0.123456) for c in clocks)
    nvml, twin_nvml = FakeNvml(published, base), FakeNvml(twin, base)
    twin_nvml.nvmlInit()
    twin_device = twin_nvml.device(0)
    sim = published.model(0)
    board = Board(lib, nvml, 0, 186, sim.refresh_offset, published.start, published.wall(0.0))
    sim.attach(board, True)
    t = 0.0
    for i in range(300):
        t += 0.0049 + (i % 7) * 0.0013
        for c in clocks:
            c.set(t)
        if i == 90:
            for node in (published, twin):
                node.set_power_limit(0, 250.0)
        elif i == 200:
            for node in (published, twin):
                node.set_power_limit(0, 700.0)
        if i % 11 == 0:
            published.sim(0)  # steps and publishes, as a health poll does
        got = board.value_at(published.elapsed())
        if got is None:
            published.instant_power(0)  # what the fallback does
            got = board.value_at(published.elapsed())
        entry = twin_nvml.nvmlDeviceGetFieldValues(twin_device, [186])[0]  # as the Python sampler reads it
        want = (entry.value.uiVal, entry.timestamp)
        if got is None or got[1:] != want:
            return f"read {i} at {t:.4f} s: C gives {got}, Python gives {want}"
    return None


@functools.cache
def _load(path: str, base: Any) -> ctypes.CDLL | None:
    try:
        lib = _typed(ctypes.CDLL(path))
        why = _layout_differs(lib, base.c_nvmlFieldValue_t) or _disagrees(lib, base)
    except (OSError, AttributeError) as e:  # a stale build: the reads stay in Python
        why = str(e)
    if why is None:
        return lib
    log.warning("event=fake_native_reads_unavailable path=%s error=%r", path, why)
    return None


def load(base: Any) -> ctypes.CDLL | None:
    """The fake's built library with its reader typed, or None (logged once) where it was not
    built, its layout differs from the binding's or it does not answer as the model does."""
    path = stepper.library_path()
    if path is None or not isinstance(stepper.active, stepper.NativeStepper):
        return None
    return _load(path, base)


def offer(nvml: "FakeNvml", node: "FakeNode", base: Any, gpus: Sequence[int], field_id: int,
          instant_id: int | None) -> tuple[int, list[int], list[Board]] | None:
    """(the address of ``fk_field_values``, each GPU's device address, the boards behind them:
    hold them while a reader may call) for rasd's native power reader to read ``field_id`` of
    ``gpus``, or None where the fake cannot offer it."""
    if field_id != instant_id or node.clock is not time.monotonic:
        return None
    lib = load(base)
    fn = ctypes.cast(lib.fk_field_values, ctypes.c_void_p).value if lib is not None else None
    if lib is None or not fn:
        return None
    boards = []
    with node.lock:
        for g in gpus:
            sim = node.model(g)
            board = sim.board
            if board is None:
                board = Board(lib, nvml, g, field_id, sim.refresh_offset, node.start, node.wall(0.0))
                sim.attach(board, nvml.native_eligible(g))
            boards.append(board)
    return fn, [b.address for b in boards], boards
