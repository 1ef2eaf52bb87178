"""Shared GPU loops: one thread per loop, a hung call abandoned and replaced, never doubled."""

from __future__ import annotations

import threading
import time

import pytest

from rasd.telemetry.loops import GpuLoop, Watchdog
from rasd.telemetry.poller import GpuPoller, health_loops


def _wait_for(cond, seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_a_hung_item_is_abandoned_and_the_rest_keep_going():
    release = threading.Event()
    visits: dict[int, int] = {i: 0 for i in range(5)}
    inside: dict[int, int] = {i: 0 for i in range(5)}
    overlap = []

    def work(i: int) -> None:
        inside[i] += 1
        if inside[i] > 1:
            overlap.append(i)
        try:
            if i == 1 and visits[1] == 0:
                release.wait(5)
            visits[i] += 1
        finally:
            inside[i] -= 1

    loop = GpuLoop("t", list(range(5)), work, interval=0.02, deadline=0.1)
    other = GpuLoop("other", [], lambda i: None, interval=0.05, deadline=1.0)  # as a health loop
    Watchdog([loop, other]).attach()
    base = threading.active_count()
    loop.start()
    other.start()
    try:
        assert _wait_for(lambda: loop.hung() == frozenset({1}))
        assert _wait_for(lambda: min(visits[i] for i in (0, 2, 3, 4)) >= 10)
        assert visits[1] == 0
        assert threading.active_count() - base == 3  # the two loops and the abandoned call
        release.set()
        assert _wait_for(lambda: visits[1] >= 3)
        assert loop.hung() == frozenset()
        assert _wait_for(lambda: threading.active_count() - base == 2)
        assert overlap == [], "two threads worked on one item at once"
        assert loop.abandoned == 1
    finally:
        release.set()
        for lp in (loop, other):
            lp.stop()
        for lp in (loop, other):
            lp.join(2)


def test_a_call_within_the_deadline_is_left_alone():
    loop = GpuLoop("t", [0], lambda i: time.sleep(0.05), interval=0.01, deadline=0.5)
    loop.start()
    try:
        time.sleep(0.3)
        for _ in range(10):
            assert loop.check() is None
        assert loop.abandoned == 0
    finally:
        loop.stop()
        loop.join(2)


def test_a_failing_item_does_not_stop_the_loop():
    seen = []

    def work(i: int) -> None:
        if i == 0:
            raise RuntimeError("broken reading")
        seen.append(i)

    loop = GpuLoop("t", [0, 1], work, interval=0.01, deadline=1.0)
    loop.start()
    try:
        assert _wait_for(lambda: len(seen) >= 5)
        assert loop.failures >= 5
    finally:
        loop.stop()
        loop.join(2)


def test_health_loops_do_not_grow_one_per_gpu(fake):
    for gpus, loops in ((1, 1), (8, 1), (16, 1), (17, 2), (64, 4)):
        be = fake(gpus=gpus)
        pollers = [GpuPoller(g, 1.0, 2.0) for g in be.adapter.gpus()]
        got = health_loops(pollers, 1.0, 2.0)
        assert len(got) == loops
        assert sorted(p.index for lp in got for p in lp.items) == list(range(gpus))


def test_a_loop_set_apart_by_a_phase_runs_its_first_round_at_once_and_the_next_that_late():
    started: list[float] = []
    loop = GpuLoop("t", [0], lambda i: started.append(time.monotonic()), interval=0.05, deadline=1.0, phase=0.3)
    t0 = time.monotonic()
    loop.start()
    try:
        assert _wait_for(lambda: len(started) >= 3)
        assert started[0] - t0 < 0.2  # every GPU's first reading at once
        assert started[1] - t0 >= 0.35  # then phase + interval after the start
        assert 0.02 <= started[2] - started[1] <= 0.2
    finally:
        loop.stop()
        loop.join(2)


def test_health_loops_start_their_rounds_apart(fake):
    be = fake(gpus=64)
    pollers = [GpuPoller(g, 2.0, 4.0) for g in be.adapter.gpus()]
    got = health_loops(pollers, 2.0, 4.0)
    assert [lp.phase for lp in got] == [0.0, 0.5, 1.0, 1.5]


def _daemon(fake, tmp_path, gpus, text=None, native=True):
    from dataclasses import replace

    from exporters.prometheus import serve
    from rasd import config
    from rasd.daemon import Daemon
    from tests.e2e.helpers import free_port

    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, listen=f"127.0.0.1:{free_port()}", state_path=str(tmp_path / f"s{gpus}.db"),
                       control_socket=str(tmp_path / f"c{gpus}.sock")),
        telemetry=replace(cfg.telemetry, kernel_log="", poll_deadline_seconds=0.5, native_power_reads=native),
    )
    return Daemon(cfg, fake(text, gpus=gpus), hostname="t", serve_metrics=serve)


