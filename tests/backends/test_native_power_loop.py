"""The native power loop (rasd/backends/nvml/_powerloop.c) against a C field reader compiled here
with NVIDIA's nvml.h (``native_reader.c``): results in order with their times, a hung read given
up while the other GPUs go on, the GPU read again once its call returns, and a library built
with another layout refused."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path

import pytest

from rasd.backends.nvml.powerloop import NativeLoop, NativeReads, load
from tests.contract.mocknvml import gcc_and_nvml_header
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "rasd" / "backends" / "nvml" / "_powerloop.c"
READER = Path(__file__).with_name("native_reader.c")
FIELD = 186


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ctypes.CDLL]:
    gcc, header = gcc_and_nvml_header()
    out = tmp_path_factory.mktemp("native")
    loop_lib, reader_lib = out / "_powerloop.so", out / "reader.so"
    for args in (
        ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(loop_lib), str(SOURCE), "-lpthread"],
        ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{header.parent}", "-o", str(reader_lib), str(READER)],
    ):
        r = subprocess.run([gcc, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    reader = ctypes.CDLL(str(reader_lib))
    reader.read_count.restype = ctypes.c_longlong
    return loop_lib, reader


def _field_struct() -> type:
    pynvml = pytest.importorskip("pynvml")
    return pynvml.c_nvmlFieldValue_t


def _loop(built: tuple[Path, ctypes.CDLL], n: int, interval: float = 0.01, queue_seconds: float = 8.0) -> NativeLoop[str]:
    path, reader = built
    lib = load(str(path), _field_struct())
    assert lib is not None
    fn = ctypes.cast(reader.read_fields, ctypes.c_void_p).value
    assert fn is not None
    reads = NativeReads(lib, fn, tuple(range(1, n + 1)), FIELD)
    return NativeLoop("power", [f"gpu{i}" for i in range(n)], reads, interval, deadline=0.2, queue_seconds=queue_seconds)


def _power_threads() -> int:
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            n += Path(f"/proc/self/task/{tid}/comm").read_text().strip() == "rasd-power"
        except FileNotFoundError:
            pass
    return n


def test_every_gpu_is_read_each_round_in_order_with_the_times_it_returned(built):
    path, reader = built
    reader.set_hang(-1), reader.set_lost(-1)
    loop = _loop(built, 3)
    t0_mono, t0_wall = time.monotonic(), time.time()
    loop.start()
    try:
        time.sleep(0.25)
        got = loop.drain()
    finally:
        loop.stop()
        loop.join(1.0)
    t1_mono, t1_wall = time.monotonic(), time.time()
    assert len(got) >= 3 * 10
    by_gpu: dict[int, list[tuple]] = {}
    for rec in got:
        by_gpu.setdefault(rec[0], []).append(rec)
    assert sorted(by_gpu) == [0, 1, 2]
    for pos, recs in by_gpu.items():
        stamps = [r[5] for r in recs]
        assert stamps == list(range(stamps[0], stamps[0] + len(stamps)))  # none lost, in order
        for _, ret, of_call, mono_ns, wall_ns, stamp, value in recs:
            assert (ret, of_call) == (0, 0)
            assert value == (pos + 1) * 100000 + stamp  # the entry's unsigned int, as a number
            assert t0_mono <= mono_ns / 1e9 <= t1_mono and t0_wall - 0.01 <= wall_ns / 1e9 <= t1_wall + 0.01
        monos = [r[3] for r in recs]
        assert monos == sorted(monos)
    # a round every interval: about 25 in 0.25 s (a late wake-up skips, never bursts)
    assert 10 <= len(by_gpu[0]) <= 30


def test_a_hung_read_is_given_up_and_the_other_gpus_go_on_then_it_comes_back(built):
    path, reader = built
    reader.set_lost(-1)
    reader.set_hang(2)  # the second GPU's next read blocks
    loop = _loop(built, 3)
    before = _power_threads()
    loop.start()
    try:
        assert eventually(lambda: loop.check() is not None, 3.0)
        assert loop.hung() == frozenset({"gpu1"}) and loop.abandoned == 1
        assert _power_threads() == before + 2  # the abandoned thread, still in its read, and the new one
        loop.drain()
        counts = [reader.read_count(d) for d in (1, 2, 3)]
        time.sleep(0.2)
        got = loop.drain()
        assert {r[0] for r in got} == {0, 2}  # the others are read; the hung GPU is not asked again
        assert reader.read_count(1) > counts[0] + 5 and reader.read_count(3) > counts[2] + 5
        assert reader.read_count(2) == counts[1]
        reader.set_hang(-1)  # the driver lets the call return
        assert eventually(lambda: (loop.check(), loop.hung())[1] == frozenset(), 3.0)
        assert eventually(lambda: _power_threads() == before + 1, 3.0)  # the abandoned one exited
        loop.drain()
        time.sleep(0.1)
        assert {r[0] for r in loop.drain()} == {0, 1, 2}
    finally:
        reader.set_hang(-1)
        loop.stop()
        loop.join(1.0)
    assert eventually(lambda: _power_threads() == before, 2.0)


def test_an_entry_error_is_handed_over_with_its_code(built):
    path, reader = built
    reader.set_hang(-1)
    reader.set_lost(1)
    loop = _loop(built, 2)
    loop.start()
    try:
        time.sleep(0.1)
        got = loop.drain()
    finally:
        reader.set_lost(-1)
        loop.stop()
        loop.join(1.0)
    lost = [r for r in got if r[0] == 0]
    assert lost and all(r[1] == 15 and r[2] == 0 and r[6] == 0.0 for r in lost)  # NVML_ERROR_GPU_IS_LOST
    assert all(r[1] == 0 for r in got if r[0] == 1)


def test_a_library_built_with_another_layout_is_refused(built):
    path, _ = built

    class Wider(ctypes.Structure):
        _fields_ = [(name, typ) for name, typ in _field_struct()._fields_] + [("extra", ctypes.c_int64)]

    assert load(str(path), Wider) is None
    assert load(str(path), _field_struct()) is not None


def _overflowing(built: tuple[Path, ctypes.CDLL], beyond: int) -> NativeLoop[str]:
    """A loop of 2 GPUs at 1 kHz whose 0.5 s queue (1,000 reads) nobody took, started and left
    running until ``beyond`` more reads than that were made."""
    path, reader = built
    reader.set_hang(-1), reader.set_lost(-1)
    loop = _loop(built, 2, interval=0.001, queue_seconds=0.5)
    base = reader.read_count(1) + reader.read_count(2)
    loop.start()
    assert eventually(lambda: reader.read_count(1) + reader.read_count(2) - base > 1000 + beyond, 10.0)
    return loop


def test_reads_nobody_takes_are_dropped_and_counted_not_queued_without_bound(built):
    # the queue holds queue_seconds of reads at the loop's rate: 1,000 here
    capacity = 1000
    loop = _overflowing(built, beyond=200)
    try:
        got = loop.drain()
    finally:
        loop.stop()
        loop.join(1.0)
    # what was queued, plus what came in while it was taken; the rest was dropped and counted
    assert capacity <= len(got) < capacity + 200 and loop.dropped >= 100


def test_a_new_queue_size_takes_over_without_losing_a_read(built):
    path, reader = built
    reader.set_hang(-1), reader.set_lost(-1)
    loop = _loop(built, 2, interval=0.002)
    loop.start()
    got = []
    try:
        time.sleep(0.1)
        got += loop.drain()
        loop.resize(20.0)
        assert loop.queue_seconds == 20.0
        time.sleep(0.1)
        assert eventually(lambda: (got.extend(loop.drain()), not loop._abandoned)[1], 2.0)
        time.sleep(0.05)
    finally:
        loop.stop()
        loop.join(1.0)
    got += loop.drain()
    for pos in (0, 1):
        stamps = sorted(r[5] for r in got if r[0] == pos)
        # every read either runner made was taken, the old runner's last one included
        assert stamps == list(range(stamps[0], stamps[0] + len(stamps))) and len(stamps) > 40


def test_where_no_new_thread_can_start_the_hung_reader_is_kept_and_nothing_freed(built):
    path, reader = built
    reader.set_lost(-1)
    loop = _loop(built, 2)
    loop.start()
    try:
        reader.set_hang(1)
        time.sleep(0.05)
        # a reader whose thread cannot start (pl_start refuses a null function)
        loop.reads = NativeReads(loop.reads.lib, 0, loop.reads.devices, FIELD)
        time.sleep(0.3)
        assert loop.check() is None and loop.hung() == frozenset() and loop.abandoned == 0
        reader.set_hang(-1)
        time.sleep(0.05)
        assert loop.drain()  # the same reader goes on once the call returns
    finally:
        reader.set_hang(-1)
        loop.stop()
        loop.join(1.0)


def test_the_native_reads_are_judged_by_the_handles_error_rules():
    from rasd.backends import open_backend
    from rasd.telemetry.power import PowerSampler

    be = open_backend("fake", gpus=2)
    try:
        samples: list = []
        s = PowerSampler(be.adapter.gpus(), 12.5, samples.extend)
        g = s._gpus[0]
        t = time.monotonic_ns()

        def take(ret: int, of_call: int, mono_ns: int, stamp_us: int, value: float) -> None:
            samples.extend(s._judge([(0, ret, of_call, mono_ns, time.time_ns(), stamp_us, value)]))

        take(0, 0, t, 1_000, 250_000.0)  # 250 W
        assert not g.lost and g.latest is not None and g.latest.watts == 250.0
        take(15, 0, t + 80_000_000, 0, 0.0)  # the entry: GPU_IS_LOST
        assert g.lost
        take(999, 0, t + 160_000_000, 0, 0.0)  # unknown: counted, not lost
        assert not g.lost and g.failures == 0
        assert sum(n for (reading, _), n in g.handle._errors.items() if reading == "power_instant") == 1
        take(15, 1, t + 240_000_000, 0, 0.0)  # the whole call: GPU_IS_LOST
        assert g.lost
        take(0, 0, t + 320_000_000, 1_100, 260_000.0)  # it answers again
        assert not g.lost and g.latest.watts == 260.0 and g.reads == 5
        assert [x.watts for x in samples] == [250.0, 260.0]
    finally:
        be.close()


def test_a_native_reader_that_cannot_start_leaves_the_sampler_reading_from_python(built):
    from rasd.backends import open_backend
    from rasd.telemetry.power import PowerSampler

    path, _ = built
    lib = load(str(path), _field_struct())
    be = open_backend("fake", gpus=2)
    samples: list = []
    s = PowerSampler(be.adapter.gpus(), 12.5, samples.extend,
                     native=NativeReads(lib, 0, (1, 2), FIELD))  # pl_start refuses a null function
    try:
        assert s.native
        s.start()
        assert not s.native and not isinstance(s.loop, NativeLoop)
        assert eventually(lambda: {x.gpu for x in samples} == {0, 1}, 3.0)
    finally:
        s.stop()
        s.join(1.0)
        be.close()


def test_reads_a_replaced_runner_dropped_are_counted(built):
    """Reads the old runner dropped before it was replaced (its queue full, nobody draining)
    count as dropped, as the current runner's do."""
    loop = _overflowing(built, beyond=300)
    try:
        loop.resize(10.0)  # nothing was drained since the start: the old runner's drops go with it
        loop.drain()
    finally:
        loop.stop()
        loop.join(1.0)
    assert loop.dropped >= 200


