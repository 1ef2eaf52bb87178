"""Node budget sharing (Slurm power/cray template)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasd.power.budget import initial, rebalance
from rasd.model import PowerLimits
from rasd.power.settings import PowerSettings

LIMITS = {g: PowerLimits(700.0, 200.0, 700.0) for g in range(4)}
S = PowerSettings(node_budget_watts=2000.0, rebalance_seconds=30.0)


def test_initial_shares_are_equal_and_bounded() -> None:
    b = initial(2000.0, LIMITS, 0.0)
    assert dict(b.shares) == {g: pytest.approx(500.0) for g in range(4)}
    assert b.feasible and b.unallocated_watts == pytest.approx(0.0)
    big = initial(4000.0, LIMITS, 0.0)
    assert all(v == pytest.approx(700.0) for v in big.shares.values())
    assert big.unallocated_watts == pytest.approx(1200.0)


def test_infeasible_budget_is_flagged_and_every_gpu_sits_at_its_minimum() -> None:
    b = initial(600.0, LIMITS, 0.0)
    assert not b.feasible
    assert all(v == 200.0 for v in b.shares.values())


def test_pinned_gpus_get_what_idle_gpus_give_back() -> None:
    b0 = initial(2000.0, LIMITS, 0.0)
    usage = {0: 498.0, 1: 497.0, 2: 250.0, 3: 240.0}  # 0, 1 pinned at their cap; 2, 3 far below
    b1 = rebalance(b0, usage, LIMITS, S, 30.0)
    assert b1.shares[2] < 500.0 and b1.shares[3] < 500.0
    assert b1.shares[2] >= 250.0 / 0.925 - 1e-6  # still above what it draws, with headroom
    # grow by at most 20 % of the 500 W range per step
    assert 500.0 < b1.shares[0] <= 600.0 + 1e-6
    assert sum(b1.shares.values()) <= 2000.0 + 1e-6
    b2 = rebalance(b1, {0: 595.0, 1: 595.0, 2: 250.0, 3: 240.0}, LIMITS, S, 60.0)
    assert b2.shares[0] > b1.shares[0]
    assert sum(b2.shares.values()) <= 2000.0 + 1e-6


def test_rebalance_waits_for_its_period() -> None:
    b0 = initial(2000.0, LIMITS, 0.0)
    same = rebalance(b0, {0: 499.0, 1: 100.0, 2: 100.0, 3: 100.0}, LIMITS, S, 10.0)
    assert same is b0


def test_shrink_step_is_bounded() -> None:
    b0 = initial(2800.0, LIMITS, 0.0)  # 700 W each
    b1 = rebalance(b0, {g: 10.0 for g in range(4)}, LIMITS, PowerSettings(node_budget_watts=2800.0), 30.0)
    # 50 % of the 500 W range at most, and never below the minimum
    assert all(v == pytest.approx(450.0) for v in b1.shares.values())
    b2 = rebalance(b1, {g: 10.0 for g in range(4)}, LIMITS, PowerSettings(node_budget_watts=2800.0), 60.0)
    assert all(v == pytest.approx(200.0) for v in b2.shares.values())


def test_a_changed_budget_starts_again_from_equal_shares() -> None:
    b0 = initial(2800.0, LIMITS, 0.0)
    b1 = rebalance(b0, {g: 690.0 for g in range(4)}, LIMITS, PowerSettings(node_budget_watts=2000.0), 1.0)
    assert sum(b1.shares.values()) == pytest.approx(2000.0)


@settings(max_examples=60, deadline=None)
@given(
    budget=st.floats(900.0, 4000.0),
    usage=st.lists(st.floats(0.0, 720.0), min_size=4, max_size=4),
    steps=st.integers(1, 5),
)
def test_shares_stay_within_limits_and_budget(budget: float, usage: list[float], steps: int) -> None:
    s = PowerSettings(node_budget_watts=budget)
    b = rebalance(None, {}, LIMITS, s, 0.0)
    for k in range(1, steps + 1):
        b = rebalance(b, dict(enumerate(usage)), LIMITS, s, 30.0 * k)
        assert sum(b.shares.values()) <= budget + 1e-6
        for g, v in b.shares.items():
            assert LIMITS[g].min_watts - 1e-9 <= v <= LIMITS[g].max_watts + 1e-9
