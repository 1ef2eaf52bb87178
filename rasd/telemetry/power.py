"""The power sampler: instant power (field 186) at 20 Hz by default, distinct updates only.

NVML refreshes instant power about every 100 ms on A100/H100 (and averages only the last 25 ms of
each period), so polling at 20 Hz sees each value about twice. A repeat is recognised by the
field's own timestamp and dropped; what remains is the true observation rate, exported as the
achieved distinct-update rate. One thread per GPU, for the same reason as the health pollers.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Sequence

from rasd.backends.errors import GpuLost
from rasd.backends.nvml import GpuHandle
from rasd.model import PowerSample

log = logging.getLogger("rasd.power.sampler")

RATE_WINDOW_SECONDS = 5.0


class _GpuSampler:
    def __init__(self, owner: "PowerSampler", handle: GpuHandle):
        self.owner = owner
        self.handle = handle
        self.last_ts: int | None = None
        self.latest: PowerSample | None = None
        self.distinct: collections.deque[float] = collections.deque()
        self.reads = 0
        self.distinct_total = 0
        self.failures = 0
        self.lost = False

    def run(self) -> None:
        o = self.owner
        period = 1.0 / o.hz
        next_at = o.clock()
        while not o.stop_event.is_set():
            self.read_once()
            next_at += period
            now = o.clock()
            if next_at < now:
                next_at = now + period
            o.stop_event.wait(max(0.0, next_at - now))

    def read_once(self) -> None:
        o = self.owner
        self.reads += 1
        try:
            got = self.handle.instant_power()
            self.lost = False
        except GpuLost:
            self.lost = True
            return
        except Exception as e:  # noqa: BLE001 - never let the sampler die
            self.failures += 1
            if self.failures == 1:
                log.warning("event=power_read_failed gpu=%d error=%r", self.handle.index, str(e))
            return
        if got is None:
            return
        watts, ts = got
        if ts == self.last_ts:
            return
        self.last_ts = ts
        now = o.clock()
        self.distinct.append(now)
        self.distinct_total += 1
        cutoff = now - RATE_WINDOW_SECONDS
        while self.distinct and self.distinct[0] < cutoff:
            self.distinct.popleft()
        s = PowerSample(gpu=self.handle.index, time_wall=o.wall(), nvml_timestamp_us=ts, watts=watts)
        self.latest = s
        o.sink((s,))

    def rate(self, now: float) -> float | None:
        """Distinct updates per second over the last few seconds: (n - 1) / span of the updates."""
        d = self.distinct
        cutoff = now - RATE_WINDOW_SECONDS
        recent = [t for t in d if t >= cutoff]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])


class PowerSampler:
    def __init__(
        self,
        gpus: Sequence[GpuHandle],
        hz: float,
        sink: Callable[[Sequence[PowerSample]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        if not 0 < hz <= 100:
            raise ValueError("power sample rate must be in (0, 100] Hz")
        self.hz = hz
        self.sink = sink
        self.clock = clock
        self.wall = wall
        self.stop_event = threading.Event()
        self.started = clock()
        self._gpus = [_GpuSampler(self, g) for g in gpus]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.started = self.clock()
        for s in self._gpus:
            t = threading.Thread(target=s.run, name=f"rasd-power-gpu{s.handle.index}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def round(self) -> None:
        """One read of every GPU on the calling thread (benchmarks and one-shot use)."""
        for s in self._gpus:
            s.read_once()

    def rates(self) -> dict[int, float]:
        """Achieved distinct-update rate per GPU over the last few seconds (Hz)."""
        now = self.clock()
        out = {}
        for s in self._gpus:
            r = s.rate(now)
            if r is not None:
                out[s.handle.index] = r
        return out

    def latest(self) -> dict[int, PowerSample]:
        return {s.handle.index: s.latest for s in self._gpus if s.latest is not None}

    def stats(self) -> dict[str, int]:
        return {
            "reads": sum(s.reads for s in self._gpus),
            "distinct": sum(s.distinct_total for s in self._gpus),
            "failures": sum(s.failures for s in self._gpus),
        }
