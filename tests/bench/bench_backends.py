"""Benchmark of the fake NVML backend: simulation cost and call latency. Prints figures only.

    python tests/bench/bench_backends.py [--json PATH] [--against REF] [--pairs N]

``--against REF`` also measures the fake node's cost per instant-power read on the fake of a git
revision (e.g. the commit before a change to the model), in turn with this checkout's (A B A B,
each run its own process, process CPU time), and prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake import FakeNode, FakeNvml, stepper
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
    """120 s of the node's power model in one go, with the model's loops in C (built here as an
    install with a C compiler builds them) and in Python."""
    with tempfile.TemporaryDirectory() as tmp:
        built = _build_loops(Path(tmp))
        native = stepper.load(built) if built else None
        for name, loops in ([("C loops", native)] if native else []) + [("Python loops", stepper.PythonStepper())]:
            old = stepper.use(loops)
            try:
                clock = ManualClock(0.0)
                node, _ = _node(clock)
                simulated = 120.0
                clock.advance(simulated)
                t0 = time.perf_counter()
                for g in range(node.gpu_count):
                    node.sim(g)
                took = time.perf_counter() - t0
            finally:
                stepper.use(old)
            steps = simulated / 0.005 * node.gpu_count
            print(f"power model, {name}: {simulated:.0f} s x {node.gpu_count} GPUs in {took:.3f} s "
                  f"({took / steps * 1e6:.3f} us per GPU-step, {simulated / took:.0f}x real time for the node)")
            key = "backends.sim_step" + (".c" if loops is native else "")
            rec.add(key, f"fake power model, per GPU per 5 ms step, {name}", took / steps * 1e6, "us",
                    text=f"{took / steps * 1e6:.3f} us")


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
if len(sys.argv) > 3:  # the model's loops: "python", or a library built from _powerstep.c
    from rasd.backends.fake import stepper
    stepper.use(stepper.PythonStepper() if sys.argv[3] == "python" else stepper.load(sys.argv[3]))
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


def _read_cost(tree: Path, gpus: int, rounds: int, loops: str | None = None) -> float:
    """us of process CPU per instant-power read, the fake of ``tree`` read as the daemon reads it
    (``loops``: the model's loops, "python" or a built library's path; None: as installed)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _READER, str(gpus), str(rounds), *([loops] if loops else [])],
                         env=env, cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def _build_loops(into: Path) -> Path | None:
    """_powerstep.c built as pyproject.toml builds it, or None without a C compiler."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    lib = into / "_powerstep.so"
    src = REPO / "rasd" / "backends" / "fake" / "_powerstep.c"
    r = subprocess.run([gcc, "-O2", "-std=gnu11", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src),
                        "-lpthread", "-lm"],
                       capture_output=True, text=True)
    return lib if r.returncode == 0 else None


def _tree_of(ref: str, into: Path) -> Path:
    """The package as it was at git revision ``ref``, extracted under ``into``."""
    r = subprocess.run(["git", "-C", str(REPO), "archive", ref, "rasd"], capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"--against {ref}: git archive failed ({r.stderr.decode().strip()}); name a commit of this checkout")
    subprocess.run(["tar", "-x", "-C", str(into)], input=r.stdout, check=True)
    return into


_READ_LABEL = ("fake node read as the daemon reads it, {gpus} GPUs, {loops}: CPU per instant-power read "
               "(field 186 every 100 ms; average power, energy, temperature once a second)")


def bench_read_cost(rec: results.Recorder, against: str | None, pairs: int) -> None:
    """The fake's cost per instant-power read: what the simulated hardware adds to every reader,
    with the model's loops in C (as an install with a C compiler builds it) and in Python."""
    with tempfile.TemporaryDirectory() as tmp:
        built = _build_loops(Path(tmp))
        variants = [("C loops", str(built))] if built else []
        variants.append(("Python loops", "python"))
        old_tree = _tree_of(against, Path(tmp)) if against else None
        for gpus, rounds in ((8, 1500), (72, 200)):
            for name, loops in variants:
                key = f"backends.read_cost.{gpus}.{'c' if loops != 'python' else 'python'}"
                label = _READ_LABEL.format(gpus=gpus, loops=name)
                if old_tree is None:
                    cost = statistics.median(_read_cost(REPO, gpus, rounds, loops) for _ in range(3))
                    print(f"{label}: {cost:.2f} us")
                    rec.add(key, label, cost, "us", text=f"{cost:.2f} us")
                    continue
                new, old = [], []
                for _ in range(pairs):  # in turn, so both see the same load on a shared machine
                    new.append(_read_cost(REPO, gpus, rounds, loops))
                    old.append(_read_cost(old_tree, gpus, rounds))
                ratios = [o / n for n, o in zip(new, old)]
                ratio, mn, mo = statistics.median(ratios), statistics.median(new), statistics.median(old)
                target = results.at_least(3.0, "x", text="at least 3x cheaper")
                spread = f"{pairs} pairs {min(ratios):.2f}-{max(ratios):.2f}"
                print(f"{label}: {mn:.2f} us vs {mo:.2f} us at {against}: {ratio:.2f}x cheaper (median of {spread}) "
                      f"[{target.text}: {'ok' if target.met(ratio) else 'MISSED'}]")
                rec.add(key, label, mn, "us", target=target, met=target.met(ratio),
                        text=f"{mn:.2f} us vs {mo:.2f} us before ({against[:12]}): {ratio:.2f}x cheaper ({spread})",
                        notes={"against": against, "before_us": round(mo, 3), "ratio": round(ratio, 3)})


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
