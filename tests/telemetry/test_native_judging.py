"""The native reads judged in batches (PowerSampler.drain) exactly as the Python loop judges its
own reads one by one (read_once): the same distinct updates in the same order, the same counts,
rates, methods, failures and lost flags, on streams with repeated stamps, unchanged values,
stamps that go back, failed and lost reads and both switches of method; and the power service
keeps the same window from them."""

from __future__ import annotations

import ctypes
import logging
import random

import numpy as np
import pytest

from rasd.backends.errors import GpuLost
from rasd.backends.nvml.powerloop import RECORD_STRUCT, NativeLoop, NativeReads, Record
from rasd.model import PowerSample, PowerUpdates
from rasd.power.readings import Readings
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.telemetry.power import ALL_NEW_READS, PowerSampler
from tests.bench.judge_feed import FeedLibrary

LOST, UNKNOWN, QUIET = 15, 999, 3  # nvmlReturn codes as the handle below judges them
Read = tuple[int, int, int, int, int, int, float]  # as NativeLoop.drain gives them


def _judge(ret: int, of_call: int) -> None:
    """Error rules of a handle: lost raises GpuLost, an unknown code raises, another is ignored."""
    if ret == LOST:
        raise GpuLost(0, "lost")
    if ret == UNKNOWN:
        raise RuntimeError(f"nvml error {ret} (call {of_call})")


class Gpu:
    """A GPU for both paths: the native one asks ``instant_power_failed``; the Python one reads
    ``instant_power``, answered from the same reads in turn."""

    def __init__(self, index: int):
        self.index = index
        self.next: Read | None = None

    def instant_power(self) -> tuple[float, int] | None:
        assert self.next is not None
        _, ret, of_call, _, _, ts, value = self.next
        if ret:
            _judge(ret, of_call)
            return None
        return value / 1000.0, ts

    def instant_power_failed(self, ret: int, of_call: bool) -> None:
        _judge(ret, int(of_call))


