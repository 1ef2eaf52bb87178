"""The power sampler: instant power (field 186) at 12.5 Hz by default, distinct updates only.

NVML refreshes instant power about every 100 ms on A100/H100 (and averages only the last 25 ms of
each period). Polling faster than that puts a read into every refresh interval: 12.5 Hz reads at
most 80 ms after each refresh, which leaves 20 ms for a late wake-up (each round of reads costs a
thread wake-up with cold caches, several times a read's own cost, so the rate is kept low). A
repeat is recognised by the
field's own timestamp and dropped; what remains is the true observation rate, exported as the
achieved distinct-update rate.

Whether the timestamp marks NVML's refresh is not documented: NVIDIA's mock NVML stamps every
read with the time of the call. So each GPU starts by trusting the timestamp and falls back to
value changes when a run of reads brings new stamps closer together than NVML's fastest
documented refresh (a driver that refreshes every 100 ms cannot do that) and no stamp has ever
repeated; it returns to timestamps for good as soon as one repeats. The method in use is exported
per GPU.

Reads that can only repeat are skipped. With the timestamp trusted, each update tells when NVML
refreshed (its stamp) and how often (the spacing of the stamps); a GPU is not read again until
just before its next refresh is due, so a 10 Hz refresh costs about 10 reads a second instead of
12.5, and every update is still caught within one sampling period. NVML's stamp and rasd's clock are
tied together by the smallest delay seen between a refresh and its read, so neither clock's
offset nor a wall-clock step can make the sampler wait past a refresh.

One loop reads every GPU in turn (rasd.telemetry.loops): a read that hangs past ``HANG_SECONDS``
is abandoned at the next health round or main-loop pass, and the other GPUs carry on from a fresh
thread. On the C NVML library, where rasd was built with its native reader, that loop is a native
thread (rasd.backends.nvml.powerloop) that reads every GPU each round and queues each result (on
the fake node too, whose C reader answers from its power model: rasd.backends.fake.instant), and
the main loop judges them here once a pass (``drain``), in order, exactly as it judges its own
reads: each read then costs the library call alone instead of a wake-up of the interpreter and
the binding's wrappers. Reads that can only repeat are not skipped there (a native read costs
less than deciding to skip it).
"""

from __future__ import annotations

import bisect
import collections
import enum
import logging
import threading
import time
from typing import Callable, Sequence

from rasd.backends.errors import GpuLost
from rasd.backends.nvml import GpuHandle
from rasd.backends.nvml.powerloop import QUEUE_SECONDS, NativeLoop, NativeReads, Result
from rasd.model import PowerSample, PowerUpdates
from rasd.telemetry.loops import GpuLoop
from rasd.telemetry.refreshgrid import RefreshGrid

log = logging.getLogger("rasd.power.sampler")

RATE_WINDOW_SECONDS = 5.0
# NVML's fastest documented instant-power refresh (A100/H100: every 100 ms). Reading faster than
# this, a driver that stamps refreshes must show repeats; only then can "all new" be judged.
NVML_REFRESH_HZ = 10.0
ALL_NEW_READS = 20  # consecutive new stamps (1.6 s at 12.5 Hz) before falling back to value changes
HANG_SECONDS = 0.25  # a field read takes well under a millisecond; 3 periods at 12.5 Hz is a hang
REFRESH_GUARD = 0.1  # read again from this share of a refresh period before the refresh is due
OFFSET_DRIFT_SECONDS = 0.0005  # per update: the clock tie loosens slowly so it can follow drift
_QUIET_SHARE = 1.0 - REFRESH_GUARD


class DedupMethod(enum.Enum):
    """How a repeated instant-power reading is recognised."""

    TIMESTAMP = "timestamp"  # the field's NVML timestamp did not change
    VALUE = "value"  # every read is stamped new, so an unchanged value is the repeat


