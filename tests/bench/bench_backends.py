"""Benchmark of the fake NVML backend: simulation cost and call latency. Prints figures only.

    python tests/bench/bench_backends.py [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.nvml import NvmlAdapter, pynvml_module
from rasd.backends.fake.scenario import load_scenario, packaged_scenarios

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import results  # noqa: E402


def _node(clock: ManualClock, **kw) -> tuple[FakeNode, FakeNvml]:
    node = FakeNode(clock=clock, **kw)
    lib = FakeNvml(node, pynvml_module())
    lib.nvmlInit()
    return node, lib


def bench_simulation(rec: results.Recorder) -> None:
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
    rec.add("backends.sim_step", "fake power model, per GPU per 5 ms step", took / steps * 1e6, "us",
            text=f"{took / steps * 1e6:.2f} us")


def bench_calls(rec: results.Recorder) -> None:
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
        us = (time.perf_counter() - t0) / n * 1e6
        print(f"{name}: {us:.1f} us per call")
        rec.add(f"backends.call.{name.replace(' ', '_')}", f"fake NVML call: {name}", us, "us", text=f"{us:.1f} us")


def bench_adapter_poll(scenario: str, rec: results.Recorder) -> None:
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
    rec.add(f"backends.adapter_poll.{scenario}", f"adapter health poll of all GPUs, {scenario} scenario (with 1 s of simulation)",
            statistics.median(took) * 1e3, "ms", text=f"{statistics.median(took) * 1e3:.1f} ms ({len(gpus)} GPUs)")


def bench_sampler(rec: results.Recorder) -> None:
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
    rec.add("backends.sampler_rate", "a bare 20 Hz field-186 reader, 8 GPUs: distinct updates a GPU a second", rate,
            "updates/s", text=f"{rate:.2f} (NVML refreshes 10)")


def bench_parse(rec: results.Recorder) -> None:
    names = packaged_scenarios()
    t0 = time.perf_counter()
    for _ in range(50):
        for n in names:
            load_scenario(n)
    ms = (time.perf_counter() - t0) / (50 * len(names)) * 1e3
    print(f"scenario load: {ms:.2f} ms each ({len(names)} packaged)")
    rec.add("backends.scenario_load", "scenario file load", ms, "ms", text=f"{ms:.2f} ms ({len(names)} packaged)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    results.add_arguments(ap)
    rec = results.Recorder("backends", ap.parse_args())
    print(rec.machine())
    bench_simulation(rec)
    bench_calls(rec)
    bench_sampler(rec)
    bench_adapter_poll("healthy", rec)
    bench_adapter_poll("chaos", rec)
    bench_parse(rec)
    rec.save()