def test_daemon_threads_do_not_grow_with_gpus(fake, tmp_path):
    counts = {}
    for gpus in (8, 64):
        before = threading.active_count()
        d = _daemon(fake, tmp_path, gpus)
        d.start()
        try:
            time.sleep(0.3)
            counts[gpus] = threading.active_count() - before
        finally:
            d.stop()
    # health loops grow by one per 16 GPUs (at most 4); nothing grows per GPU
    assert counts[64] - counts[8] == 3, counts
    assert counts[8] <= 8, counts


@pytest.mark.parametrize("native", [True, False])
def test_daemon_hung_poll_marks_only_its_gpu_stale(fake, tmp_path, native):
    d = _daemon(fake, tmp_path, 8, """
        [[event]]
        kind = "nvml_hang"
        at = 0
        gpu = 4
        function = "nvmlDeviceGetTotalEccErrors"
        seconds = 3
        calls = 1
        """, native=native)
    d.start()
    try:
        time.sleep(0.2)
        first = {p.index: p.seq for p in d.pollers}

        def others_polled() -> bool:
            # natively read power: the main loop's pass gives up the hung poll; read from
            # Python: the power loop's next round does, with no main loop
            if native:
                d.watchdog.check()
            return all(p.seq >= first[p.index] + 2 for p in d.pollers if p.index != 4)

        assert _wait_for(others_polled, 4.0)
        snap = d.tick()
        health = {g.index: g.health.value for g in snap.gpus}
        assert health[4] == "stale" and all(h == "up" for i, h in health.items() if i != 4), health
        assert all(g.power_watts is not None for g in snap.gpus)
    finally:
        d.stop()
        # the abandoned thread ends when its 3 s call returns: let it, so that later tests that
        # count threads do not see it leave in the middle of their count
        _wait_for(lambda: not any(t.name.startswith("rasd-health") for t in threading.enumerate()), 5.0)


def test_each_loop_gives_up_the_others_hung_calls_at_its_rounds_and_no_sooner():
    now = [100.0]
    sampler = GpuLoop("power", [0, 1], lambda i: None, interval=0.08, deadline=0.25, clock=lambda: now[0])
    health = GpuLoop("health", [0], lambda i: None, interval=1.0, deadline=2.0, clock=lambda: now[0])
    dog = Watchdog([sampler, health], clock=lambda: now[0])
    dog.attach()
    assert sampler.before_round == dog.check and health.before_round == dog.check
    spawned = []
    sampler._spawn = lambda pos, next_at: spawned.append(pos)  # no thread for this check
    # a power read in flight for 0.2 s: inside its deadline, a health round leaves it alone
    sampler._current = (sampler._gen, 1, now[0] - 0.2)
    assert health.before_round(now[0]) == []
    # past its deadline, the next health round (or main-loop pass) gives it up, once
    now[0] += 0.06
    assert health.before_round(now[0]) == [("power", 1)]
    assert spawned == [2] and sampler.abandoned == 1 and sampler.hung() == frozenset({1})
    assert dog.check() == []
    # nothing in flight: nothing to give up
    assert sampler.check(now[0] + 100) is None


@pytest.mark.parametrize("native", [True, False])
def test_the_daemon_runs_no_watchdog_thread(fake, tmp_path, native):
    if native:
        from rasd.backends.fake import instant
        from rasd.backends.nvml import pynvml_module

        if instant.load(pynvml_module()) is None:
            pytest.skip("the fake's native reader was not built here (pip install builds it with a C compiler)")
    d = _daemon(fake, tmp_path, 4, native=native)
    d.start()
    try:
        names = {t.name for t in threading.enumerate()}
        assert "rasd-watchdog" not in names and "rasd-health0" in names
        assert d.sampler.native is native
        # the native power reader is no Python thread: the health rounds and the main loop check it
        assert ("rasd-power" in names) is not native
        python_loops = d.health if native else (*d.health, d.sampler.loop)
        assert all(lp.before_round == d.watchdog.check for lp in python_loops)
        assert d.sampler.loop in d.watchdog.loops
    finally:
        d.stop()
