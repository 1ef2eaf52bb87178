"""The daemon's power loop analyses each GPU's own window in turn (once per window) and the node
sum every analysis: on the same readings it decides exactly as analysing every GPU every time."""

from __future__ import annotations

from array import array

import dataclasses

import pytest

import rasd.power.analysis as analysis
from rasd.power import kernel
from rasd.backends import open_backend
from rasd.backends.fake.clock import ManualClock
from rasd.model import PowerSample
from rasd.power.decide import Mode
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.telemetry.power import PowerSampler

from tests.power.test_service import START, Gpu, stream

WALL = 1_800_000_000.0


@pytest.fixture(scope="module")
def training() -> list[list[PowerSample]]:
    """100 s of 8 fake H100s running the default training job (steps, checkpoints), read at 10 Hz;
    one list of samples per simulated second."""
    clock = ManualClock(100.0)
    be = open_backend("fake", gpus=8, clock=clock)
    try:
        gpus = be.adapter.gpus()
        seconds: list[list[PowerSample]] = []
        sampler = PowerSampler(gpus, 10.0, lambda rows: seconds[-1].extend(rows), clock=clock)
        for _ in range(100):
            seconds.append([])
            for _ in range(10):
                clock.advance(0.1)
                sampler.round()
    finally:
        be.close()
    return seconds


def _pair(settings: PowerSettings, gpus: int) -> tuple[PowerService, PowerService]:
    turns = PowerService(settings, [Gpu(g) for g in range(gpus)], clock=lambda: WALL)
    every = PowerService(settings, [Gpu(g) for g in range(gpus)], clock=lambda: WALL)
    every.gpu_refresh_seconds = 0.0  # every GPU analysed at every full analysis
    return turns, every


def _same_decisions(
    turns: PowerService, every: PowerService, seconds: list[list[PowerSample]], monkeypatch: pytest.MonkeyPatch
) -> tuple[set[str], int, int]:
    """Feed both the same readings, tick both every second; compare what they decide."""
    calls: list[int] = []
    real = analysis.analyze_series
    monkeypatch.setattr(analysis, "analyze_series", lambda *a, **k: calls.append(1) or real(*a, **k))
    if kernel.active is not None:  # the daemon's analysis runs in C where it is built
        native = kernel.active.analyze
        monkeypatch.setattr(kernel.active, "analyze", lambda *a, **k: calls.append(1) or native(*a, **k))
    counts = []
    modes = set()
    for k, batch in enumerate(seconds):
        counts.append([])
        for svc in (turns, every):
            svc.add_samples(batch)
            calls.clear()
            svc.tick(WALL + k)
            counts[-1].append(len(calls))
        a, b = turns.state(), every.state()
        assert a.decision == b.decision, f"second {k}"
        assert a.node == b.node and set(a.gpus) == set(b.gpus), f"second {k}"
        assert a.budget == b.budget
        assert a.decision is not None
        modes.add(a.decision.mode.label)
    # Taking GPUs in turn is the point: fewer series analysed, the same decisions.
    return modes, sum(c[0] for c in counts), sum(c[1] for c in counts)


@pytest.mark.parametrize(
    "settings,expect",
    [
        (PowerSettings(), {"none"}),
        (PowerSettings(max_ramp_watts_per_second=5000.0), {"ramp"}),
        (PowerSettings(node_budget_watts=5000.0), {"cap"}),
        (PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=60.0), {"floor"}),
        (PowerSettings(allowed_swing_percent=20.0), {"cap"}),
    ],
    ids=["defaults", "ramp-limit", "node-budget", "swing-floor", "swing-cap"],
)
def test_live_training_window_decides_as_analysing_every_gpu(training, monkeypatch, settings, expect) -> None:
    turns, every = _pair(settings, 8)
    modes, fewer, all_of_them = _same_decisions(turns, every, training, monkeypatch)
    assert expect <= modes  # ("none" too while the first half window fills)
    if expect <= {"none", "ramp"}:
        assert fewer < all_of_them / 2  # floors and caps take every GPU's own figures


def _per_second(samples: list[PowerSample]) -> list[list[PowerSample]]:
    out: list[list[PowerSample]] = []
    for s in samples:
        k = int(s.nvml_timestamp_us / 1e6 - START)
        while len(out) <= k:
            out.append([])
        out[k].append(s)
    return out


