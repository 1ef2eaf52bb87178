"""The fake node's instant-power field for the native power reader (rasd/backends/fake/instant.py,
``fk_*`` in _powerstep.c): the same answers as the Python model to the bit, across limit changes
and power smoothing; scripted faults, lost GPUs and an uninitialised library answered through
Python; a hung read given up while the other GPUs go on; a daemon on the fake reading natively."""

from __future__ import annotations

import ctypes
import random
import time
from typing import Any, Callable

import pytest

from rasd.backends.fake import instant
from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake.node import FakeNode
from rasd.backends.fake.nvml import FakeNvml
from rasd.backends.nvml import pynvml_module
from rasd.telemetry.loops import GpuLoop, Watchdog
from rasd.telemetry.power import PowerSampler
from tests.sinks import CountingSink, gpu2_hung
from tests.waiting import eventually

FIELD = 186


@pytest.fixture
def lib(base: Any) -> ctypes.CDLL:
    got = instant.load(base)
    if got is None:
        pytest.skip("rasd was not built here with a C compiler (pip install runs it where one is present)")
    return got


def _board(lib: ctypes.CDLL, base: Any, node: FakeNode, gpu: int, eligible: bool = True) -> instant.Board:
    nvml = FakeNvml(node, base)
    nvml.nvmlInit()
    sim = node.model(gpu)
    board = instant.Board(lib, nvml, gpu, FIELD, sim.refresh_offset, node.start, node.wall(0.0))
    sim.attach(board, eligible)
    return board


def _want(node: FakeNode, gpu: int) -> tuple[int, int, int]:
    mw, at = node.instant_power(gpu)
    return round(at / 0.005), mw & 0xFFFF_FFFF, int(round((node.wall(0.0) + at) * 1_000_000))


def test_native_answers_are_the_models_to_the_bit(lib: ctypes.CDLL, base: Any) -> None:
    """Two nodes alike, one publishing to boards: at random read times, with the model stepped at
    uneven times, limits changed (below the draw and back) and smoothing switched on and off,
    every native answer equals the other node's Python answer; most reads are answered natively."""
    clocks = (ManualClock(), ManualClock())
    published, twin = (FakeNode(gpu_count=3, seed=11, clock=c, wall_clock=lambda: 1.7e9 + 0.5) for c in clocks)
    boards = [_board(lib, base, published, g) for g in range(3)]
    rng = random.Random(5)
    t, native = 0.0, 0
    for i in range(3000):
        t += rng.choice([0.0007, 0.004, 0.011, 0.08, 0.35])
        for c in clocks:
            c.set(t)
        g = rng.randrange(3)
        if i % 250 == 100:
            watts = rng.choice([180.0, 320.0, 700.0])
            for node in (published, twin):
                node.set_power_limit(g, watts)
        if i % 700 == 400:
            on = not published.smoothing_enabled[g]
            for node in (published, twin):
                node.smoothing_enabled[g] = on
                node.apply_smoothing(g)
        if rng.random() < 0.1:
            published.sim(g)  # steps the model to now and publishes, as a health poll does
        got = boards[g].value_at(published.elapsed())
        if got is None:
            published.instant_power(g)  # what the fallback does
            if not published.smoothing_enabled[g]:  # the model's answer is handed to the board
                assert boards[g].value_at(published.elapsed()) == _want(twin, g)
        else:
            native += 1
            assert published.smoothing_enabled[g] is False
        assert (got or _want(published, g)) == _want(twin, g), f"read {i} at {t:.4f} s, GPU {g}"
    assert native > 2000


def test_the_loader_refuses_a_reader_that_disagrees(lib: ctypes.CDLL, base: Any) -> None:
    class IgnoresLimits:
        """The built library, but limit changes never reach the reader."""

        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        @staticmethod
        def fk_limit(g: Any, frm: int, limit: float, forget: int, known: int, r: int, mw: int) -> None:
            if frm < 0:
                lib.fk_limit(g, frm, limit, forget, known, r, mw)

    why = instant._disagrees(IgnoresLimits(), base)  # type: ignore[arg-type]
    assert why is not None and "C gives" in why
    assert instant._disagrees(lib, base) is None


