"""Pure node power-budget sharing between GPUs (template: Slurm's power/cray plugin).

Every ``rebalance_seconds``: a GPU drawing less than ``budget_lower_percent`` of its share gives
some back (down by at most ``budget_shrink_percent`` of its limit range, never below what it
draws plus headroom); a GPU drawing more than ``budget_upper_percent`` (pinned at its cap) asks for
up to ``budget_grow_percent`` of its range more; the freed watts go to the askers in proportion to
what they ask. Every share stays within the GPU's min and max limit, and the shares never add up
to more than the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from rasd.model import PowerLimits
from rasd.power.settings import PowerSettings


@dataclass(frozen=True, slots=True)
class BudgetState:
    budget_watts: float
    shares: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))  # W per GPU
    unallocated_watts: float = 0.0
    feasible: bool = True  # False: the budget is below the sum of the GPUs' minimum limits
    rebalanced_wall: float = 0.0


def initial(budget: float, limits: Mapping[int, PowerLimits], now_wall: float) -> BudgetState:
    """Equal shares, bounded by each GPU's limits; leftovers go to GPUs with room."""
    gpus = sorted(limits)
    if not gpus:
        return BudgetState(budget, rebalanced_wall=now_wall)
    shares = {g: limits[g].min_watts for g in gpus}
    feasible = sum(shares.values()) <= budget
    if feasible:
        _spread(shares, {g: limits[g].max_watts - shares[g] for g in gpus}, budget - sum(shares.values()))
    return _state(budget, shares, feasible, now_wall)


def rebalance(
    previous: BudgetState | None,
    usage_watts: Mapping[int, float],
    limits: Mapping[int, PowerLimits],
    settings: PowerSettings,
    now_wall: float,
) -> BudgetState:
    """One rebalancing step. ``usage_watts``: what each GPU drew (e.g. the window's 95th percentile).

    Returns ``previous`` unchanged until ``rebalance_seconds`` have passed since its last step.
    """
    budget = settings.node_budget_watts
    if previous is None or previous.budget_watts != budget or set(previous.shares) != set(limits):
        return initial(budget, limits, now_wall)
    if now_wall - previous.rebalanced_wall < settings.rebalance_seconds:
        return previous
    lower = settings.budget_lower_percent / 100.0
    upper = settings.budget_upper_percent / 100.0
    middle = (lower + upper) / 2.0
    shares: dict[int, float] = {}
    asks: dict[int, float] = {}
    for g in sorted(limits):
        lim = limits[g]
        cap = min(max(previous.shares[g], lim.min_watts), lim.max_watts)
        span = max(lim.max_watts - lim.min_watts, 0.0)
        used = usage_watts.get(g)
        if used is None:
            shares[g] = cap
        elif used < lower * cap:
            # Give back, but keep the GPU's draw in the middle of the dead zone.
            target = max(used / middle, cap - settings.budget_shrink_percent / 100.0 * span)
            shares[g] = min(max(target, lim.min_watts), cap)
        elif used > upper * cap:
            shares[g] = cap
            asks[g] = min(cap + settings.budget_grow_percent / 100.0 * span, lim.max_watts) - cap
        else:
            shares[g] = cap
    feasible = sum(limits[g].min_watts for g in limits) <= budget
    excess = sum(shares.values()) - budget
    if excess > 0:
        _shrink(shares, limits, excess)
    else:
        _spread(shares, asks, budget - sum(shares.values()))
    return _state(budget, shares, feasible, now_wall)


def _spread(shares: dict[int, float], wants: Mapping[int, float], free: float) -> None:
    """Give ``free`` watts to ``wants`` in proportion to what each wants (never more)."""
    total = sum(v for v in wants.values() if v > 0)
    if free <= 0 or total <= 0:
        return
    scale = min(1.0, free / total)
    for g, v in wants.items():
        if v > 0:
            shares[g] += v * scale


def _shrink(shares: dict[int, float], limits: Mapping[int, PowerLimits], excess: float) -> None:
    """Take ``excess`` watts back in proportion to each share's room above its minimum."""
    room = {g: shares[g] - limits[g].min_watts for g in shares}
    total = sum(v for v in room.values() if v > 0)
    if total <= 0:
        return
    scale = min(1.0, excess / total)
    for g, v in room.items():
        if v > 0:
            shares[g] -= v * scale


def _state(budget: float, shares: dict[int, float], feasible: bool, now_wall: float) -> BudgetState:
    return BudgetState(
        budget_watts=budget,
        shares=MappingProxyType(dict(shares)),
        unallocated_watts=max(0.0, budget - sum(shares.values())),
        feasible=feasible,
        rebalanced_wall=now_wall,
    )