def test_swing_onset_and_a_lost_gpu_decide_as_analysing_every_gpu(monkeypatch) -> None:
    # Calm, then a swing (escalation between analyses); GPU 3 stops reporting 50 s in.
    samples = [s for s in stream(40.0, 40.0) if s.gpu != 3 or s.nvml_timestamp_us / 1e6 < START + 50.0]
    settings = PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0, window_seconds=20.0)
    turns, every = _pair(settings, 4)
    modes, _, _ = _same_decisions(turns, every, _per_second(samples), monkeypatch)
    assert modes == {"none", "floor"}
    assert set(turns.state().gpus) == {0, 1, 2}


def test_each_gpu_is_analysed_once_per_window_and_the_node_every_analysis(training) -> None:
    svc = PowerService(PowerSettings(), [Gpu(g) for g in range(8)], clock=lambda: WALL)
    seen: dict[int, list[float]] = {g: [] for g in range(8)}
    node_at = []
    for k, batch in enumerate(training):
        svc.add_samples(batch)
        before = svc.state()
        st = svc.tick(WALL + k)
        if st.node is not before.node:
            node_at.append(k)
        for g, m in st.gpus.items():
            if m is not before.gpus.get(g):
                seen[g].append(k)
    assert st.decision is not None and st.decision.mode is Mode.NONE and len(st.gpus) == 8
    late = [k for k in node_at if k >= 40]
    assert late and all(b - a <= 5 for a, b in zip(late, late[1:]))  # the node every 5 s
    for g, at in seen.items():
        gaps = [b - a for a, b in zip(at, at[1:]) if a >= 20]
        assert gaps and max(gaps) <= 35 and min(gaps) >= 25, (g, at)  # each GPU about every 30 s


def test_reload_takes_every_gpu_afresh(training) -> None:
    svc = PowerService(PowerSettings(), [Gpu(g) for g in range(8)], clock=lambda: WALL)
    for k, batch in enumerate(training[:40]):
        svc.add_samples(batch)
        svc.tick(WALL + k)
    old = svc.state().gpus
    svc.reconfigure(dataclasses.replace(PowerSettings(), band_low_hz=0.2))
    st = svc.tick(WALL + 41)
    assert all(m is not old[g] and m.band_low_hz == 0.2 for g, m in st.gpus.items())


@pytest.mark.parametrize(
    "settings,mode",
    [
        (PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0), "floor"),
        (PowerSettings(max_ramp_watts_per_second=1500.0), "ramp"),
        (PowerSettings(node_budget_watts=2000.0), "cap"),
    ],
    ids=["swing", "ramp", "budget"],
)
def test_checks_between_analyses_escalate_on_the_tick_analysing_every_second_would(settings, mode) -> None:
    # Calm at 450 W a GPU, then a 0.5 Hz square swing 300-600 W: between full analyses the node
    # sum is extended by the new readings only; it must escalate on the very tick that analysing
    # every second does, and decide the same.
    samples = _per_second(stream(42.0, 28.0))

    def run(analysis_seconds: float) -> list[tuple[str, tuple]]:
        svc = PowerService(dataclasses.replace(settings, analysis_seconds=analysis_seconds),
                           [Gpu(g) for g in range(4)], clock=lambda: WALL)
        out = []
        for k, batch in enumerate(samples):
            svc.add_samples(batch)
            d = svc.tick(WALL + k).decision
            assert d is not None
            out.append((d.mode.label, tuple(sorted((g, x.mode, x.floor_watts, x.target_limit_watts,
                                                    x.ramp_up_watts_per_second) for g, x in d.gpus.items()))))
        return out

    every, cadence = run(1e-6), run(5.0)
    assert cadence == every
    modes = [m for m, _ in every]
    assert modes[:42] == ["none"] * 42 and mode in modes, modes


