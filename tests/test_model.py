"""The model's shared keys: one object per key for every GPU."""

from __future__ import annotations

from rasd.model import NVLINK_COUNTERS, nvlink_counter_name


def test_a_links_counter_key_is_one_str_for_every_gpu() -> None:
    """Each GPU's counters are keyed by these names (72 on an 18-link GPU): the same string
    object every time, not a copy per GPU and poll."""
    names = [nvlink_counter_name(ln, c) for ln in range(18) for c in NVLINK_COUNTERS]
    assert names[0] == "nvlink0_crc_flit_errors" and names[-1] == "nvlink17_recovery_errors"
    assert len(set(names)) == 72
    again = [nvlink_counter_name(ln, c) for ln in range(18) for c in NVLINK_COUNTERS]
    assert all(a is b for a, b in zip(names, again))
