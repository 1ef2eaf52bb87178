"""A reading whose call was chosen at an earlier poll is read under the same error rules as the
first time: an error that starts after the first polls is judged exactly as one from the start."""

from __future__ import annotations

import pytest

from rasd.backends.errors import GpuLost
from rasd.backends.nvml.core import REPROBE_POLLS

LATER = """
[[event]]
kind = "nvml_error"
at = 5
gpu = 0
function = "{function}"
error = "{error}"
calls = {calls}
"""


@pytest.mark.parametrize("error,kind", [("unknown", "unknown"), ("timeout", "timeout"), ("no_permission", "no_permission")])
def test_a_transient_error_after_the_first_polls_is_counted_under_its_reading_and_retried(fake, clock, error, kind):
    be = fake(LATER.format(function="nvmlDeviceGetClockInfo", error=error, calls=2), clock=clock)
    g = be.adapter.gpus()[0]
    first = g.poll()
    assert first.clock_sm_hz is not None and first.clock_memory_hz is not None
    clock.advance(6)
    s = g.poll(slow=False)
    assert s.clock_sm_hz is None and s.clock_memory_hz is None  # both calls of this poll failed
    assert g.error_counts() == {("clock_sm", kind): 1, ("clock_memory", kind): 1}
    assert "clock_sm" not in g.unsupported()
    again = g.poll(slow=False)
    assert again.clock_sm_hz is not None and again.clock_memory_hz is not None  # retried, and it answered


def test_not_supported_after_the_first_polls_is_absent_then_asked_again_after_the_reprobe_interval(fake, clock):
    be = fake(LATER.format(function="nvmlDeviceGetUtilizationRates", error="not_supported", calls=1), clock=clock)
    g = be.adapter.gpus()[0]
    assert g.poll().utilization_gpu_ratio is not None
    clock.advance(6)
    asked = []
    real = g._chosen["utilization"]  # the call the first poll chose

    def counting(*args):
        asked.append(1)
        return real(*args)

    g._chosen["utilization"] = counting
    s = g.poll(slow=False)
    assert s.utilization_gpu_ratio is None and s.utilization_memory_ratio is None
    assert "utilization" in g.unsupported() and not g.error_counts()
    for _ in range(REPROBE_POLLS - 1):
        assert g.poll(slow=False).utilization_gpu_ratio is None  # set aside: not asked
    assert len(asked) == 1
    back = g.poll(slow=False)  # re-probed: the fault was one call, so it answers
    assert back.utilization_gpu_ratio is not None and len(asked) == 2
    assert "utilization" not in g.unsupported()


def test_a_lost_gpu_after_the_first_polls_stops_the_poll(fake, clock):
    be = fake(LATER.format(function="nvmlDeviceGetMemoryInfo", error="gpu_is_lost", calls=1), clock=clock)
    g = be.adapter.gpus()[0]
    g.poll()
    clock.advance(6)
    with pytest.raises(GpuLost):
        g.poll(slow=False)


def test_a_fast_poll_has_the_last_slow_part_and_everything_else_read_now(fake, clock):
    """Field by field: a fast poll's sample is the slow part of the last slow poll, and every
    other reading as a full poll at the same instant reads it (none left from the slow poll)."""
    from dataclasses import fields

    from rasd.backends.nvml.readings import _ORDER, _SLOW_SAMPLE_FIELDS

    be = fake(clock=clock)
    g = be.adapter.gpus()[0]
    first = g.poll()
    clock.advance(7.3)  # the workload moves: power, energy, clocks, temperatures differ
    fast = g.poll(slow=False)
    full = g.poll(slow=True)  # the same instant (the clock is the fake node's own)
    timing = {"time_wall", "time_mono", "poll_seconds"}
    moved = []
    for f in fields(fast):
        if f.name in timing:
            continue
        if f.name in _SLOW_SAMPLE_FIELDS:
            assert getattr(fast, f.name) == getattr(first, f.name), f.name
        else:
            assert getattr(fast, f.name) == getattr(full, f.name), f.name
            moved.append(getattr(fast, f.name) != getattr(first, f.name))
    assert sum(moved) >= 3  # the instant differs from the slow poll's in several readings
    assert fast.slow_time_mono == first.time_mono and full.slow_time_mono == full.time_mono

    # A fast poll starts from the slow poll's fields: every field outside the slow part must be
    # written again (a new field that is neither would carry the slow poll's value unseen).
    marker = object()
    kept = g._slow_values
    assert kept is not None
    g._slow_values = [v if name in _SLOW_SAMPLE_FIELDS else marker for name, v in zip(_ORDER, kept)]
    clock.advance(1.0)
    again = g.poll(slow=False)
    assert [f.name for f in fields(again) if getattr(again, f.name) is marker] == []


@pytest.mark.parametrize("error", ["unknown", "not_supported", "gpu_is_lost"])
def test_an_entry_failing_at_a_fast_poll_is_judged_as_at_a_full_one(fake, clock, error):
    """The fast poll's field entries (one a reading) under the batch's error rules: another
    error is counted under the reading and asked again; NOT_SUPPORTED sends the reading to its own
    call for good (which answers for itself); a lost GPU stops the poll."""
    be = fake(LATER.format(function="nvmlDeviceGetEnforcedPowerLimit", error=error, calls=1), clock=clock)
    g = be.adapter.gpus()[0]
    assert g.poll().power_limit_watts is not None
    clock.advance(6)
    if error == "gpu_is_lost":
        with pytest.raises(GpuLost):
            g.poll(slow=False)
        return
    s = g.poll(slow=False)
    if error == "unknown":
        assert s.power_limit_watts is None
        assert g.error_counts() == {("power_limit_enforced", "unknown"): 1}
        assert not g._by_call
    else:  # the entry said "not supported": the call was asked this poll, and it answered
        assert s.power_limit_watts is not None and not g.error_counts()
        assert g._by_call == {"power_limit_enforced"} and "power_limit_enforced" not in g.unsupported()
    again = g.poll(slow=False)
    assert again.power_limit_watts == s.power_limit_watts or error == "unknown"
    assert again.power_limit_watts is not None and again.power_average_watts is not None


def test_unsupported_marks_and_reprobes_from_two_threads_stay_consistent(fake, clock):
    """The health poll's thread and the power reads' both mark readings unsupported and ask them
    again: each mark or re-probe is one change (the count tells the read plans they are stale),
    and two re-probes of one reading at once do not both remove it."""
    import sys
    import threading

    g = fake(clock=clock).adapter.gpus()[0]
    rounds = 60000
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def churn() -> None:
        start.wait()
        try:
            for _ in range(rounds):
                g._mark_unsupported("field_values")
                g._polls += REPROBE_POLLS
                g._skipped("field_values")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=churn) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    # marks and removals alternate, so the count's parity says whether the reading is set aside
    assert g._unsupported_changes % 2 == (1 if "field_values" in g._unsupported else 0)
    assert g._unsupported_changes >= rounds
