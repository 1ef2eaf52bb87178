"""Benchmark of the fake NVML backend: simulation cost and call latency. Prints figures only.

    python tests/bench/bench_backends.py
"""

from __future__ import annotations

import statistics
import time

from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.nvml import NvmlAdapter, pynvml_module
from rasd.backends.fake.scenario import load_scenario, packaged_scenarios


def _node(clock: ManualClock, **kw) -> tuple[FakeNode, FakeNvml]:
    node = FakeNode(clock=clock, **kw)
    lib = FakeNvml(node, pynvml_module())
    lib.nvmlInit()
    return node, lib


def bench_simulation() -> None:
    clock = ManualClock(0.0)
    node, _ = _node(clock)
    simulated = 120.0
    clock.advance(simulated)
    t0 = time.perf_counter()
    for g in range(node.gpu_count):
        node.sim(g)
    took = time.perf_counter() - t0
    steps = simulated / 0.005 * node.gpu_count
    print(f"power model: {simulated:.0f} s x {node.gpu_count} GPUs in {took:.2f} s "
          f"({took / steps * 1e6:.2f} us per GPU-step, {simulated / took:.0f}x real time for the node)")


def bench_calls() -> None:
    clock = ManualClock(0.0)
    node, lib = _node(clock)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    for name, fn in (
        ("field 186", lambda: lib.nvmlDeviceGetFieldValues(h, [186])),
        ("nvmlDeviceGetPowerUsage", lambda: lib.nvmlDeviceGetPowerUsage(h)),
        ("nvmlDeviceGetTotalEccErrors", lambda: lib.nvmlDeviceGetTotalEccErrors(h, 0, 0)),
    ):
        n = 20_000
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        print(f"{name}: {(time.perf_counter() - t0) / n * 1e6:.1f} us per call")


def bench_adapter_poll(scenario: str) -> None:
    clock = ManualClock(0.0)
    node, lib = _node(clock, scenario=load_scenario(scenario))
    adapter = NvmlAdapter(lib)
    adapter.open()
    gpus = adapter.gpus()
    took = []
    for _ in range(20):
        clock.advance(1.0)
        t0 = time.perf_counter()
        for g in gpus:
            try:
                g.poll()
            except Exception:  # noqa: BLE001 - a lost GPU is part of some scenarios
                pass
        took.append(time.perf_counter() - t0)
    print(f"adapter health poll of {len(gpus)} GPUs ({scenario}): median {statistics.median(took) * 1e3:.1f} ms "
          f"(includes 1 s of simulation per round)")


def bench_sampler() -> None:
    """A 20 Hz instant-power reader on 8 GPUs: distinct updates per second and cost."""
    clock = ManualClock(0.0)
    node, lib = _node(clock)
    handles = [lib.nvmlDeviceGetHandleByIndex(g) for g in range(node.gpu_count)]
    stamps: list[set[int]] = [set() for _ in handles]
    t0 = time.perf_counter()
    for _ in range(20 * 30):
        for g, h in enumerate(handles):
            stamps[g].add(int(lib.nvmlDeviceGetFieldValues(h, [186])[0].timestamp))
        clock.advance(0.05)
    took = time.perf_counter() - t0
    rate = statistics.mean(len(s) / 30.0 for s in stamps)
    print(f"20 Hz sampler, 8 GPUs, 30 s simulated: {rate:.2f} distinct updates/s per GPU, {took:.2f} s wall")


def bench_parse() -> None:
    names = packaged_scenarios()
    t0 = time.perf_counter()
    for _ in range(50):
        for n in names:
            load_scenario(n)
    print(f"scenario load: {(time.perf_counter() - t0) / (50 * len(names)) * 1e3:.2f} ms each ({len(names)} packaged)")


if __name__ == "__main__":
    bench_simulation()
    bench_calls()
    bench_sampler()
    bench_adapter_poll("healthy")
    bench_adapter_poll("chaos")
    bench_parse()