def _stream(rng: random.Random, gpus: int, rounds: int) -> list[Read]:
    """Rounds of reads of every GPU, 80 ms apart. Each GPU's stamps change kind over time:
    refreshes every 100 ms (repeats by stamp), a stamp per call (every read new, values
    repeating: the switch to values), back to refreshes (the switch back), and now and then a
    stamp that goes back, a failed read or a lost GPU."""
    out: list[Read] = []
    watts = [250.0] * gpus
    for r in range(rounds):
        for g in range(gpus):
            # the even GPUs start stamped per call (a GPU that saw a stamp repeat never switches
            # to values again), and the kind changes every 60 rounds
            mode = "call" if (r // 60 + g) % 2 == 0 else "refresh"
            t_us = 5_000_000 + r * 80_000 + g * 37 + rng.randrange(0, 3_000)
            mono = t_us * 1000 + rng.randrange(0, 999)
            wall = mono + 1_700_000_000_000_000_000
            if mode == "refresh":
                stamp = t_us - t_us % 100_000
            else:
                stamp = t_us - 50
            if rng.random() < 0.03:
                stamp -= 400_000  # a stamp older than the last
            if rng.random() < 0.5:
                watts[g] = float(rng.randrange(100_000, 400_000, 250))
            ret, of_call = 0, 0
            x = rng.random()
            if x < 0.02:
                ret, of_call = LOST, rng.randrange(2)
            elif x < 0.03:
                ret = UNKNOWN
            elif x < 0.04:
                ret = QUIET
            out.append((g, ret, of_call, mono, wall, 0 if ret else stamp, 0.0 if ret else watts[g]))
    return out


def _records(reads: list[Read]) -> ctypes.Array[Record]:
    recs = (Record * len(reads))()
    for e, (g, ret, of_call, mono, wall, ts, value) in zip(recs, reads):
        e.gpu, e.ret, e.of_call, e.mono_ns, e.wall_ns, e.stamp_us, e.value = g, ret, of_call, mono, wall, ts, value
    return recs


STATE = ("reads", "distinct_total", "failures", "lost", "method", "last_ts", "last_watts", "fresh_run",
         "seen_repeat", "latest", "grid")
# The refresh prediction lets the Python loop skip reads that cannot be new; the native thread
# reads every GPU every round, so its judge keeps none.
PREDICTION = ("skip_until", "skip_rounds", "period", "_offset", "_spacings")


def _state(s: PowerSampler) -> list[dict[str, object]]:
    """Everything a GPU's judging keeps, its window of distinct updates included."""
    return [{**{k: getattr(g, k) for k in STATE}, "distinct": list(g.distinct)} for g in s._gpus]


def _native(reads: list[Read], indexes: list[int], passes: list[int], hz: float,
            states: list[list[dict[str, object]]] | None = None) -> tuple[PowerSampler, list[PowerUpdates]]:
    lib = FeedLibrary(_records(reads), 0)
    batches: list[PowerUpdates] = []
    s = PowerSampler([Gpu(i) for i in indexes], hz, batches.append,
                     native=NativeReads(lib, 0, tuple(range(1, len(indexes) + 1)), 186))  # type: ignore[arg-type]
    s.start()
    assert s.native
    for n in passes:  # the main loop's passes: a varying number of reads each
        lib.per_pass = n
        lib.next_pass()
        s.drain()
        if states is not None:
            states.append(_state(s))
    assert lib.pos == len(reads)
    return s, batches


def _python(reads: list[Read], indexes: list[int], passes: list[int], hz: float,
            states: list[list[dict[str, object]]]) -> tuple[PowerSampler, list[list[PowerSample]]]:
    now = [0.0, 0.0]
    batches: list[list[PowerSample]] = []
    s = PowerSampler([Gpu(i) for i in indexes], hz, lambda b: batches.append(list(b)),
                     clock=lambda: now[0], wall=lambda: now[1])
    k = 0
    for n in passes:
        for read in reads[k:k + n]:
            g = s._gpus[read[0]]
            g.handle.next = read
            now[0], now[1] = read[3] / 1e9, read[4] / 1e9
            g.read_once()
        k += n
        s._flush()
        states.append(_state(s))
    return s, batches



@pytest.mark.parametrize("seed", range(6))
def test_batches_judge_every_read_as_the_python_loop_does(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(seed)
    gpus = 3 + seed % 3
    # GPU positions are the indexes, or not (a node where some GPU is left out)
    indexes = list(range(gpus)) if seed % 2 else [2 * i + 1 for i in range(gpus)]
    reads = _stream(rng, gpus, 400)
    passes = []
    left = len(reads)
    while left:
        n = min(left, rng.choice([1, 7, 63, 64, 65, 200, 500]))  # across the 64-record buffer too
        passes.append(n)
        left -= n
    hz = 12.5
    with caplog.at_level(logging.INFO, logger="rasd.power.sampler"):
        nat, nat_batches = _native(reads, indexes, passes, hz, nat_states := [])
    switches = [r.getMessage() for r in caplog.records if "power_dedup_method" in r.getMessage()]
    assert any("method=value" in m for m in switches) and any("method=timestamp" in m for m in switches)
    py, py_batches = _python(reads, indexes, passes, hz, py_states := [])

    assert [list(b) for b in nat_batches] == [b for b in py_batches if b]
    assert sum(len(b) for b in py_batches) > 200  # enough distinct updates to mean something
    assert nat.stats() == py.stats()
    assert nat.methods() == py.methods() and nat.latest() == py.latest()
    for i, (a, b) in enumerate(zip(nat_states, py_states)):  # after every pass
        assert a == b, f"pass {i}"
    for a, b in zip(nat._gpus, py._gpus):
        now = reads[-1][3] / 1e9
        assert a.rate(now) == b.rate(now)
        assert [getattr(a, k) for k in PREDICTION] == [0.0, 0, None, None, []]
    assert any(g.period is not None for g in py._gpus)  # the Python loop did predict
    assert any(g.failures for g in nat._gpus) and any(g.reads > g.distinct_total for g in nat._gpus)

    # the power service keeps the same window from the columns as from the samples one by one
    settings = PowerSettings(window_seconds=10.0)
    by_columns, by_samples = (PowerService(settings, [Gpu(i) for i in indexes]) for _ in range(2))  # type: ignore[arg-type]
    for cb, sb in zip(nat_batches, (b for b in py_batches if b)):
        by_columns.add_samples(cb)
        by_samples.add_samples(sb)
    wa, wb = by_columns.window(), by_samples.window()
    assert wa.keys() == wb.keys() and wa
    for g in wa:
        np.testing.assert_array_equal(wa[g][0], wb[g][0])
        np.testing.assert_array_equal(wa[g][1], wb[g][1])


def test_the_records_are_unpacked_field_for_field() -> None:
    """RECORD_STRUCT reads ctypes' Record layout: every field, extreme values included."""
    assert RECORD_STRUCT.size == ctypes.sizeof(Record)
    reads: list[Read] = [
        (0, 0, 0, 1, 2, 3, 0.5),
        (71, -1, 1, 2**63 - 1, -(2**63), 2**62 + 5, -1e300),
        (2**31 - 1, 2**31 - 1, 0, 0, 0, 0, 1e-300),
    ] * 50  # more than the loop's buffer holds, so it takes them in several calls
    lib = FeedLibrary(_records(reads), len(reads))
    lib.next_pass()
    loop: NativeLoop[int] = NativeLoop("power", [0], NativeReads(lib, 0, (1,), 186), 0.08, 0.25)  # type: ignore[arg-type]
    loop.start()
    assert loop.drain() == reads
    assert loop.drain() == []


def test_updates_are_a_sequence_of_samples_in_read_order() -> None:
    u = PowerUpdates({3: ([1.0, 2.0], [10, 20], [100.0, 110.0]), 5: ([1.5], [15], [200.0])}, [3, 5, 3])
    want = [PowerSample(3, 1.0, 10, 100.0), PowerSample(5, 1.5, 15, 200.0), PowerSample(3, 2.0, 20, 110.0)]
    assert len(u) == 3 and list(u) == want and u[1] == want[1] and u[-1] == want[2] and u[:2] == want[:2]


def test_the_switch_to_values_waits_for_a_run_of_new_stamps() -> None:
    """Stamped per call from the start: trusted for ALL_NEW_READS reads, then values decide;
    judged in passes of one read, the state after each is the Python loop's."""
    reads: list[Read] = []
    for i in range(ALL_NEW_READS + 12):
        t = 1_000_000 + i * 80_000
        reads.append((0, 0, 0, t * 1000, t * 1000, t, 100_000.0 + 1000 * (i // 3)))
    passes = [1] * len(reads)
    nat, batches = _native(reads, [0], passes, 12.5, nat_states := [])
    _, py_batches = _python(reads, [0], passes, 12.5, py_states := [])
    assert nat_states == py_states and [list(b) for b in batches] == [b for b in py_batches if b]
    assert len([s for b in batches for s in b]) == ALL_NEW_READS + 4  # then every third read is new
    assert nat.methods()[0].value == "value"


@pytest.mark.parametrize("seed", range(20))
def test_readings_extend_is_append_one_by_one(seed: int) -> None:
    """In order and newer (one copy), or not (each in turn): the same readings either way,
    trimmed or emptied between batches."""
    rng = random.Random(seed)
    a, b = Readings(), Readings()
    t = 100.0
    for _ in range(40):
        batch_t, batch_w = [], []
        for _ in range(rng.randrange(0, 8)):
            t += rng.choice([0.1, 0.1, 0.1, 0.0, -0.3])  # repeats and readings that go back
            batch_t.append(round(t, 6))
            batch_w.append(float(rng.randrange(100, 400)))
        added = [a.append(x, w) for x, w in zip(batch_t, batch_w)]
        assert b.extend(batch_t, batch_w) == any(added)
        if rng.random() < 0.3:
            cutoff = t - rng.choice([0.5, 2.0, 100.0, -100.0])
            a.trim(cutoff)
            b.trim(cutoff)
        assert len(a) == len(b)
        for x, y in zip(a.arrays(), b.arrays()):
            np.testing.assert_array_equal(x, y)