def test_a_change_sends_reads_to_the_model_until_it_is_published(lib: ctypes.CDLL, base: Any) -> None:
    """A limit or smoothing change turns native answers off before it takes the time of the
    change, and on again once published: a native read answered meanwhile cannot be for a
    refresh after the change with the rules from before it."""
    clock = ManualClock(3.0)
    node = FakeNode(gpu_count=1, seed=3, clock=clock)
    board = _board(lib, base, node, 0)
    sim = node.model(0)
    order: list[str] = []
    plain, limit = board.plain, board.limit

    def logged_plain(on: bool) -> None:
        order.append(f"plain {on}")
        plain(on)

    def logged_limit(*args: Any, **kw: Any) -> None:
        assert board.value_at(node.elapsed()) is None  # reads meanwhile go to the model
        order.append("limit")
        limit(*args, **kw)

    def now() -> float:
        order.append("now")
        return node.elapsed()

    board.plain, board.limit = logged_plain, logged_limit  # type: ignore[method-assign]
    sim.set_limit(300.0, now)
    assert order == ["plain False", "now", "limit", "plain True"]
    order.clear()
    sim.set_smoothing(type(sim.smoothing)(enabled=True), now)
    assert order == ["plain False", "now", "limit", "plain False"]  # smoothing on: the model answers
    assert board.value_at(node.elapsed()) is None


def test_the_fallback_reads_with_the_handle_opened_at_start(lib: ctypes.CDLL, base: Any) -> None:
    """A fault scripted on nvmlDeviceGetHandleByIndex after start does not reach the power reads,
    as it does not reach the Python sampler's (both read with the handle opened at start)."""
    node = FakeNode(gpu_count=2, seed=4, scenario=_scenario(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetHandleByIndex"
        error = "no_permission"
        """))
    nvml = FakeNvml(node, base)
    nvml.nvmlInit()
    got = nvml.native_field_reader([0, 1], FIELD)
    assert got is not None
    assert _read(lib, base, got[1][1])[0] == 0
    with pytest.raises(base.NVMLError_NoPermission):
        nvml.nvmlDeviceGetHandleByIndex(1)


def test_the_native_reads_hold_the_memory_they_read(fake: Callable[..., Any]) -> None:
    """The boards behind a native reader's devices live as long as its reads, even where the
    fake backend is closed and dropped first (a runner still reading would read freed memory)."""
    import gc

    be = fake(None, gpus=2)
    native = be.adapter.native_power(be.adapter.gpus())
    if native is None:
        pytest.skip("rasd was not built here with a C compiler")
    addresses = set(native.devices)
    be.close()
    del be
    gc.collect()
    assert addresses <= set(instant._boards)
    assert [b.address for b in native.keep] == list(native.devices)


def _read(lib: ctypes.CDLL, base: Any, device: int) -> tuple[int, Any]:
    values = (base.c_nvmlFieldValue_t * 1)()
    values[0].fieldId = FIELD
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)(
        ctypes.cast(lib.fk_field_values, ctypes.c_void_p).value)
    ret = fn(device, 1, ctypes.addressof(values))
    return ret, values[0]


def _offer(lib: ctypes.CDLL, base: Any, node: FakeNode) -> tuple[FakeNvml, list[int]]:
    nvml = FakeNvml(node, base)
    nvml.nvmlInit()
    got = nvml.native_field_reader(list(range(node.gpu_count)), FIELD)
    assert got is not None
    return nvml, got[1]


def test_a_read_on_the_real_clock_is_the_models(lib: ctypes.CDLL, base: Any) -> None:
    node = FakeNode(gpu_count=2, seed=4)
    nvml, devices = _offer(lib, base, node)
    time.sleep(0.03)  # past the first refresh, which averages the start's steps (the model answers it)
    for _ in range(20):
        ret, v = _read(lib, base, devices[1])
        _, mw, stamp = _want(node, 1)
        assert ret == 0 and v.nvmlReturn == 0 and v.valueType == base.NVML_VALUE_TYPE_UNSIGNED_INT
        # the Python read comes after: the same refresh, or a later one
        assert v.timestamp < stamp or (v.timestamp, v.value.uiVal) == (stamp, mw)
        time.sleep(0.013)
    assert node.model(1).board is not None and node.model(1).board.counts() == (20, 0)


def test_scripted_events_lost_gpus_and_shutdown_answer_through_python(lib: ctypes.CDLL, base: Any, make: Callable[..., Any]) -> None:
    node = FakeNode(gpu_count=2, seed=4, scenario=_scenario(
        """
        [[event]]
        kind = "fall_off_bus"
        at = 0
        gpu = 1
        """))
    nvml, devices = _offer(lib, base, node)
    assert _read(lib, base, devices[1])[0] == base.NVML_ERROR_GPU_IS_LOST
    ret, v = _read(lib, base, devices[0])  # a quiet GPU: from the model
    assert ret == 0 and v.value.uiVal > 0
    assert node.model(1).board.counts() == (0, 1) and node.model(0).board.counts() == (1, 0)  # type: ignore[union-attr]
    nvml.nvmlShutdown()
    assert _read(lib, base, devices[0])[0] == base.NVML_ERROR_UNINITIALIZED
    nvml.nvmlInit()
    assert _read(lib, base, devices[0])[0] == 0
    assert node.model(0).board.counts() == (2, 1)  # type: ignore[union-attr]


def test_a_scripted_call_fault_sends_every_gpus_reads_through_python(lib: ctypes.CDLL, base: Any) -> None:
    node = FakeNode(gpu_count=2, seed=4, scenario=_scenario(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetFieldValues"
        error = "unknown"
        calls = 1
        """))
    _, devices = _offer(lib, base, node)
    assert _read(lib, base, devices[1])[0] == base.NVML_ERROR_UNKNOWN
    assert _read(lib, base, devices[1])[0] == 0  # its one call is spent
    assert _read(lib, base, devices[0])[0] == 0
    assert [node.model(g).board.counts() for g in (0, 1)] == [(0, 1), (0, 2)]  # type: ignore[union-attr]


