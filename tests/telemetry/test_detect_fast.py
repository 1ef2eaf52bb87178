"""A poll that repeats the slow part: the short detector finds exactly what the full one does."""

from __future__ import annotations

import typing
from dataclasses import fields, replace

from hypothesis import given, strategies as st

from rasd.backends.nvml.readings import _SLOW_SAMPLE_FIELDS
from rasd.model import GpuSample, NvLinkSample
from rasd.telemetry.detect import detect, detect_fast
from tests.telemetry.test_units import _sample

maybe_int = st.one_of(st.none(), st.integers(0, 10))
# the slow part, shared by both polls: flags, counts and ports as any slow poll may have left them
slow_part = st.fixed_dictionaries({
    "ecc_volatile_corrected": maybe_int, "ecc_volatile_uncorrected": maybe_int,
    "ecc_aggregate_corrected": maybe_int, "ecc_aggregate_uncorrected": maybe_int,
    "remap_pending": st.one_of(st.none(), st.booleans()), "remap_failure": st.one_of(st.none(), st.booleans()),
    "retired_pages_single_bit": maybe_int, "retired_pages_double_bit": maybe_int,
    "retired_pages_pending": st.one_of(st.none(), st.booleans()), "pcie_replays": maybe_int,
    "nvlinks": st.lists(st.tuples(st.one_of(st.none(), st.booleans()), maybe_int), max_size=4).map(
        lambda links: tuple(NvLinkSample(i, up, n, n, n, n) for i, (up, n) in enumerate(links))),
    "slow_time_mono": st.floats(0.0, 9.0),
})
# the fast part, each poll its own: every reading a fast poll reads, taken from the model (a
# detector added to ``detect`` for a new fast reading, outside what ``detect_fast`` runs, fails here)
_FAST_VALUES = {
    "recovery_action": st.one_of(st.none(), st.integers(0, 9)),
    "clock_event_reasons": st.one_of(st.none(), st.integers(0, 0xFFF)),
    "temperature_gpu_celsius": st.one_of(st.none(), st.floats(20.0, 110.0)),
    "energy_joules": st.floats(0.0, 1e9),
}
_NOT_READINGS = {"index", "time_wall", "time_mono", "poll_seconds"}


def _values(name: str) -> st.SearchStrategy[object]:
    if name in _FAST_VALUES:
        return _FAST_VALUES[name]
    kind = typing.get_type_hints(GpuSample)[name]
    plain = st.integers(0, 2**40) if int in typing.get_args(kind) else st.floats(0.0, 1e12)
    return st.one_of(st.none(), plain)


FAST_FIELDS = [f.name for f in fields(GpuSample) if f.name not in _SLOW_SAMPLE_FIELDS and f.name not in _NOT_READINGS]
fast_part = st.fixed_dictionaries({name: _values(name) for name in FAST_FIELDS})


@given(slow_part, fast_part, fast_part, st.floats(0.0, 1e6))
def test_the_short_detector_finds_what_the_full_one_does(slow: dict, before: dict, now: dict, grown: float) -> None:
    assert set(_FAST_VALUES) <= set(FAST_FIELDS) and len(FAST_FIELDS) >= 10
    prev = _sample(**slow, **before)
    cur = replace(_sample(time_wall=101.0, time_mono=11.0, **now), **{k: getattr(prev, k) for k in slow})
    assert cur.nvlinks is prev.nvlinks  # the repeated slow part is the very same tuple
    assert detect_fast(prev, cur) == detect(prev, cur, {"energy_joules": grown})


def test_recovery_action_and_thermal_slowdown_are_found_by_the_short_detector() -> None:
    prev = _sample(slow_time_mono=5.0)
    cur: GpuSample = replace(prev, time_wall=101.0, time_mono=11.0, recovery_action=1, clock_event_reasons=0x40)
    got = detect_fast(prev, cur)
    assert [(e.kind.value, dict(e.details)) for e in got] == [
        ("recovery_action", {"action": "gpu_reset", "code": 1}),
        ("thermal", {"reasons": 0x40, "temperature_celsius": 60.0}),
    ]
    assert got == detect(prev, cur, {})
