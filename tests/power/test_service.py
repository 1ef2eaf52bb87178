"""PowerService: the streaming window, a decision within one window, thread safety, reload."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np

from rasd.power.decide import Mode
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.power.synthetic import Wave, nvml_trace, to_samples

START = 1_700_000_000.0


class Gpu:
    def __init__(self, index: int):
        self.index = index
        self.limit = 700.0
        self.calls: list[tuple] = []

    def power_limits(self):
        return SimpleNamespace(limit_watts=self.limit, min_watts=200.0, max_watts=700.0)

    def set_power_limit(self, watts: float) -> float:
        self.calls.append(("set_power_limit", watts))
        self.limit = watts
        return watts

    def smoothing_supported(self) -> bool:
        return False

    def apply_smoothing(self, *a):  # pragma: no cover - never reached without support
        raise AssertionError("smoothing is not supported")

    def disable_smoothing(self) -> None:  # pragma: no cover
        raise AssertionError("smoothing is not supported")


def stream(quiet_seconds: float, swing_seconds: float, gpus: int = 4):
    """Per GPU: a steady trace, then a synchronized 0.5 Hz swing (sorted by NVML timestamp)."""
    rows = []
    for g in range(gpus):
        rng = np.random.default_rng(g)
        t1, w1 = nvml_trace(Wave(hz=0.0, swing_watts=0.0, base_watts=450.0, noise_watts=3.0),
                            quiet_seconds, start=START, rng=rng)
        t2, w2 = nvml_trace(Wave(hz=0.5, swing_watts=300.0, base_watts=300.0, shape="square", noise_watts=3.0),
                            swing_seconds, start=START + quiet_seconds, rng=rng)
        rows += to_samples(g, np.concatenate((t1, t2)), np.concatenate((w1, w2)))
    rows.sort(key=lambda s: s.nvml_timestamp_us)
    return rows


def test_decision_within_one_window_of_the_swing_starting() -> None:
    settings = PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0)  # window 30 s
    svc = PowerService(settings, [Gpu(g) for g in range(4)], clock=lambda: START)
    samples = stream(40.0, 30.0)
    onset = START + 40.0
    decided_at = None
    next_tick = START + 1.0
    for s in samples:
        t = s.nvml_timestamp_us / 1e6
        while t >= next_tick:
            st = svc.tick(next_tick)
            if next_tick < onset:
                assert st.decision is not None and st.decision.mode is Mode.NONE
            elif decided_at is None and st.decision is not None and st.decision.mode is Mode.FLOOR:
                decided_at = next_tick
            next_tick += 1.0
        svc.add_samples([s])
    assert decided_at is not None
    assert decided_at - onset <= settings.window_seconds
    assert decided_at - onset <= 3.0  # a few readings at both levels are enough


def test_window_keeps_only_the_last_window_seconds() -> None:
    svc = PowerService(PowerSettings(window_seconds=10.0), [Gpu(0)])
    svc.add_samples(stream(0.1, 25.0, gpus=1))
    t, _ = svc.window()[0]
    assert t[-1] - t[0] <= 10.0
    assert t[-1] - t[0] > 9.5


def test_add_samples_from_threads_while_ticking() -> None:
    svc = PowerService(PowerSettings(), [Gpu(g) for g in range(4)])
    samples = stream(5.0, 25.0)
    per_gpu = {g: [s for s in samples if s.gpu == g] for g in range(4)}

    def feed(g: int) -> None:
        for s in per_gpu[g]:
            svc.add_samples([s])

    threads = [threading.Thread(target=feed, args=(g,)) for g in range(4)]
    for th in threads:
        th.start()
    ticks = 0
    while any(th.is_alive() for th in threads):
        svc.tick(START + ticks)
        ticks += 1
    for th in threads:
        th.join()
    # Every reading fed from the threads is in the window, none lost to the ticks between.
    assert {g: len(t) for g, (t, _) in svc.window().items()} == {g: len(per_gpu[g]) for g in range(4)}
    # The ticks between took GPUs in turn; a reload analyses every GPU afresh at the next tick.
    svc.reconfigure(svc.settings)
    st = svc.tick(START + 100.0)
    assert st.tick_failures_total == 0
    assert {g: m.samples for g, m in st.gpus.items()} == {g: len(per_gpu[g]) for g in range(4)}


def test_advisory_by_default_and_reload_reverts_applied_changes() -> None:
    gpus = [Gpu(g) for g in range(4)]
    svc = PowerService(PowerSettings(allowed_swing_percent=20.0), gpus)
    svc.add_samples(stream(0.1, 30.0))
    st = svc.tick(START + 31.0)
    assert st.decision is not None and st.decision.mode is Mode.CAP
    assert not st.apply_enabled and st.changes == () and all(g.calls == [] for g in gpus)

    svc.reconfigure(PowerSettings(allowed_swing_percent=20.0, apply=True))
    st = svc.tick(START + 32.0)
    assert len(st.changes) == 4 and all(g.limit < 700.0 for g in gpus)
    svc.reconfigure(PowerSettings(allowed_swing_percent=20.0, apply=False))  # switching apply off gives the GPUs back
    assert all(g.limit == 700.0 for g in gpus)
    st = svc.tick(START + 33.0)
    assert all(g.limit == 700.0 for g in gpus)
    assert st.applied[0].changes_total == 2


def test_node_budget_shares_are_in_the_state() -> None:
    svc = PowerService(PowerSettings(node_budget_watts=2400.0), [Gpu(g) for g in range(4)])
    svc.add_samples(stream(0.1, 30.0))
    st = svc.tick(START + 31.0)
    assert st.budget is not None
    assert sum(st.budget.shares.values()) <= 2400.0 + 1e-6
    assert set(st.budget.shares) == {0, 1, 2, 3}


def test_a_lost_gpu_leaves_the_others_analysed() -> None:
    # GPU 3 stops reporting 10 s in (lost); the other three keep swinging. Once the lost GPU's
    # last readings are a window old, the node and every reporting GPU are analysed and decided.
    svc = PowerService(PowerSettings(allowed_swing_percent=20.0), [Gpu(g) for g in range(4)])
    samples = [s for s in stream(0.1, 60.0) if s.gpu != 3 or s.nvml_timestamp_us / 1e6 < START + 10.0]
    svc.add_samples(samples)
    st = svc.tick(START + 61.0)
    assert set(st.gpus) == {0, 1, 2}
    assert st.node is not None and st.node.swing_watts > 600.0
    assert st.decision is not None and set(st.decision.gpus) == {0, 1, 2}
    assert all(d.allowed_swing_watts > 0 for d in st.decision.gpus.values())
    # While its last readings are still inside the window, the lost GPU does not hide the node.
    svc = PowerService(PowerSettings(allowed_swing_percent=20.0), [Gpu(g) for g in range(4)])
    svc.add_samples([s for s in samples if s.nvml_timestamp_us / 1e6 < START + 25.0])
    st = svc.tick(START + 25.0)
    assert st.node is not None and st.node.duration_seconds > 20.0
    assert st.decision is not None and {0, 1, 2} <= set(st.decision.gpus)


def test_decisions_are_logged_once_when_they_change(caplog) -> None:
    svc = PowerService(PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0),
                       [Gpu(g) for g in range(4)], clock=lambda: START)
    samples = stream(40.0, 30.0)
    next_tick = START + 1.0
    with caplog.at_level("INFO", logger="rasd.power"):
        for s in samples:
            t = s.nvml_timestamp_us / 1e6
            while t >= next_tick:
                svc.tick(next_tick)
                next_tick += 1.0
            svc.add_samples([s])
    lines = [r.getMessage() for r in caplog.records if "event=power_decision" in r.getMessage()]
    modes = [line.split("mode=")[1].split()[0] for line in lines]
    assert modes[0] == "none" and "floor" in modes  # calm, then the swing: one line each
    assert len(lines) < 6  # logged on change, not every one of the 70 ticks
    assert all(modes[k] != modes[k + 1] or lines[k] != lines[k + 1] for k in range(len(lines) - 1))
    floor = next(line for line in lines if "mode=floor" in line)
    assert "gpu0_floor_watts=" in floor and "previous=none" in floor and "reason=" in floor


def _modes(settings: PowerSettings, samples) -> list[tuple[float, str, tuple]]:
    svc = PowerService(settings, [Gpu(g) for g in range(4)], clock=lambda: START)
    out = []
    next_tick = START + 1.0
    for s in samples:
        t = s.nvml_timestamp_us / 1e6
        while t >= next_tick:
            d = svc.tick(next_tick).decision
            assert d is not None
            out.append((next_tick, d.mode.label, tuple((g, x.floor_watts) for g, x in sorted(d.gpus.items()))))
            next_tick += 1.0
        svc.add_samples([s])
    return out


def test_full_analysis_every_few_seconds_decides_as_every_tick(monkeypatch) -> None:
    # Calm, then a swing: escalation is checked every tick, so the decisions (modes and floors,
    # tick by tick) are those of analysing every second, at a fraction of the analyses.
    import rasd.power.service as service

    calls = []
    real = service.analyze_window
    monkeypatch.setattr(service, "analyze_window", lambda *a, **k: calls.append(1) or real(*a, **k))
    samples = stream(40.0, 30.0)
    base = PowerSettings(allowed_swing_percent=20.0, energy_budget_percent=30.0)
    every = _modes(dataclasses.replace(base, analysis_seconds=1e-6), samples)
    every_calls = len(calls)
    calls.clear()
    cadence = _modes(base, samples)
    assert [m for m in cadence] == [m for m in every]
    assert {m[1] for m in every} == {"none", "floor"}
    assert len(calls) < every_calls / 2  # every tick until 15 s of readings, then every 5 s