def test_the_fake_offers_nothing_on_a_hand_moved_clock(lib: ctypes.CDLL, base: Any) -> None:
    node = FakeNode(gpu_count=1, clock=ManualClock())
    nvml = FakeNvml(node, base)
    nvml.nvmlInit()
    assert nvml.native_field_reader([0], FIELD) is None
    assert FakeNvml(FakeNode(gpu_count=1), base).native_field_reader([0], FIELD + 1) is None


def test_a_hung_read_is_given_up_and_the_others_go_on(lib: ctypes.CDLL, fake: Callable[..., Any]) -> None:
    """GPU 2's read hangs inside the fake (in the fallback, on the native thread): the health
    round gives it up, a new native thread reads the other seven, and GPU 2 comes back when its
    call returns."""
    be, release = gpu2_hung(fake)
    sink = CountingSink()
    gpus = be.adapter.gpus()
    native = be.adapter.native_power(gpus)
    assert native is not None
    s = PowerSampler(gpus, 20.0, sink, hang_seconds=0.2, native=native)
    health = GpuLoop("health", [], lambda i: None, interval=0.1, deadline=2.0)
    Watchdog([s.loop, health]).attach()
    s.start()
    health.start()
    try:
        def others() -> bool:
            s.drain()  # the main loop's pass
            seen = sink.counts()
            return s.hung() == frozenset({2}) and len(seen) == 7 and min(seen.values()) >= 5

        assert eventually(others, timeout=30)
        release.set()

        def back() -> bool:
            s.drain()
            return s.hung() == frozenset() and sink.counts().get(2, 0) >= 3

        assert eventually(back, timeout=30)
        assert s.loop.abandoned == 1
    finally:
        release.set()
        s.stop()
        health.stop()
        s.join(2)
        health.join(2)


def test_a_daemon_on_the_fake_reads_natively(fake: Callable[..., Any], tmp_path: Any) -> None:
    from dataclasses import replace

    from rasd import config
    from rasd.daemon import Daemon

    cfg = config.Config.default()
    cfg = replace(cfg, daemon=replace(cfg.daemon, state_path=str(tmp_path / "s.db"),
                                      control_socket=str(tmp_path / "c.sock")),
                  telemetry=replace(cfg.telemetry, kernel_log=""))
    be = fake(None, gpus=4)
    if instant.load(pynvml_module()) is None:
        pytest.skip("rasd was not built here with a C compiler (pip install runs it where one is present)")
    d = Daemon(cfg, be, hostname="t", serve_metrics=None)
    d.start()
    try:
        assert d.sampler.native

        def updates() -> bool:
            d.tick()
            return all(g.distinct_total >= 5 for g in d.sampler._gpus)

        assert eventually(updates, timeout=20)
        counts = [be.fake_node.model(g).board.counts() for g in range(4)]
        # a refresh within the first 25 ms averages the start's steps, which were never raw
        # draws: that one is answered by the model, once
        assert all(native >= 4 and fallback <= 1 for native, fallback in counts), counts
    finally:
        d.stop()


def _scenario(text: str) -> Any:
    import textwrap

    from rasd.backends.fake.scenario import parse_scenario

    return parse_scenario(textwrap.dedent(text), source="test.toml")
