"""Placing updates stamped at the read on the refresh they came from (rasd.telemetry.refreshgrid)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rasd.power.analysis import analyze_series
from rasd.telemetry.refreshgrid import ALL_NEW_UPDATES, RefreshGrid


def _source(seed: int, hz: float, period_s: float, jitter_s: float, seconds: float = 30.0, *,
            idle: float = 0.0, missed: float = 0.0):
    """A driver refreshing every ``period_s`` (a training step's square wave, 1.5 Hz, plus noise;
    a refresh keeps the last value with probability ``idle``) read at ``hz`` with late wake-ups of
    up to ``jitter_s``, a read failing with probability ``missed``: per read, (stamp us, watts,
    the refresh's time us)."""
    rng = random.Random(seed)
    t0 = 1_000.0 + rng.uniform(0, period_s)
    refresh = [t0 + k * period_s for k in range(int(seconds / period_s) + 2)]
    watts = [(650.0 if (t * 1.5) % 1.0 < 0.6 else 350.0) + round(rng.gauss(0, 3), 3) for t in refresh]
    for k in range(1, len(watts)):
        if rng.random() < idle:
            watts[k] = watts[k - 1]
    reads = []
    k = 0
    start = t0 + rng.uniform(0, 1 / hz)
    for i in range(int(seconds * hz)):
        t = start + i / hz + abs(rng.gauss(0, jitter_s))
        while k + 1 < len(refresh) and refresh[k + 1] <= t:
            k += 1
        if rng.random() >= missed:
            # the refresh that last changed the value: the update's truth
            first = k
            while first > 0 and watts[first - 1] == watts[k]:
                first -= 1
            reads.append((round(t * 1e6), watts[k], round(refresh[first] * 1e6)))
    return reads


def _judge(reads):
    """The value method's updates: (placed us, raw us, watts, refresh us), as the sampler judges."""
    g = RefreshGrid()
    out = []
    for (prev, pw, _), (ts, w, refresh) in zip(reads, reads[1:]):
        if w == pw:
            g.repeat()
            continue
        placed = g.place(prev, ts)
        assert prev < placed <= ts  # always within its span: between the two reads
        out.append((placed, ts, w, refresh))
    return out


@pytest.mark.parametrize("hz,period_s,jitter_s", [
    (12.5, 0.1, 0.0002), (12.5, 0.10002, 0.001), (13.7, 0.1, 0.001), (15.0, 0.1, 0.001), (15.0, 0.10002, 0.001),
    (25.0, 0.09995, 0.003), (50.0, 0.1, 0.001),
])
def test_updates_are_spaced_as_their_refreshes_were(hz: float, period_s: float, jitter_s: float) -> None:
    rows = _judge(_source(7, hz, period_s, jitter_s))
    late = rows[50:]  # once the grid is pinned down
    placed = np.array([r[0] for r in late]) / 1e6
    truth = np.array([r[3] for r in late]) / 1e6
    err = np.abs(np.diff(placed) - np.diff(truth))
    assert np.mean(err <= 0.002) >= 0.95, np.sort(err)[-10:]


def test_ramp_rates_come_out_as_the_drivers_where_read_times_overstate_them() -> None:
    rows = _judge(_source(3, 12.5, 0.1, 0.0005))
    w = np.array([r[2] for r in rows])
    placed, raw, truth = (np.array([r[i] for r in rows]) / 1e6 for i in (0, 1, 3))
    ramp = {name: analyze_series(t, w, (0.1, 3.0)).ramp_up_watts_per_second  # type: ignore[union-attr]
            for name, t in (("placed", placed), ("raw", raw), ("truth", truth))}
    assert ramp["placed"] == pytest.approx(ramp["truth"], rel=0.03)
    assert ramp["raw"] > 1.15 * ramp["truth"]  # timed at the read: a quarter too steep


def test_a_value_that_changes_on_every_read_is_left_at_its_reads() -> None:
    """NVIDIA's mock varies power per read: there is no refresh grid to place anything on."""
    g = RefreshGrid()
    ts = [1_000_000 + 80_000 * i + random.Random(i).randrange(500) for i in range(300)]
    assert [g.place(a, b) for a, b in zip(ts, ts[1:])] == ts[1:]
    assert g.phase is None


def test_placing_stops_after_a_long_run_of_new_values_and_starts_again_after_a_repeat() -> None:
    reads = _source(11, 12.5, 0.1, 0.0005)
    g = RefreshGrid()
    for (prev, pw, _), (ts, w, _) in zip(reads[:200], reads[1:200]):
        g.repeat() if w == pw else g.place(prev, ts)
    assert g.phase is not None
    last = reads[199][0]
    for _ in range(ALL_NEW_UPDATES + 1):  # then every read new
        nxt = last + 80_000
        g.place(last, nxt)
        last = nxt
    assert g.phase is None and g.place(last, last + 80_000) == last + 80_000
    g.repeat()
    for (prev, pw, _), (ts, w, _) in zip(reads[200:], reads[201:]):
        g.repeat() if w == pw else g.place(prev + last, ts + last)
    assert g.phase is not None


@pytest.mark.parametrize("period_s", [0.1 * (1 - 3e-4), 0.1 * (1 + 3e-4)])
def test_a_drifting_grid_is_followed_where_values_often_repeat(period_s: float) -> None:
    """300 ppm of drift against the host's clock (the H200's was about 200), half the refreshes
    keeping the value, reads up to 3 ms late: the phase follows the grid."""
    errors = []
    for seed in range(6):
        rows = _judge(_source(seed, 12.5, period_s, 0.003, 60.0, idle=0.5))[30:]
        placed = np.array([r[0] for r in rows]) / 1e6
        truth = np.array([r[3] for r in rows]) / 1e6
        errors.append(np.abs(np.diff(placed) - np.diff(truth)))
    assert np.percentile(np.concatenate(errors), 95) <= 0.005


def test_an_update_after_a_failed_read_is_placed_on_the_grid_too() -> None:
    """A span of a whole period or more (a read failed between) says nothing of the phase, but a
    pinned grid still knows the refresh behind the value read."""
    rows = _judge(_source(5, 12.5, 0.1, 0.0005, 60.0, missed=0.04))[50:]
    placed = np.array([r[0] for r in rows]) / 1e6
    truth = np.array([r[3] for r in rows]) / 1e6
    assert np.mean(np.abs(np.diff(placed) - np.diff(truth)) <= 0.002) >= 0.97
