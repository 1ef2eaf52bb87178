"""Benchmark of the fake NVML backend: simulation cost and call latency. Prints figures only.

    python tests/bench/bench_backends.py [--json PATH] [--against REF] [--pairs N]

``--against REF`` also measures the fake node's cost per instant-power read on the fake of a git
revision (e.g. the commit before a change to the model), in turn with this checkout's (A B A B,
each run its own process, process CPU time), and prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.nvml import NvmlAdapter, pynvml_module
from rasd.backends.fake.scenario import load_scenario, packaged_scenarios

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
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


# One process reading a fake node of N GPUs on a hand-driven clock, as rasd's daemon does: every
# GPU's instant power (field 186) every 100 ms, NVML's refresh period, and once a second the
# power readings that need the model stepped in full (average power, energy, temperature). Prints
# the process CPU per instant-power read, in us. Only the fake's public API, so it runs on the
# code of older revisions too.
_READER = """
import sys, time
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.fake.clock import ManualClock
from rasd.backends.nvml import pynvml_module
gpus, rounds = int(sys.argv[1]), int(sys.argv[2])
base = pynvml_module()
clock = ManualClock(0.0)
lib = FakeNvml(FakeNode(gpu_count=gpus, clock=clock), base)
lib.nvmlInit()
handles = [lib.nvmlDeviceGetHandleByIndex(g) for g in range(gpus)]
full = [base.NVML_FI_DEV_POWER_AVERAGE, base.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
def run(first, n):
    for i in range(first, first + n):
        clock.advance(0.1)
        for h in handles:
            lib.nvmlDeviceGetFieldValues(h, [186])
        if i % 10 == 9:
            for h in handles:
                lib.nvmlDeviceGetFieldValues(h, full)
                lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU)
run(0, 20)
t0 = time.process_time()
run(20, rounds)
print((time.process_time() - t0) / (rounds * gpus) * 1e6)
"""


def _read_cost(tree: Path, gpus: int, rounds: int) -> float:
    """us of process CPU per instant-power read, the fake of ``tree`` read as the daemon reads it."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _READER, str(gpus), str(rounds)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def _tree_of(ref: str, into: Path) -> Path:
    """The package as it was at git revision ``ref``, extracted under ``into``."""
    r = subprocess.run(["git", "-C", str(REPO), "archive", ref, "rasd"], capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"--against {ref}: git archive failed ({r.stderr.decode().strip()}); name a commit of this checkout")
    subprocess.run(["tar", "-x", "-C", str(into)], input=r.stdout, check=True)
    return into


def bench_read_cost(rec: results.Recorder, against: str | None, pairs: int) -> None:
    """The fake's cost per instant-power read: what the simulated hardware adds to every reader."""
    for gpus, rounds in ((8, 1500), (72, 200)):
        if against is None:
            cost = statistics.median(_read_cost(REPO, gpus, rounds) for _ in range(3))
            print(f"fake node read as the daemon reads it, {gpus} GPUs: {cost:.2f} us per instant-power read")
            rec.add(f"backends.read_cost.{gpus}", f"fake node read as the daemon reads it, {gpus} GPUs: CPU per "
                    "instant-power read (field 186 every 100 ms; average power, energy, temperature once a second)",
                    cost, "us", text=f"{cost:.2f} us")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            old_tree = _tree_of(against, Path(tmp))
            new, old = [], []
            for _ in range(pairs):  # in turn, so both see the same load on a shared machine
                new.append(_read_cost(REPO, gpus, rounds))
                old.append(_read_cost(old_tree, gpus, rounds))
        ratios = [o / n for n, o in zip(new, old)]
        ratio = statistics.median(ratios)
        target = results.at_least(3.0, "x", text="at least 3x cheaper")
        print(f"fake node read as the daemon reads it, {gpus} GPUs: {statistics.median(new):.2f} us per instant-power "
              f"read vs {statistics.median(old):.2f} us at {against}: {ratio:.2f}x cheaper (median of {pairs} pairs, "
              f"pair ratios {min(ratios):.2f}-{max(ratios):.2f}) [{target.text}: {'ok' if target.met(ratio) else 'MISSED'}]")
        rec.add(f"backends.read_cost.{gpus}", f"fake node read as the daemon reads it, {gpus} GPUs: CPU per "
                "instant-power read (field 186 every 100 ms; average power, energy, temperature once a second)",
                statistics.median(new), "us",
                text=f"{statistics.median(new):.2f} us vs {statistics.median(old):.2f} us before ({against[:12]}): "
                     f"{ratio:.2f}x cheaper ({pairs} pairs {min(ratios):.2f}-{max(ratios):.2f})",
                notes={"against": against, "before_us": round(statistics.median(old), 3), "ratio": round(ratio, 3)})
        rec.add(f"backends.read_cost_ratio.{gpus}", f"fake node's cost per instant-power read, {gpus} GPUs, against "
                "the model stepped at every read", ratio, "x", target=target,
                text=f"{ratio:.2f}x cheaper (median of {pairs} pairs, {min(ratios):.2f}-{max(ratios):.2f})")


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
    ap.add_argument("--against", metavar="REF", help="also measure the fake of this git revision, in turn with this one")
    ap.add_argument("--pairs", type=int, default=5, help="with --against: interleaved pairs of runs (default 5)")
    args = ap.parse_args()
    if args.pairs < 1:
        ap.error("--pairs must be at least 1")
    rec = results.Recorder("backends", args)
    print(rec.machine())
    bench_read_cost(rec, args.against, args.pairs)
    bench_simulation(rec)
    bench_calls(rec)
    bench_sampler(rec)
    bench_adapter_poll("healthy", rec)
    bench_adapter_poll("chaos", rec)
    bench_parse(rec)
    rec.save()
