"""The power sampler: distinct updates by timestamp or by value, rates, hang isolation."""

from __future__ import annotations

import threading

import pytest

from rasd.backends.errors import GpuLost
from rasd.telemetry.loops import GpuLoop, Watchdog
from rasd.telemetry.power import ALL_NEW_READS, DedupMethod, PowerSampler
from tests.e2e.helpers import wait_for
from tests.sinks import CountingSink, gpu2_hung


class ScriptedGpu:
    """A GPU whose field 186 answers from a script of (watts, NVML timestamp) pairs.

    Stands for drivers rasd has no copy of: one that stamps every read with the call time (as
    NVIDIA's mock NVML does), or one that is lost."""

    def __init__(self, index: int, script: list[tuple[float, int] | Exception]):
        self.index = index
        self.script = list(script)

    def instant_power(self) -> tuple[float, int] | None:
        got = self.script.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


def _sampler(gpus, hz=20.0, clock=None):
    got = []
    kw = {"clock": clock} if clock is not None else {}
    s = PowerSampler(gpus, hz, got.extend, **kw)
    return s, got


def test_fake_refresh_stamps_give_every_update_once(fake, clock):
    """The fake refreshes field 186 every 100 ms; at 20 Hz half the reads are repeats."""
    be = fake(gpus=4, clock=clock)
    s, got = _sampler(be.adapter.gpus(), clock=clock)
    for _ in range(200):  # 10 s at 20 Hz
        s.round()
        clock.advance(0.05)
        # reading once per refresh makes every read new: that must not pass for call-time stamps
        assert set(s.methods().values()) == {DedupMethod.TIMESTAMP}
    per_gpu = [sum(1 for x in got if x.gpu == g) for g in range(4)]
    assert all(99 <= n <= 101 for n in per_gpu), per_gpu  # 10 s of a 10 Hz refresh
    stamps = [x.nvml_timestamp_us for x in got if x.gpu == 0]
    assert len(stamps) == len(set(stamps)), "a repeat was passed on"
    # reads that could only repeat were skipped: about one read per refresh, not two
    st = s.stats()
    assert st["reads"] + st["skipped"] == 800 and st["reads"] <= 480, st
    assert all(9.5 <= r <= 10.5 for r in s.rates().values()), s.rates()


def test_prediction_never_waits_past_a_refresh(fake, clock):
    """Rounds late and irregular (a busy machine): still every update, never a read skipped
    that would have been new."""
    import random

    rng = random.Random(7)
    be = fake(gpus=8, clock=clock)
    s, got = _sampler(be.adapter.gpus(), clock=clock)
    start = clock()
    while clock() - start < 20.0:
        s.round()
        clock.advance(rng.uniform(0.03, 0.06))
    per_gpu = [sum(1 for x in got if x.gpu == g) for g in range(8)]
    assert all(n >= 199 for n in per_gpu), per_gpu  # 20 s of a 10 Hz refresh


def test_a_sampler_clock_that_lags_the_stamps_still_reads_every_update(fake, clock):
    """NVML's stamps run on the node's clock, the sampler's schedule on its own: rounds that come
    faster than the sampler's clock says (here it does not move at all) still read each update."""
    be = fake(gpus=2, clock=clock)
    s, got = PowerSampler(be.adapter.gpus(), 20.0, [].extend, clock=lambda: 5.0), []
    s.sink = got.extend
    for _ in range(100):  # 5 s of the node's time
        s.round()
        clock.advance(0.05)
    assert all(n in (50, 51) for n in (sum(1 for x in got if x.gpu == g) for g in range(2)))  # 10 Hz
    assert s.stats()["skipped"] > 0


