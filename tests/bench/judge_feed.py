"""A stream of native power reads, shaped as the native reader queues them, fed through the real
sampler without a thread or a library: what it costs the main loop to judge them.

``FeedLibrary`` stands for the loaded ``_powerloop`` library: ``pl_drain`` copies the next
prepared records (``Record``, the reader's own layout) into the loop's buffer, as the native
queue does, so ``NativeLoop``'s taking, the sampler's judging and the power service's storing all
run as in the daemon. Used by ``bench_native_power.py --judge``.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, Callable

from rasd.backends.nvml.powerloop import NativeReads, Record
from rasd.model import PowerSample
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.telemetry.power import PowerSampler

HZ = 12.5  # the sampler's default rate
REFRESH_US = 100_000  # NVML's instant-power refresh on A100/H100


def stream(gpus: int, seconds: float, hz: float = HZ, start_s: float = 1000.0) -> ctypes.Array[Record]:
    """Every GPU read ``hz`` times a second for ``seconds``; NVML refreshes every 100 ms with its
    own stamp (each GPU at its own phase), so about 4 reads in 5 are distinct updates."""
    rounds = int(seconds * hz)
    out = (Record * (rounds * gpus))()
    k = 0
    for r in range(rounds):
        t = start_s + r / hz
        for g in range(gpus):
            e = out[k]
            phase = g * 7_919 % REFRESH_US
            now_us = int(t * 1e6) + g * 40  # the reads of a round follow each other
            stamp = now_us - (now_us - phase) % REFRESH_US
            e.gpu, e.ret, e.of_call = g, 0, 0
            e.mono_ns, e.wall_ns = now_us * 1000, (now_us + 1_700_000_000_000_000) * 1000
            e.stamp_us = stamp
            e.value = 250_000.0 + 1_000.0 * ((stamp // REFRESH_US + g) % 97)
            k += 1
    return out


class FeedLibrary:
    """The native library's face, fed from ``records``: each ``next_pass`` releases ``per_pass``
    more of them to ``pl_drain``."""

    def __init__(self, records: ctypes.Array[Record], per_pass: int):
        self.records = records
        self.per_pass = per_pass
        self.pos = 0  # next record to hand out
        self.end = 0  # released so far

    def next_pass(self) -> bool:
        if self.end >= len(self.records):
            return False
        self.end = min(len(self.records), self.end + self.per_pass)
        return True

    def pl_drain(self, runner: Any, buf: Any, size: int) -> int:
        k = min(size, self.end - self.pos)
        if k > 0:
            rs = ctypes.sizeof(Record)
            ctypes.memmove(buf, ctypes.addressof(self.records) + self.pos * rs, k * rs)
            self.pos += k
        return k

    def pl_start(self, *args: Any) -> int:
        return 1

    def pl_counts(self, runner: Any, reads: Any, dropped: Any) -> None:
        pass  # nothing is dropped: the feed holds everything

    def pl_busy(self, runner: Any, since: Any) -> int:
        return -1

    def pl_done(self, runner: Any) -> int:
        return 1

    def pl_stop(self, runner: Any) -> None:
        pass

    def pl_release(self, runner: Any) -> None:
        pass

    def pl_set_period(self, runner: Any, ns: int) -> None:
        pass

    def pl_set_enabled(self, runner: Any, gpu: int, on: int) -> None:
        pass


class Gpu:
    """What the sampler and the power service need of a GPU here: its index (reads never fail)."""

    def __init__(self, index: int):
        self.index = index

    def instant_power_failed(self, ret: int, of_call: bool) -> None:
        raise AssertionError("the feed has no failed reads")


STAGES = ("take", "judge", "store")


def run(gpus: int, seconds: float, stage: str, records: ctypes.Array[Record] | None = None) -> tuple[float, int]:
    """CPU seconds (this thread) to take ``seconds`` of ``gpus``' reads, one second a pass, up to
    ``stage``: "take" (out of the native queue), "judge" (and judged by the sampler) or "store"
    (and added to the power service's window). Returns (CPU seconds, reads)."""
    recs = records if records is not None else stream(gpus, seconds)
    lib = FeedLibrary(recs, round(gpus * HZ))
    handles = [Gpu(g) for g in range(gpus)]
    sink: Callable[[Any], None]
    if stage == "store":
        svc = PowerService(PowerSettings(), handles)  # type: ignore[arg-type]
        sink = svc.add_samples
    else:
        sink = _discard
    sampler = PowerSampler(handles, HZ, sink, native=NativeReads(lib, 0, tuple(range(1, gpus + 1)), 186))  # type: ignore[arg-type]
    sampler.start()
    loop = sampler.loop
    step = loop.drain if stage == "take" else sampler.drain
    c0 = time.thread_time()
    while lib.next_pass():
        step()
    cpu = time.thread_time() - c0
    assert lib.pos == len(recs), "not every record was taken"
    return cpu, len(recs)


def _discard(batch: list[PowerSample]) -> None:
    pass


def fake_run(gpus: int, seconds: float) -> tuple[float, int, int] | None:
    """The same on real native reads: the fake node's power model read by the native reader
    (its C function in place of nvmlDeviceGetFieldValues), drained once a second as the daemon's
    main loop drains it, into the power service. Returns (CPU seconds of the drains on this
    thread, reads, distinct updates), or None where this code's fake offers no native reads."""
    from rasd.backends import open_backend

    be = open_backend("fake", gpus=gpus)
    try:
        handles = be.adapter.gpus()
        native = be.adapter.native_power(handles)
        if native is None:
            return None
        svc = PowerService(PowerSettings(), handles)  # type: ignore[arg-type]
        sampler = PowerSampler(handles, HZ, svc.add_samples, native=native)
        sampler.start()
        try:
            time.sleep(1.0)
            sampler.drain()
            before = sampler.stats()
            cpu = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(1.0)
                c0 = time.thread_time()
                sampler.drain()
                cpu += time.thread_time() - c0
            after = sampler.stats()
        finally:
            sampler.stop()
            sampler.join(1.0)
        return cpu, after["reads"] - before["reads"], after["distinct"] - before["distinct"]
    finally:
        be.close()