def test_the_node_sum_between_analyses_matches_summing_the_window(training) -> None:
    # The extended node sum's swing, peak and ramps, tick by tick, against the node sum of the
    # whole window summed afresh (its grid may sit a fraction of a step apart).
    import numpy as np

    from rasd.power.analysis import PEAK_PERCENTILE, TROUGH_PERCENTILE, node_sum

    svc = PowerService(PowerSettings(max_ramp_watts_per_second=1e9), [Gpu(g) for g in range(8)],
                       clock=lambda: WALL)
    compared = 0
    for k, batch in enumerate(training):
        svc.add_samples(batch)
        svc.tick(WALL + k)
        if k < 20 or svc._node is None:
            continue
        newest = max(s.nvml_timestamp_us for s in batch) / 1e6
        ours = svc._extend_node(newest)
        fresh = node_sum(svc.window())
        assert ours is not None and ours is not True and fresh is not None
        a = np.percentile(ours[1], [TROUGH_PERCENTILE, PEAK_PERCENTILE])
        b = np.percentile(fresh[1], [TROUGH_PERCENTILE, PEAK_PERCENTILE])
        assert abs((a[1] - a[0]) - (b[1] - b[0])) < 0.03 * (b[1] - b[0])
        assert abs(a[1] - b[1]) < 0.01 * b[1]
        assert abs(ours[0][-1] - fresh[0][-1]) <= 2 * svc._node.step
        assert abs(ours[0][0] - fresh[0][0]) <= 2 * svc._node.step
        compared += 1
    assert compared > 40


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "numpy"])
def test_interp_sum_is_the_sum_of_each_rows_interpolation(native: bool) -> None:
    import numpy as np

    from rasd.power import kernel
    from rasd.power.window import interp_sum

    if native and kernel.active is None:
        pytest.skip("the power kernel is not built (pip install -e . builds rasd/power/_kernel)")
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 2.0, (5, 9)), axis=1)
    t[1, :3] = t[1, 0] - np.array([3.0, 2.0, 1.0])  # a row starting long before the points
    w = rng.uniform(100.0, 700.0, (5, 9))
    rows = [(array("d", t[i]), array("d", w[i])) for i in range(5)] + [(array("d", [0.5]), array("d", [42.0]))]
    points = np.concatenate(([-1.0, t[0, 2]], np.linspace(0.0, 2.0, 23), [3.0]))  # outside, on a reading, inside
    want = sum(np.interp(points, t[i], w[i]) for i in range(5)) + 42.0  # a row of one reading holds it
    old = kernel.use(kernel.active if native else None)
    try:
        got = interp_sum(array("d", points), rows)
    finally:
        kernel.use(old)
    assert np.allclose(np.frombuffer(got, float), want, rtol=1e-12, atol=1e-9)


def test_readings_keep_no_watts_that_are_not_a_number() -> None:
    from rasd.power.readings import Readings

    r = Readings()
    assert r.append(0.1, 300.0) and not r.append(0.2, float("nan")) and not r.append(0.3, float("inf"))
    assert r.extend([0.4, 0.5, 0.6], [301.0, float("-inf"), 302.0])  # the others go in
    assert list(r.t) == [0.1, 0.4, 0.6] and list(r.w) == [300.0, 301.0, 302.0]


def test_readings_keep_the_window_through_compaction() -> None:

    from rasd.power.readings import COMPACT, Readings

    r = Readings()
    n = 3 * max(COMPACT, 4096)
    most = 0
    for k in range(n):
        assert r.append(k * 0.1, float(k))
        assert not r.append(k * 0.1, -1.0)  # a repeat adds nothing
        r.trim(k * 0.1 - 30.0)
        most = max(most, len(r.t))
    t, w = r.arrays()
    assert len(r) == len(t) == 301 and t[0] == (n - 301) * 0.1 and w[-1] == n - 1
    # dropped readings are let go once there are COMPACT of them: a buffer never holds more
    # than the window and COMPACT, however long the daemon runs
    assert most <= 301 + COMPACT and len(r.t) <= 301 + COMPACT
    r.append(n * 0.1, 5.0)
    assert len(t) == 301 and all(a < b for a, b in zip(t, t[1:]))  # a copy: later appends do not show in it
    tt, ww = r.since((n - 3) * 0.1 + 0.05)
    assert list(tt) == [(n - 3) * 0.1, (n - 2) * 0.1, (n - 1) * 0.1, n * 0.1] and ww[-1] == 5.0