def test_every_read_stamped_new_falls_back_to_value_changes(clock):
    """NVIDIA's mock stamps each read with the call time: repeats are then unchanged values."""
    script = []
    for i in range(ALL_NEW_READS + 40):  # the value changes every other read, the stamp every read
        script.append((100.0 + i // 2, 1_000_000 + i * 50_000))
    gpu = ScriptedGpu(0, script)
    s, got = _sampler([gpu], clock=clock)
    for _ in range(ALL_NEW_READS):
        s.round()
        clock.advance(0.05)
    assert s.methods() == {0: DedupMethod.VALUE}
    before = len(got)
    assert before == ALL_NEW_READS  # trusted the stamps until the run of "new" proved them wrong
    for _ in range(40):
        s.round()
        clock.advance(0.05)
    assert len(got) - before == 20  # 40 reads, 20 value changes
    assert [x.watts for x in got[before:]] == [100.0 + ALL_NEW_READS // 2 + k for k in range(20)]


def test_a_repeated_stamp_returns_to_timestamps(clock):
    t0 = 1_000_000
    script = [(float(i), t0 + i * 50_000) for i in range(ALL_NEW_READS)]
    t1 = t0 + ALL_NEW_READS * 50_000
    script += [(50.0, t1), (50.0, t1), (51.0, t1), (52.0, t1 + 100_000)]

    def read() -> None:
        s.round()
        clock.advance(0.05)

    s, got = _sampler([ScriptedGpu(0, script)], clock=clock)
    for _ in range(ALL_NEW_READS + 1):
        read()
    assert s.methods() == {0: DedupMethod.VALUE}
    read()  # same stamp again: the driver does mark refreshes
    assert s.methods() == {0: DedupMethod.TIMESTAMP}
    read()  # same stamp, new value: a repeat by timestamp
    read()
    assert [x.watts for x in got[-2:]] == [50.0, 52.0]


def test_reading_no_faster_than_nvml_refreshes_keeps_timestamps(clock):
    """At 10 Hz or slower every read is new on a real driver too: no fallback there."""
    script = [(100.0, 1_000_000 + i * 100_000) for i in range(ALL_NEW_READS * 2)]
    s, got = _sampler([ScriptedGpu(0, script)], hz=10.0, clock=clock)
    for _ in range(ALL_NEW_READS * 2):
        s.round()
        clock.advance(0.1)
    assert s.methods() == {0: DedupMethod.TIMESTAMP}
    assert len(got) == ALL_NEW_READS * 2


def test_lost_and_failing_reads_are_counted_not_raised(clock):
    s, got = _sampler(
        [ScriptedGpu(0, [GpuLost(0, "gone"), (10.0, 1)]), ScriptedGpu(1, [RuntimeError("x"), (20.0, 1)])],
        clock=clock,
    )
    s.round()
    assert got == [] and s.stats()["failures"] == 1
    s.round()
    assert [x.watts for x in got] == [10.0, 20.0]


def test_a_hung_read_stalls_neither_the_other_gpus_nor_the_sampler(fake):
    be, release = gpu2_hung(fake)
    sink = CountingSink()

    def others() -> dict[int, int]:
        return {g: n for g, n in sink.counts().items() if g != 2}

    s = PowerSampler(be.adapter.gpus(), 20.0, sink, hang_seconds=0.2)
    health = GpuLoop("health", [], lambda i: None, interval=0.1, deadline=2.0)  # as the daemon's
    Watchdog([s.loop, health]).attach()
    threads_before = threading.active_count()
    s.start()
    health.start()
    try:
        # the other seven keep being read while GPU 2's call hangs
        wait_for(lambda: s.hung() == frozenset({2}) and len(others()) == 7
                 and min(others().values()) >= 5, timeout=30)
        # the power loop's thread and the health loop's, plus the abandoned thread stuck in GPU 2's call
        assert threading.active_count() - threads_before == 3
        assert 2 not in sink.counts()
        release.set()  # the hung call returns: GPU 2 rejoins, the abandoned thread leaves
        wait_for(lambda: s.hung() == frozenset() and sink.counts().get(2, 0) >= 3
                 and threading.active_count() - threads_before == 2, timeout=30)
        assert s.loop.abandoned == 1
    finally:
        release.set()
        s.stop()
        health.stop()
        s.join(2)
        health.join(2)


@pytest.mark.parametrize("hz", [0, 101])
def test_rate_out_of_range_is_refused(hz):
    with pytest.raises(ValueError, match="power sample rate"):
        PowerSampler([], hz, lambda b: None)


def _twins(clock, gpus: int) -> list:
    """Two fake nodes of the same seed on one clock: the first stamps every read with the call's
    time (as NVIDIA's mock and an H200 on driver 580 do), the second stamps refreshes (the truth)."""
    import pynvml

    from rasd.backends.fake import FakeNode, FakeNvml
    from rasd.backends.nvml import NvmlAdapter

    adapters = []
    for every_read in (True, False):
        a = NvmlAdapter(FakeNvml(FakeNode(gpu_count=gpus, clock=clock, stamp_every_read=every_read), pynvml))
        a.open()
        adapters.append(a)
    return adapters


def test_call_time_stamps_on_the_fake_still_give_each_update_once(clock):
    """The fake stamping every read with the call's time (as NVIDIA's mock does): after the
    fallback, every refresh that changed the value is captured once. A twin node that stamps
    refreshes (same seed, same clock) gives the truth; a refresh that repeats the value exactly
    (a GPU held at its power limit) cannot be told from a repeat, and carries nothing new."""
    mock_like, twin = adapters = _twins(clock, 4)
    try:
        s, got = _sampler(mock_like.gpus(), clock=clock)
        for _ in range(ALL_NEW_READS):  # 1 s: every read looks new until the fallback
            s.round()
            clock.advance(0.05)
        assert set(s.methods().values()) == {DedupMethod.VALUE}
        before = len(got)
        last = {g.index: g.instant_power() for g in twin.gpus()}
        truth = dict.fromkeys(last, 0)
        for _ in range(200):  # 10 s
            s.round()
            for g in twin.gpus():
                w, ts = g.instant_power()
                if ts != last[g.index][1] and w != last[g.index][0]:
                    truth[g.index] += 1
                last[g.index] = (w, ts)
            clock.advance(0.05)
        per_gpu = {g: sum(1 for x in got[before:] if x.gpu == g) for g in truth}
        assert per_gpu == truth, (per_gpu, truth)
        assert min(truth.values()) > 20
    finally:
        for a in adapters:
            a.close()


def test_rate_counts_only_the_updates_of_the_last_window(clock):
    """Updates once a second until t = 10: the rate over the last 5 s while they last, then
    over what is left of the window, then none once the window holds fewer than two."""
    s, _ = _sampler([ScriptedGpu(0, [(100.0 + i, 1_000_000 * (i + 1)) for i in range(11)])], clock=clock)
    t0 = clock()
    for _ in range(11):
        s.round()
        clock.advance(1.0)
    g = s._gpus[0]
    assert len(g.distinct) == 6  # trimmed to the window as they came
    assert g.rate(t0 + 10.0) == pytest.approx(1.0)
    assert g.rate(t0 + 13.5) == pytest.approx(1.0)  # 9 and 10 are left: one interval of 1 s
    assert g.rate(t0 + 14.5) is None  # only 10 is left
    assert s.rates() == {0: pytest.approx(1.0)}  # now is t0 + 11: the window holds 6..10
    clock.advance(4.0)
    assert s.rates() == {}


def test_call_time_stamps_are_placed_on_the_refresh_they_came_from(clock):
    """Stamped at the read (an H200 on driver 580, NVIDIA's mock), an update is first seen 0 to
    80 ms after its refresh at 12.5 Hz: once the refresh grid is pinned down, each update carries a
    time on it, so the updates are as far apart as the refreshes were (the twin node, stamping
    refreshes, gives the truth), where the read times are up to 60 ms off."""
    mock_like, twin = adapters = _twins(clock, 2)
    try:
        s, got = _sampler(mock_like.gpus(), hz=12.5, clock=clock)
        pairs: dict[int, list[tuple[int, int, int]]] = {0: [], 1: []}  # (placed, refresh, read) us
        for _ in range(400):  # 32 s at 12.5 Hz
            before = len(got)
            s.round()
            truth = {g.index: g.instant_power() for g in twin.gpus()}
            read = {g.index: g.instant_power()[1] for g in mock_like.gpus()}  # the read's own stamp
            for x in got[before:]:
                w, refresh = truth[x.gpu]
                assert w == x.watts  # the same node: the same value
                pairs[x.gpu].append((x.nvml_timestamp_us, refresh, read[x.gpu]))
            clock.advance(0.08)
        assert set(s.methods().values()) == {DedupMethod.VALUE}
        for g, rows in pairs.items():
            late = rows[len(rows) // 3:]  # once the grid is pinned down
            assert len(late) > 80
            off = [placed - refresh for placed, refresh, _ in late]
            # one offset for every update (within the arc's width): the spacing is the refresh's
            assert max(off) - min(off) <= 1_000, (g, min(off), max(off))
            assert max(abs(o) for o in off) <= 30_000
            lag = [r - refresh for _, refresh, r in late]  # what the read's stamp would have said
            assert max(lag) - min(lag) >= 40_000
    finally:
        for a in adapters:
            a.close()