def test_a_resize_whose_thread_cannot_start_keeps_the_old_runner_and_is_asked_again(built):
    path, reader = built
    reader.set_hang(-1), reader.set_lost(-1)
    loop = _loop(built, 2, queue_seconds=8.0)
    loop.start()
    good = loop.reads
    try:
        first = loop._runner
        loop.reads = NativeReads(good.lib, 0, good.devices, FIELD)  # pl_start refuses a null function
        with pytest.raises(OSError):
            loop.resize(20.0)
        assert loop.queue_seconds == 8.0 and loop._runner == first  # so a later pass asks again
        loop.reads = good
        loop.resize(20.0)
        assert loop.queue_seconds == 20.0 and loop._runner != first
        time.sleep(0.05)
        assert loop.drain()
    finally:
        loop.reads = good
        loop.stop()
        loop.join(1.0)


def test_reads_of_a_runner_and_the_one_that_replaced_it_come_in_the_order_they_returned(built):
    """For a moment after a resize both runners read every GPU: one drain hands over each GPU's
    reads in the order they returned, never the old runner's all before the new one's."""
    path, reader = built
    reader.set_hang(-1), reader.set_lost(-1)
    loop = _loop(built, 4, interval=0.0005)
    loop.start()
    batches = []
    try:
        for i in range(60):
            time.sleep(0.002)
            loop.resize(8.0 + (i % 2))
            batches.append(loop.drain())
        assert eventually(lambda: (batches.append(loop.drain()), not loop._abandoned)[1], 2.0)
    finally:
        loop.stop()
        loop.join(1.0)
    assert sum(len(b) for b in batches) > 200
    for b in batches:
        returned = [r[3] for r in b]
        assert returned == sorted(returned)
