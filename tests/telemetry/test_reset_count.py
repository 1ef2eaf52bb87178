"""One GPU reset is one reset, however many counters it sets back to zero."""

from __future__ import annotations

from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.counters import MonotonicCounters
from tests.telemetry.test_aggregate import _sample, view


def test_every_counter_dropping_at_once_is_one_reset() -> None:
    c = MonotonicCounters()
    for name, v in (("ecc", 4), ("energy", 900.0), ("replays", 7)):
        c.update(name, v)
    for name in ("ecc", "energy", "replays"):  # the driver reloaded: all restart near zero
        c.update(name, 0)
    assert c.resets == 1
    for name, v in (("ecc", 1), ("energy", 50.0), ("replays", 2)):
        c.update(name, v)
    c.update("energy", 3.0)  # a second reset, later
    c.update("ecc", 0)
    assert c.resets == 2


def test_a_slow_counter_read_after_the_reset_is_the_same_reset() -> None:
    c = MonotonicCounters()
    c.update("energy", 900.0)
    c.update("ecc", 4)  # read every 30 s
    c.update("energy", 1.0)  # reset seen on the fast counter
    c.update("energy", 2.0)
    c.update("ecc", 0)  # the slow counter shows the same reset polls later
    assert c.resets == 1


def test_the_aggregator_exports_one_reset_for_one_driver_reload() -> None:
    agg = Aggregator()
    agg.update(view(_sample(energy_joules=5000.0, pcie_replays=5, ecc_volatile_corrected=3), 1), 100.0)
    st, _ = agg.update(view(_sample(time_mono=11.0, energy_joules=2.0, pcie_replays=0,
                                    ecc_volatile_corrected=0), 2), 101.0)
    assert st.counter_resets == 1
    assert st.counters["pcie_replays"] == 5 and st.counters["ecc_volatile_corrected"] == 3