class _GpuSampler:
    """One GPU's de-duplication state; touched only by the loop's thread that reads it."""

    # slots: each judged read touches a dozen of these (900 reads a second at 72 GPUs)
    __slots__ = ("owner", "handle", "method", "fresh_run", "seen_repeat", "last_ts", "last_watts", "latest",
                 "new", "distinct", "reads", "distinct_total", "failures", "lost", "skip_until", "skip_rounds",
                 "skipped", "period", "_spacings", "_offset", "grid")

    def __init__(self, owner: "PowerSampler", handle: GpuHandle):
        self.owner = owner
        self.handle = handle
        self.method = DedupMethod.TIMESTAMP
        self.fresh_run = 0  # consecutive reads with a new stamp closer than a refresh period
        self.seen_repeat = False  # a stamp repeated once: stamps mark refreshes on this driver
        self.last_ts: int | None = None
        self.last_watts: float | None = None
        self.latest: PowerSample | None = None
        # this pass's distinct updates from the native loop: wall seconds, NVML stamps, watts
        self.new: tuple[list[float], list[int], list[float]] | None = None
        self.distinct: collections.deque[float] = collections.deque()
        self.reads = 0
        self.distinct_total = 0
        self.failures = 0
        self.lost = False
        # refresh prediction (timestamp method only), all in seconds
        self.skip_until = 0.0  # on the sampler's clock: no read before this can be new
        self.skip_rounds = 0  # and no more rounds than this: a clock that lags cannot stall reads
        self.skipped = 0
        self.period: float | None = None  # NVML's refresh period, from the spacing of the stamps
        self._spacings: list[float] = []
        self._offset: float | None = None  # smallest (read time - stamp) seen: ties the clocks
        # value method only: the refresh grid the updates are placed on (rasd.telemetry.refreshgrid)
        self.grid: RefreshGrid | None = None

    def due(self, now: float) -> bool:
        """Whether a read now can return a new value (else it is counted as skipped)."""
        if now >= self.skip_until or self.skip_rounds <= 0:
            return True
        self.skip_rounds -= 1
        self.skipped += 1
        return False

    def _predict(self, now: float, ts: int, prev_ts: int | None) -> None:
        """After a distinct update stamped ``ts`` (us) and read at ``now``: when is the next due?"""
        # runs for most reads (every distinct one stamped by refresh): no builtin calls on the way
        lag = now - ts / 1e6
        # the tie only loosens slowly (drift), and tightens at once to any smaller delay
        offset = self._offset
        if offset is None:
            offset = lag
        else:
            offset += OFFSET_DRIFT_SECONDS
            if lag < offset:
                offset = lag
        self._offset = offset
        p = self.period
        if prev_ts is not None:
            spacing = (ts - prev_ts) / 1e6
            if p is None:
                if 0 < spacing < 2.0:
                    self._spacings.append(spacing)
                if len(self._spacings) >= 3:  # the smallest of three: a missed refresh doubles one
                    p = self.period = min(self._spacings)
            elif 0 < spacing < p:
                p = self.period = spacing
            elif spacing < 1.5 * p:
                p = self.period = p + (spacing - p) * 0.1
        if p is None:
            return
        age = lag - offset  # how long ago this update was made, as far as can be told
        quiet = p * _QUIET_SHARE - age  # seconds from now in which no refresh can come
        self.skip_until = now + quiet
        rounds = int(quiet * self.owner.hz)
        self.skip_rounds = rounds if rounds > 0 else 0

    def read_once(self) -> PowerSample | None:
        """One read of field 186; a distinct update is queued for the round's hand-over to the
        sink, and returned."""
        self.reads += 1
        try:
            got = self.handle.instant_power()
            self.lost = False
        except GpuLost:
            self.lost = True
            return None
        except Exception as e:  # noqa: BLE001 - never let the sampler die
            self._failed(e)
            return None
        if got is None:
            return None
        o = self.owner
        return self._took(got[0], got[1], o.clock(), o.wall())

    def failed(self, ret: int, of_call: int) -> None:
        """A native read that answered ``ret`` (the whole call's where ``of_call``): the error
        rules, as ``read_once`` applies them to its own."""
        try:
            self.handle.instant_power_failed(ret, bool(of_call))
            self.lost = False
        except GpuLost:
            self.lost = True
        except Exception as e:  # noqa: BLE001 - never let the sampler die
            self._failed(e)

    def _failed(self, e: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("event=power_read_failed gpu=%d error=%r", self.handle.index, str(e))

    def _took(self, watts: float, ts: int, now: float, wall: float) -> PowerSample | None:
        """A read's (watts, NVML stamp), returned at ``now`` on the sampler's clock and ``wall``
        on the wall clock: queued if distinct."""
        prev_ts = self.last_ts
        by_value = self.method is DedupMethod.VALUE  # as the read found it (the judge may switch)
        if not self._is_new(watts, ts):
            if self.grid is not None:  # value method: the value did not change at this read
                self.grid.repeat()
            return None
        if self.method is DedupMethod.TIMESTAMP:
            self._predict(now, ts, prev_ts)
        else:
            self.skip_until = 0.0
            if by_value and self.grid is not None and prev_ts is not None:
                ts = self.grid.place(prev_ts, ts)  # stamped at the read: the refresh's time
        self.distinct.append(now)
        self.distinct_total += 1
        cutoff = now - RATE_WINDOW_SECONDS
        while self.distinct and self.distinct[0] < cutoff:
            self.distinct.popleft()
        s = PowerSample(self.handle.index, wall, ts, watts)
        self.latest = s
        self.owner._pending.append(s)
        return s

    def _is_new(self, watts: float, ts: int) -> bool:
        prev_ts = self.last_ts
        repeated_ts = ts == prev_ts
        same_value = watts == self.last_watts
        self.last_ts, self.last_watts = ts, watts
        if repeated_ts:
            self.fresh_run = 0
            self.seen_repeat = True
            if self.method is DedupMethod.VALUE:  # the stamp does mark refreshes after all
                self._switch(DedupMethod.TIMESTAMP)
            return False
        # a new stamp sooner than NVML's fastest refresh after the last one: stamped per call?
        sooner = prev_ts is None or 0 <= ts - prev_ts < 0.9e6 / NVML_REFRESH_HZ
        self.fresh_run = self.fresh_run + 1 if sooner else 0
        if self.method is DedupMethod.TIMESTAMP:
            if self.fresh_run >= ALL_NEW_READS and not self.seen_repeat and self.owner.hz > NVML_REFRESH_HZ:
                self._switch(DedupMethod.VALUE)
            return True
        return not same_value

    def _switch(self, method: DedupMethod) -> None:
        log.info(
            "event=power_dedup_method gpu=%d method=%s reason=%s", self.handle.index, method.value,
            "every read stamped new" if method is DedupMethod.VALUE else "timestamp repeated",
        )
        self.method = method
        self.grid = RefreshGrid() if method is DedupMethod.VALUE else None

    def rate(self, now: float) -> float | None:
        """Distinct updates per second over the last few seconds: (n - 1) / span of the updates."""
        d = tuple(self.distinct)  # one C-level copy: the sampler thread may append meanwhile
        # each append trims the window, so only a GPU whose updates slowed or stopped holds
        # older times: the first recent one is found by bisection (asked for every GPU every tick)
        start = bisect.bisect_left(d, now - RATE_WINDOW_SECONDS)
        n = len(d) - start
        if n < 2 or d[-1] <= d[start]:
            return None
        return (n - 1) / (d[-1] - d[start])


def native_queue_seconds(pass_seconds: float) -> float:
    """How many seconds of reads the native reader holds for a main loop that takes them every
    ``pass_seconds``: three passes, and never under QUEUE_SECONDS."""
    return max(QUEUE_SECONDS, 3 * pass_seconds)


class PowerSampler:
    """Reads every GPU's instant power ``hz`` times a second on one loop; hands the distinct
    updates of each round to ``sink`` in one call."""

    def __init__(
        self,
        gpus: Sequence[GpuHandle],
        hz: float,
        sink: Callable[[Sequence[PowerSample]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        hang_seconds: float = HANG_SECONDS,
        native: NativeReads | None = None,
        pass_seconds: float = 1.0,
    ):
        if not 0 < hz <= 100:
            raise ValueError("power sample rate must be in (0, 100] Hz")
        self.hz = hz
        self.sink = sink
        self._given_clock = clock
        self.wall = wall
        self.started = clock()
        self._gpus = [_GpuSampler(self, g) for g in gpus]
        self._by_position = all(g.index == pos for pos, g in enumerate(gpus))  # GPU i is item i
        # a deque: an abandoned thread may still append when its hung read returns
        self._pending: collections.deque[PowerSample] = collections.deque()
        self._hang_seconds = hang_seconds
        self.resize_failures = 0  # the native reader's queue could not be resized (retried each pass)
        self.loop: GpuLoop[_GpuSampler] | NativeLoop[_GpuSampler]
        self.clock: Callable[[], float]
        if native is not None:
            # the reads on a native thread; their results are judged here, a batch at a time
            # (drain, every pass of the daemon's main loop)
            self._use(NativeLoop("power", self._gpus, native, 1.0 / hz, hang_seconds,
                                 queue_seconds=native_queue_seconds(pass_seconds)))
        else:
            self._use(self._python_loop())

    def _use(self, loop: GpuLoop[_GpuSampler] | NativeLoop[_GpuSampler]) -> None:
        """Read with ``loop``. The native thread stamps its reads on the monotonic clock, so the
        sampler keeps time by that clock with it, and by the one it was given otherwise."""
        self.loop = loop
        self.clock = time.monotonic if isinstance(loop, NativeLoop) else self._given_clock

    @property
    def native(self) -> bool:
        """Whether the reads run on the native thread."""
        return isinstance(self.loop, NativeLoop)

    @property
    def stop_event(self) -> threading.Event:
        return self.loop.stop_event

    def _python_loop(self) -> GpuLoop[_GpuSampler]:
        # the loop calls the GPU's own methods: no layer of the sampler's between (12.5 rounds a
        # second, each a wake-up with cold caches, where every call costs)
        return GpuLoop(
            "power", self._gpus, _GpuSampler.read_once, 1.0 / self.hz, self._hang_seconds,
            after_round=self._flush, clock=self._given_clock, ready=_GpuSampler.due,
        )

    def pass_seconds(self, seconds: float) -> None:
        """The daemon's main loop now passes (and drains) every ``seconds``: the native reader
        keeps enough reads for that."""
        loop = self.loop
        if isinstance(loop, NativeLoop) and loop.queue_seconds != native_queue_seconds(seconds):
            try:
                loop.resize(native_queue_seconds(seconds))
            except OSError as e:  # the old queue stays, and the next pass asks again
                self.resize_failures += 1
                if self.resize_failures == 1:
                    log.error("event=power_queue_resize_failed error=%r (logged once, then counted)", str(e))

    def drain(self) -> None:
        """Judge the native loop's reads since the last drain and hand their distinct updates to
        the sink (the daemon's main loop calls this every pass; the Python loop hands its own over
        every round, so there is nothing to do)."""
        loop = self.loop
        if isinstance(loop, NativeLoop):
            results = loop.drain()
            self._flush()
            if results:
                updates = self._judge(results)
                if updates:
                    self.sink(updates)

    def _judge(self, results: list[Result]) -> PowerUpdates:
        """Each read of the native loop judged in order, as ``_GpuSampler.read_once`` judges its
        own but for the refresh prediction (``_took`` and ``_is_new``, written out in one loop: at 72 GPUs the main loop judges
        900 reads a second, and each call, attribute and object per read shows). The value is in
        mW; the times are when the read returned. Returns the distinct updates."""
        gpus = self._gpus
        timestamp, value_method = DedupMethod.TIMESTAMP, DedupMethod.VALUE
        sooner_us = 0.9e6 / NVML_REFRESH_HZ
        may_switch = self.hz > NVML_REFRESH_HZ
        order: list[int] = []
        touched: list[_GpuSampler] = []
        for pos, ret, of_call, mono_ns, wall_ns, ts, value in results:
            s = gpus[pos]
            s.reads += 1
            if ret:
                s.failed(ret, of_call)
                continue
            s.lost = False
            watts = value / 1000.0
            prev = s.last_ts
            if ts == prev:  # a repeated stamp: never new, and stamps do mark refreshes
                s.last_watts = watts
                s.fresh_run = 0
                s.seen_repeat = True
                if s.method is value_method:
                    s._switch(timestamp)
                continue
            same = watts == s.last_watts
            s.last_ts, s.last_watts = ts, watts
            run = s.fresh_run + 1 if prev is None or 0 <= ts - prev < sooner_us else 0
            s.fresh_run = run
            now = mono_ns / 1e9
            # No refresh prediction (_predict): the native thread reads every GPU every round,
            # so nothing would skip by it (the Python loop only takes over before the first read)
            if s.method is timestamp:
                if run >= ALL_NEW_READS and may_switch and not s.seen_repeat:
                    s._switch(value_method)
            elif same:
                if s.grid is not None:  # the value did not change at this read
                    s.grid.repeat()
                continue
            elif s.grid is not None and prev is not None:
                ts = s.grid.place(prev, ts)  # stamped at the read: the refresh's time
            d = s.distinct
            d.append(now)
            s.distinct_total += 1
            cutoff = now - RATE_WINDOW_SECONDS
            while d[0] < cutoff:  # never empties: ``now`` itself is within the window
                d.popleft()
            new = s.new
            if new is None:
                new = s.new = ([], [], [])
                touched.append(s)
            new[0].append(wall_ns / 1e9)
            new[1].append(ts)
            new[2].append(watts)
            order.append(pos)
        columns = {}
        for s in touched:
            new = s.new
            assert new is not None
            s.new = None
            i = s.handle.index
            columns[i] = new
            s.latest = PowerSample(i, new[0][-1], new[1][-1], new[2][-1])
        if not self._by_position:
            order = [gpus[pos].handle.index for pos in order]
        return PowerUpdates(columns, order)

    def _flush(self) -> None:
        p = self._pending
        if p:
            batch = []
            while p:
                batch.append(p.popleft())
            self.sink(batch)

    def start(self) -> None:
        self.started = self.clock()
        try:
            self.loop.start()
        except OSError as e:  # the native reader's thread cannot start: read from Python
            log.error("event=native_sampler_unavailable error=%r action=python_reads", str(e))
            self._use(self._python_loop())
            self.loop.start()

    def stop(self) -> None:
        self.loop.stop()

    def join(self, timeout: float) -> None:
        self.loop.join(timeout)

    def round(self) -> None:
        """One read of every GPU on the calling thread (benchmarks and one-shot use)."""
        now = self.clock()
        for s in self._gpus:
            if s.due(now):
                s.read_once()
        self._flush()

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

    def methods(self) -> dict[int, DedupMethod]:
        """How each GPU's repeats are recognised right now."""
        return {s.handle.index: s.method for s in self._gpus}

    def hung(self) -> frozenset[int]:
        """GPUs whose instant-power read is hung right now."""
        return frozenset(s.handle.index for s in self.loop.hung())

    def stats(self) -> dict[str, int]:
        return {
            "reads": sum(s.reads for s in self._gpus),
            "distinct": sum(s.distinct_total for s in self._gpus),
            "failures": sum(s.failures for s in self._gpus),
            "skipped": sum(s.skipped for s in self._gpus),
        }
