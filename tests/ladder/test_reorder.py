"""Putting a log back in time order keeps the order one heap of (time, arrival) would give, for
logs in order, slightly out of order and badly out of order, whatever the window, and counts the
same events as left out of order."""

from __future__ import annotations

import heapq
import random
from typing import Iterator

import pytest

from rasd.ladder.replay import Numbered, ReadStats, in_time_order
from rasd.model import FaultEvent, FaultKind


def _by_one_heap(items: list[Numbered], stats: ReadStats, window: int,
                 seconds: float) -> Iterator[Numbered]:
    """The reference: every waiting event in one heap, the earliest (then first read) out first
    once the log is ``seconds`` past it or more than ``window`` events wait."""
    heap: list[tuple[float, int, Numbered]] = []
    last = newest = float("-inf")

    def pop() -> Numbered:
        nonlocal last
        t0, _, out = heapq.heappop(heap)
        if t0 < last:
            stats.out_of_order += 1
        else:
            last = t0
        return out

    for seq, item in enumerate(items):
        t = item[0]
        heapq.heappush(heap, (t, seq, item))
        newest = max(newest, t)
        while heap and (heap[0][0] <= newest - seconds or len(heap) > window):
            yield pop()
    while heap:
        yield pop()


def _log(rnd: random.Random, n: int, lateness: tuple[float, ...]) -> list[Numbered]:
    t, items = 0.0, []
    for line in range(1, n + 1):
        t += rnd.choice((0.0, 0.0, 1.0, 5.0, 50.0, 400.0))  # ties included
        late = t - rnd.choice(lateness)
        items.append((late, line, FaultEvent(late, 0, FaultKind.THERMAL), "", 0))
    return items


@pytest.mark.parametrize("lateness", [(0.0,), (0.0, 0.0, 0.0, 10.0, 100.0),
                                      (0.0, 100.0, 500.0, 1000.0, 5000.0)],
                         ids=["in order", "slightly late", "badly late"])
@pytest.mark.parametrize("window,seconds", [(1, 300.0), (3, 0.0), (5, 10.0), (64, 300.0),
                                            (10_000, 300.0)])
def test_the_order_of_one_heap(lateness: tuple[float, ...], window: int, seconds: float) -> None:
    rnd = random.Random(f"{lateness} {window} {seconds}")
    for _ in range(200):
        items = _log(rnd, rnd.randint(0, 80), lateness)
        want_stats, got_stats = ReadStats(), ReadStats()
        want = [x[1] for x in _by_one_heap(items, want_stats, window, seconds)]
        got = [x[1] for x in in_time_order(items, got_stats, window, seconds)]
        assert got == want
        assert got_stats.out_of_order == want_stats.out_of_order
