"""The aggregator on plain data: poll views in, GPU states and fault events out (no NVML, no threads)."""

from __future__ import annotations

from dataclasses import replace

from rasd.model import FaultKind, GpuIdentity, GpuSample, Health, XidEvent
from rasd.telemetry.aggregate import Aggregator, PollView
from tests.telemetry.test_units import _sample

IDENT = GpuIdentity(0, "GPU-0", "NVIDIA H100", None, "00000000:3B:00.0", None, 4)


def view(sample: GpuSample | None, seq: int, *, lost: str | None = None, stalled: bool = False) -> PollView:
    return PollView(0, IDENT, sample, seq, lost, stalled, sample.time_wall if sample else None, 0, {},
                    frozenset())


def test_a_lost_gpu_is_one_fault_until_it_comes_back():
    agg = Aggregator()
    st, ev = agg.update(view(None, 0, lost="GPU is lost"), 100.0)
    assert st.health is Health.LOST and [e.kind for e in ev] == [FaultKind.GPU_LOST]
    assert ev[0].details["reason"] == "GPU is lost"
    st, ev = agg.update(view(None, 0, lost="GPU is lost"), 101.0)
    assert st.health is Health.LOST and ev == []  # still lost: not a new fault
    st, ev = agg.update(view(_sample(), 1), 102.0)
    assert st.health is Health.UP
    _, ev = agg.update(view(_sample(), 1, lost="GPU is lost"), 103.0)
    assert [e.kind for e in ev] == [FaultKind.GPU_LOST]  # lost again: a new fault


def test_stale_when_the_poll_overruns_or_never_answered():
    agg = Aggregator()
    assert agg.update(view(None, 0), 100.0)[0].health is Health.STALE
    assert agg.update(view(_sample(), 1, stalled=True), 101.0)[0].health is Health.STALE
    assert agg.update(view(_sample(), 1), 102.0)[0].health is Health.UP


def test_a_sample_is_judged_once_however_often_it_is_read():
    agg = Aggregator()
    agg.update(view(_sample(), 1), 100.0)
    grown = _sample(time_mono=11.0, ecc_volatile_uncorrected=2)
    _, first = agg.update(view(grown, 2), 101.0)
    st, again = agg.update(view(grown, 2), 102.0)  # the poller has not polled since
    assert [e.kind for e in first] == [FaultKind.ECC] and again == []
    assert st.counters["ecc_volatile_uncorrected"] == 2


def test_counters_stay_monotonic_across_a_driver_reset():
    agg = Aggregator()
    agg.update(view(_sample(pcie_replays=5), 1), 100.0)
    st, _ = agg.update(view(_sample(time_mono=11.0, pcie_replays=2), 2), 101.0)  # the counter restarted at 0
    assert st.counters["pcie_replays"] == 7 and st.counter_resets == 1


def test_a_repeated_slow_part_moves_only_the_fast_counters():
    agg = Aggregator()
    agg.update(view(_sample(slow_time_mono=10.0, energy_joules=1.0), 1), 100.0)
    # the poller repeated the slow part: a changed ECC value there is the old reading, not growth
    repeat = _sample(time_mono=11.0, slow_time_mono=10.0, energy_joules=5.0, ecc_volatile_uncorrected=3)
    st, ev = agg.update(view(repeat, 2), 101.0)
    assert st.counters["energy_joules"] == 5.0 and st.counters["ecc_volatile_uncorrected"] == 0
    assert ev == []


def test_xids_are_counted_kept_recent_and_raised():
    agg = Aggregator(recent_xids=2)
    xs = [XidEvent(100.0 + i, 0, 13 if i else 79, "msg" if i else None) for i in range(3)]
    events = agg.add_xids(xs)
    assert [e.details["xid"] for e in events] == [79, 13, 13]
    assert "message" not in events[0].details and events[1].details["message"] == "msg"
    st, _ = agg.update(view(_sample(), 1), 103.0)
    assert dict(st.xid_counts) == {79: 1, 13: 2}
    assert st.recent_xids == tuple(xs[1:])  # bounded: the oldest is dropped


def test_power_readings_pass_through():
    st, _ = Aggregator().update(view(_sample(), 1), 100.0, (512.5, 9.8, "timestamp"))
    assert (st.power_watts, st.power_sample_rate_hz, st.power_dedup) == (512.5, 9.8, "timestamp")
    st, _ = Aggregator().update(view(replace(_sample(), power_instant_watts=None), 1), 100.0)
    assert st.power_watts is None and st.power_sample_rate_hz is None


def test_each_state_shows_the_counters_errors_and_xids_of_its_own_moment():
    """The read-only maps a state carries are shared between states while nothing changed, and a
    change shows in the next state without touching the ones handed out before."""
    agg = Aggregator()
    s1 = _sample(energy_joules=10.0)
    st1, _ = agg.update(view(s1, 1), 100.0)
    st_same, _ = agg.update(view(s1, 1), 101.0)  # nothing new: the same maps
    assert st_same.counters is st1.counters and st_same.errors is st1.errors
    s2 = replace(_sample(energy_joules=25.0, time_wall=102.0), slow_time_mono=s1.slow_time_mono)
    errors = {("power", "unknown"): 2}
    st2, _ = agg.update(replace(view(s2, 2), errors=errors), 102.0)
    errors[("power", "unknown")] = 9  # the poller's copy moves on; the state keeps what it saw
    agg.add_xids([XidEvent(102.5, 0, 79, "fell off the bus")])
    st3, _ = agg.update(replace(view(s2, 2), errors=dict(errors)), 103.0)
    assert st1.counters["energy_joules"] == 10.0 and dict(st1.errors) == {} and dict(st1.xid_counts) == {}
    assert st2.counters["energy_joules"] == 25.0 and dict(st2.errors) == {("power", "unknown"): 2}
    assert dict(st2.xid_counts) == {} and st2.recent_xids == ()
    assert dict(st3.errors) == {("power", "unknown"): 9} and dict(st3.xid_counts) == {79: 1}
    assert [x.xid for x in st3.recent_xids] == [79] and st3.counters is st2.counters
