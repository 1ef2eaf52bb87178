"""The health poll's slow part (counters, NVLink) is read every slow interval, or on an Xid."""

from __future__ import annotations

from rasd.model import FaultKind
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller

ECC_AND_LINK_ERRORS = """
[[event]]
kind = "ecc"
at = 2
gpu = 0
type = "corrected"
count = 40

[[event]]
kind = "nvlink_errors"
at = 2
gpu = 0
link = 3
counter = "replay"
rate_per_second = 2.0
until = 12
"""


def _poll(p: GpuPoller, agg: Aggregator, clock, seconds: float = 1.0):
    clock.advance(seconds)
    p.poll_once()
    st, ev = agg.update(p.view(), 1000.0 + clock())
    return p.sample, st, ev


def test_counters_are_read_every_slow_interval_and_repeated_between(fake, clock):
    be = fake(ECC_AND_LINK_ERRORS, clock=clock)
    p = GpuPoller(be.adapter.gpus()[0], 1.0, 2.0, clock=clock, slow_interval=10.0)
    agg = Aggregator()
    first, _, _ = _poll(p, agg, clock, 0.0)  # t=0: the first poll reads everything
    assert first.slow_time_mono is not None and first.nvlinks
    samples, events = [], []
    for _ in range(9):  # t=1..9: the ECC burst and link errors start at t=2, unseen yet
        s, _, ev = _poll(p, agg, clock)
        samples.append(s)
        events += ev
    assert all(s.slow_time_mono == first.slow_time_mono for s in samples)
    assert all(s.nvlinks is first.nvlinks for s in samples)  # repeated, not re-read
    assert all(s.ecc_volatile_corrected == first.ecc_volatile_corrected for s in samples)
    assert len({s.time_mono for s in samples}) == 9  # the fast part is fresh every poll
    assert not [e for e in events if e.kind in (FaultKind.ECC, FaultKind.NVLINK)]
    s, st, ev = _poll(p, agg, clock)  # t=10: the slow part is due
    assert s.slow_time_mono != first.slow_time_mono
    assert s.ecc_volatile_corrected == first.ecc_volatile_corrected + 40
    kinds = {e.kind for e in ev}
    assert FaultKind.ECC in kinds and FaultKind.NVLINK in kinds
    link = next(e for e in ev if e.kind is FaultKind.NVLINK)
    # 8 s of 2 errors/s; the rate is over the time between the counter reads, not between polls
    assert link.details["replay_errors"] == 16
    between_reads = s.slow_time_mono - first.slow_time_mono
    assert link.details["rate_per_second"] == round(16 / between_reads, 3)
    assert between_reads > s.time_mono - samples[-1].time_mono
    assert st.counters["ecc_volatile_corrected"] == s.ecc_volatile_corrected


def test_an_xid_asks_for_the_counters_at_the_next_poll(fake, clock):
    be = fake(ECC_AND_LINK_ERRORS, clock=clock)
    p = GpuPoller(be.adapter.gpus()[0], 1.0, 2.0, clock=clock, slow_interval=30.0)
    agg = Aggregator()
    first, _, _ = _poll(p, agg, clock, 0.0)
    s, _, _ = _poll(p, agg, clock, 3.0)
    assert s.ecc_volatile_corrected == first.ecc_volatile_corrected
    p.want_slow()
    s, _, ev = _poll(p, agg, clock)
    assert s.ecc_volatile_corrected == first.ecc_volatile_corrected + 40
    assert FaultKind.ECC in {e.kind for e in ev}
    s2, _, _ = _poll(p, agg, clock)  # and then back to the interval
    assert s2.slow_time_mono == s.slow_time_mono


def test_zero_slow_interval_reads_everything_every_poll(fake, clock):
    be = fake(ECC_AND_LINK_ERRORS, clock=clock)
    p = GpuPoller(be.adapter.gpus()[0], 1.0, 2.0, clock=clock)
    agg = Aggregator()
    first, _, _ = _poll(p, agg, clock, 0.0)
    s, _, _ = _poll(p, agg, clock, 3.0)
    assert s.ecc_volatile_corrected == first.ecc_volatile_corrected + 40
    assert s.nvlinks is not first.nvlinks
