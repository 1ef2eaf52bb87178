"""Counters, detectors and the kernel-log parser."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, strategies as st

from rasd.model import FaultKind, GpuSample, NvLinkSample
from rasd.telemetry.counters import MonotonicCounters
from rasd.telemetry.detect import detect
from rasd.telemetry.kmsg import parse_xid_line, pci_key


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50))
def test_totals_never_decrease(raws):
    c = MonotonicCounters()
    totals = [c.update("x", r) for r in raws]
    assert all(b >= a for a, b in zip(totals, totals[1:]))
    assert c.resets == sum(1 for a, b in zip(raws, raws[1:]) if b < a)


def test_absent_reading_keeps_the_last_total():
    c = MonotonicCounters()
    c.update("x", 5)
    assert c.update("x", None) == 5
    assert c.delta("x", 2) == (7, 2)  # a reset to 2 after 5: total 5 + 2, grew by 2


def _sample(**kw) -> GpuSample:
    base = dict(
        index=0, time_wall=100.0, time_mono=10.0, poll_seconds=0.001,
        power_instant_watts=500.0, power_average_watts=500.0, power_limit_watts=700.0,
        power_limit_default_watts=700.0, power_limit_min_watts=200.0, power_limit_max_watts=700.0,
        energy_joules=1.0, temperature_gpu_celsius=60.0, temperature_memory_celsius=70.0,
        clock_sm_hz=1.9e9, clock_memory_hz=2.6e9, clock_event_reasons=0, utilization_gpu_ratio=1.0,
        utilization_memory_ratio=0.5, memory_used_bytes=1, memory_total_bytes=2**36, ecc_enabled=True,
        ecc_volatile_corrected=0, ecc_volatile_uncorrected=0, ecc_aggregate_corrected=0,
        ecc_aggregate_uncorrected=0, remapped_rows_correctable=0, remapped_rows_uncorrectable=0,
        remap_pending=False, remap_failure=False, retired_pages_single_bit=None,
        retired_pages_double_bit=None, retired_pages_pending=None, pcie_link_gen=5, pcie_link_gen_max=5,
        pcie_link_width=16, pcie_link_width_max=16, pcie_replays=0, recovery_action=0,
        nvlinks=tuple(NvLinkSample(i, True, 0, 0, 0, 0) for i in range(4)),
    )
    base.update(kw)
    return GpuSample(**base)


def test_detectors_raise_one_event_per_change():
    prev = _sample()
    links = list(prev.nvlinks)
    links[2] = replace(links[2], up=False)
    cur = _sample(
        time_mono=11.0, remap_pending=True, recovery_action=1, clock_event_reasons=0x40,
        nvlinks=tuple(links),
    )
    deltas = {"ecc_volatile_uncorrected": 2, "pcie_replays": 30, "nvlink1_crc_flit_errors": 150}
    kinds = sorted((e.kind.value, e.link) for e in detect(prev, cur, deltas))
    assert kinds == sorted([
        ("ecc", None), ("remap", None), ("recovery_action", None), ("thermal", None),
        ("pcie_replay", None), ("nvlink", 1), ("nvlink", 2),
    ])
    by_link = {e.link: e for e in detect(prev, cur, deltas) if e.kind is FaultKind.NVLINK}
    assert by_link[2].details["state"] == "down"
    assert by_link[1].details["crc_flit_errors"] == 150 and by_link[1].details["rate_per_second"] == 150
    assert detect(cur, cur, {}) == []  # nothing new, nothing raised


def test_kernel_log_xid_lines():
    x = parse_xid_line("NVRM: Xid (PCI:0000:3b:00): 13, pid=4242, name=train.py, Graphics SM Warp Exception on (GPC 3, TPC 1, SM 0)")
    assert x is not None and x.xid == 13 and x.pci == (0, 0x3B, 0)
    assert x.message.startswith("Graphics SM Warp Exception")
    assert parse_xid_line("usb 1-1: new device") is None
    assert pci_key("00000000:3B:00.0") == pci_key("0000:3b:00")


@given(st.lists(st.tuples(st.sampled_from("abc"),
                          st.one_of(st.none(), st.integers(0, 50), st.floats(0.0, 50.0))), max_size=60))
def test_delta_is_the_growth_of_the_total(readings):
    """delta() in one pass answers what total() before and update() give, reset count included."""
    c, ref = MonotonicCounters(), MonotonicCounters()
    for name, raw in readings:
        before = ref.total(name)
        total = ref.update(name, raw)
        want = (total, 0.0) if total is None or before is None else (total, total - before)
        assert c.delta(name, raw) == want
        assert c.resets == ref.resets
    assert all(c.total(n) == ref.total(n) for n in "abc")
