"""SDC check figures: detection per fault type, false positives, cost vs a bare matmul, quick run time.

    python tests/bench/bench_sdc.py [--seeds 200] [--healthy 1000] [--quick-only] [--json PATH]

Prints figures only (no pass/fail). Detection is split by whether the corrupted element's error
exceeds the rounding-error bound gamma_k |A||B| (what a tolerance check can promise) or not
(visible only to a bitwise comparison: the NumPy engine's golden bits, or the cross-device vote).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from rasd.sdc.engines import NumpyEngine, host_product
from rasd.sdc.faults import InjectedFault
from rasd.sdc.gemm import (Workspace, abft, bare_matmul_seconds, element_bound, freivalds, golden, golden_gemm,
                           host_inputs)
from rasd.sdc.memory import TESTS, memory_check
from rasd.sdc.numerics import flip_bits
from rasd.sdc.peers import cross_device_vote
from rasd.sdc.results import Result
from rasd.sdc.settings import SdcSettings
from rasd.sdc.validation import Validator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import results  # noqa: E402

N = 128


class TolerantEngine(NumpyEngine):
    """Judged by the gamma bound only, as a GPU engine without a bitwise golden is."""

    def bitwise_reference(self) -> bool:
        return False


def _beyond_bound(engine: NumpyEngine, seed: int, n: int, dtype: str, bit: int) -> bool | None:
    """Did the last injected corruption push any element past the per-element bound?"""
    if not engine.last_injected:
        return None
    a, b = host_inputs(seed, n, dtype)
    ref, mag, _ = golden(seed, n, dtype)
    c = host_product(a, b, dtype).copy()
    idx = np.array(engine.last_injected)
    flip_bits(c, idx, bit, dtype)
    err = np.abs(c.reshape(-1)[idx].astype(np.float64) - ref.reshape(-1)[idx])
    bound = element_bound(engine, n, dtype, mag.reshape(-1)[idx])
    return bool(np.any(~(err <= bound)))


GEMM_FAULTS = {
    "fp64 exponent bit 61": ("float64", 61),
    "fp64 mantissa bit 40": ("float64", 40),
    "fp64 mantissa bit 0": ("float64", 0),
    "fp32 exponent bit 29": ("float32", 29),
    "fp32 exponent bit 23": ("float32", 23),
    "fp32 mantissa bit 22": ("float32", 22),
    "fp32 mantissa bit 10": ("float32", 10),
    "fp32 mantissa bit 0": ("float32", 0),
    "fp16 exponent bit 13": ("float16", 13),
    "fp16 mantissa bit 9": ("float16", 9),
    "bf16 exponent bit 12": ("bfloat16", 12),
    "bf16 mantissa bit 6": ("bfloat16", 6),
}


def detection(seeds: int) -> None:
    print(f"\n== detection per fault type ({seeds} seeds, n={N}, one corrupted element per run) ==")
    print("columns: runs whose error exceeds the bound (N>) and those below it (N<); detection rate of each check in each group")
    hdr = f"{'fault':24s} {'N>':>4s} {'N<':>4s} | " + " | ".join(f"{c:>17s}" for c in ("golden bitwise", "golden bound", "abft", "freivalds"))
    print(hdr)
    for label, (dtype, bit) in GEMM_FAULTS.items():
        counts = {k: [0, 0, 0, 0] for k in ("golden bitwise", "golden bound", "abft", "freivalds")}  # hit>, n>, hit<, n<
        for s in range(seeds):
            fault = InjectedFault(gpu=0, kind="gemm_bitflip", bit=bit, dtypes=(dtype,), deterministic=False, seed=s)
            for name, cls, fn in (
                ("golden bitwise", NumpyEngine, lambda ws: golden_gemm(ws, s, N, dtype)),
                ("golden bound", TolerantEngine, lambda ws: golden_gemm(ws, s, N, dtype)),
                ("abft", NumpyEngine, lambda ws: abft(ws, s, N, dtype)),
                ("freivalds", NumpyEngine, lambda ws: freivalds(ws, s, N, dtype, 16)),
            ):
                eng = cls(0, faults=lambda f=fault: [f], seed=s)
                r = fn(Workspace(eng))
                beyond = _beyond_bound(eng, s, N, dtype, bit)
                k = 0 if beyond else 2
                counts[name][k + 1] += 1
                counts[name][k] += r.result is Result.FAIL
        c0 = counts["golden bitwise"]
        cells = []
        for h1, n1, h2, n2 in counts.values():
            a = f"{100 * h1 / n1:5.1f}%" if n1 else "   - "
            b = f"{100 * h2 / n2:5.1f}%" if n2 else "   - "
            cells.append(f"> {a} < {b}")
        print(f"{label:24s} {c0[1]:4d} {c0[3]:4d} | " + " | ".join(f"{c:>17s}" for c in cells))

    print("\n-- intermittent (p=0.3 per run), fp32 bit 29: golden detection per run and within k runs --")
    fault = InjectedFault(gpu=0, kind="gemm_bitflip", bit=29, dtypes=("float32",), probability=0.3, deterministic=False)
    per_run = []
    within = {1: 0, 3: 0, 10: 0}
    for s in range(seeds):
        ws = Workspace(NumpyEngine(0, faults=lambda: [fault], seed=s))
        hits = [golden_gemm(ws, s, 64, "float32").result is Result.FAIL for _ in range(10)]
        per_run += hits
        for k in within:
            within[k] += any(hits[:k])
    print(f"per run {100 * sum(per_run) / len(per_run):.1f}%; " +
          ", ".join(f"within {k} runs {100 * v / seeds:.1f}%" for k, v in within.items()))

    print("\n-- same wrong answer every time (deterministic fault, fp32 mantissa bit 3, below the bound) --")
    self_cmp = vote_hits = gold = 0
    for s in range(seeds):
        fault = InjectedFault(gpu=1, kind="gemm_bitflip", bit=3, dtypes=("float32",), deterministic=True, seed=s)
        wss = [Workspace(NumpyEngine(g, faults=(lambda f=fault: [f]) if g == 1 else None)) for g in range(3)]
        e = wss[1].engine
        ops = wss[1].operands(s, 64, "float32")
        first, second = e.matmul(ops.a, ops.b, "float32"), e.matmul(ops.a, ops.b, "float32")
        self_cmp += not np.array_equal(first, second)  # gpu-burn style: compare with its own first result
        votes = {r.gpu: r.result for r in cross_device_vote(wss, s, 64, "float32")}
        vote_hits += votes[1] is Result.FAIL and votes[0] is Result.PASS and votes[2] is Result.PASS
        gold += golden_gemm(wss[1], s, 64, "float32").result is Result.FAIL
    print(f"self-comparison {100 * self_cmp / seeds:.1f}%, cross-device vote {100 * vote_hits / seeds:.1f}%, "
          f"bitwise golden {100 * gold / seeds:.1f}%")

    print("\n-- memory faults (256 KiB region, random address and bit per seed) --")
    size = 256 << 10
    for kind, extra in (("stuck at 0", {"kind": "memory_stuck", "stuck_value": 0}),
                        ("stuck at 1", {"kind": "memory_stuck", "stuck_value": 1}),
                        ("flip p=0.5 per read", {"kind": "memory_flip", "probability": 0.5})):
        hits = {t: 0 for t in TESTS}
        located = 0
        runs = max(1, seeds // 4)
        for s in range(runs):
            rng = np.random.default_rng(s)
            address, bit = int(rng.integers(0, size)), int(rng.integers(0, 8))
            fault = InjectedFault(gpu=0, kind=extra["kind"], addresses=(address,), bit=bit,
                                  stuck_value=extra.get("stuck_value", 0), probability=extra.get("probability", 1.0))
            for t in TESTS:
                r = memory_check(NumpyEngine(0, faults=lambda f=fault: [f], seed=s), size, t, s)
                hits[t] += r.result is Result.FAIL
                if r.result is Result.FAIL and t == "march_c_minus":
                    located += [address, bit] in r.evidence["first"][0]["bit_addresses"]
        print(f"{kind:20s} ({runs} seeds): " + ", ".join(f"{t} {100 * h / runs:.0f}%" for t, h in hits.items()) +
              f"; march C- named the address {100 * located / max(1, hits['march_c_minus']):.0f}% of its detections")


def false_positives(checks: int, rec: results.Recorder) -> None:
    """``checks`` quick GPU checks (two GPUs per run, so the vote runs too) with each engine kind."""
    s = SdcSettings(quick_memory_bytes=128 << 10)  # memory patterns cannot misfire; the GEMM tolerances can
    handles = {g: _Idle(g) for g in range(2)}
    t0 = time.perf_counter()
    print(f"\n== false positives: {checks} quick checks of healthy devices per engine kind (seed varies per run) ==")
    for label, cls in (("bitwise golden (NumPy engine)", NumpyEngine), ("bound only (as on a GPU)", TolerantEngine)):
        v = Validator(s, handles, {g: cls(g) for g in range(2)})
        bad = 0
        for i in range(checks // 2):
            bad += sum(g.result is not Result.PASS for g in v.run([0, 1], "quick", seed=i).report.gpus)
        print(f"{label:30s} {bad} of {checks} not passed")
        rec.add(f"sdc.false_positives.{cls.__name__}", f"false positives in quick checks of healthy devices, {label}",
                bad, "checks", column=f"of {checks}", text=f"{bad} of {checks}")
    print(f"({time.perf_counter() - t0:.1f}s)")


class _Idle:
    def __init__(self, index: int):
        self.index = index

    def running_pids(self) -> list[int]:
        return []


def throughput_ratios(n: int, rec: results.Recorder) -> None:
    print(f"\n== each check's throughput as a ratio to a bare matmul (NumPy engine, n={n}; best of 7, alternating) ==")
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        ws = Workspace(NumpyEngine(0))
        wss = [ws, Workspace(NumpyEngine(1)), Workspace(NumpyEngine(2))]
        golden_gemm(ws, 0, n, dtype)  # build and cache operands and the reference (a golden is computed once)
        checks = (("golden", lambda: golden_gemm(ws, 0, n, dtype)),
                  ("abft", lambda: abft(ws, 0, n, dtype)),
                  ("freivalds", lambda: freivalds(ws, 0, n, dtype, 16)),
                  ("vote", lambda: cross_device_vote(wss, 0, n, dtype)))
        for _, fn in checks:
            fn()
        # Bare and checked runs alternate, and the best of each is kept: this machine is shared,
        # so the minimum is the figure least disturbed by other work.
        bare = {name: [] for name, _ in checks}
        timed = {name: [] for name, _ in checks}
        for _ in range(7):
            for name, fn in checks:
                bare[name].append(bare_matmul_seconds(ws, 0, n, dtype))
                t = time.perf_counter()
                fn()
                timed[name].append((time.perf_counter() - t) / (3 if name == "vote" else 1))
        best_bare = min(min(v) for v in bare.values())
        cells = [f"bare {2 * n**3 / best_bare / 1e9:6.1f} GFLOP/s"]
        cells += [f"{name} {min(bare[name]) / min(timed[name]):.2f}" for name, _ in checks]
        print(f"{dtype:9s} " + "  ".join(cells))
        for name, _ in checks:
            ratio = min(bare[name]) / min(timed[name])
            rec.add(f"sdc.throughput.{dtype}.{name}", f"{name} throughput / a bare matmul (n={n}, best of 7)", ratio, "x",
                    column=dtype, table="sdc_throughput", text=f"{ratio:.2f}")
    eng = NumpyEngine(0, memory_bytes=64 << 20)
    for t in TESTS:
        r = memory_check(eng, 16 << 20, t, 0)
        print(f"memory {t:18s} 16 MiB in {r.seconds:.3f}s")


def quick_run_time(rec: results.Recorder) -> None:
    from rasd.backends import open_backend

    be = open_backend("fake", workload="idle")
    try:
        from rasd.sdc.engines import engines_for_backend

        s = SdcSettings()
        v = Validator(s, {g.index: g for g in be.adapter.gpus()}, engines_for_backend(be, 0, s.numpy_memory_bytes))
        times = []
        for i in range(3):
            t = time.perf_counter()
            out = v.run(v.gpus, "quick", seed=i)
            times.append(time.perf_counter() - t)
        print(f"\n== quick run over {len(v.gpus)} fake GPUs (default settings: n={s.quick_gemm_size}, "
              f"{s.quick_memory_bytes >> 20} MiB memory) ==")
        print(f"median {statistics.median(times):.2f}s of {[round(x, 2) for x in times]}; result {out.report.result.value}")
        rec.add("sdc.quick.in_process", f"`quick` over {len(v.gpus)} fake GPUs, in-process (median of 3)",
                statistics.median(times), "s", text=f"{statistics.median(times):.2f} s wall")
    finally:
        be.close()


QUICK_TARGET_SECONDS = 1.5


def quick_command(rec: results.Recorder, runs: int = 3) -> None:
    """`rasd validate --level quick` over the fake's 8 GPUs as a user runs it (a new process:
    start-up and imports included): wall time and peak RSS, against the target and the bounds."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import psutil

    repo = Path(__file__).resolve().parents[2]
    s = SdcSettings()
    walls, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(repo), XDG_STATE_HOME=f"{tmp}/state", XDG_RUNTIME_DIR=f"{tmp}/run")
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "rasd", "validate", "--backend", "fake", "--level", "quick", "--force"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            ps, peak = psutil.Process(proc.pid), 0
            while proc.poll() is None:
                try:
                    peak = max(peak, ps.memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.005)
            walls.append(time.perf_counter() - t)
            peaks.append(peak)
    print(f"\n== rasd validate --level quick, 8 fake GPUs, a new process each run ({runs} runs) ==")
    print(f"wall time median {statistics.median(walls):.2f}s (runs {min(walls):.2f}-{max(walls):.2f})  "
          f"[target <= {QUICK_TARGET_SECONDS}s]")
    print(f"peak RSS median {statistics.median(peaks) / 2**20:.0f} MB; configured: quick memory region "
          f"{s.quick_memory_bytes >> 20} MiB per GPU, NumPy engine's simulated device memory "
          f"{s.numpy_memory_bytes >> 20} MiB per GPU at most")
    wall, peak = statistics.median(walls), statistics.median(peaks) / 2**20
    rec.add("sdc.quick.command", "`rasd validate --level quick`, 8 fake GPUs, as a new process", wall, "s",
            target=results.at_most(QUICK_TARGET_SECONDS, " s", f"within {QUICK_TARGET_SECONDS} s"),
            text=f"{wall:.2f} s wall (runs {min(walls):.2f}-{max(walls):.2f}), peak RSS {peak:.0f} MB",
            notes={"runs": runs, "peak_rss_mb": round(peak, 1), "quick_region_mib": s.quick_memory_bytes >> 20,
                   "numpy_engine_mib": s.numpy_memory_bytes >> 20})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--healthy", type=int, default=1000)
    ap.add_argument("--n", type=int, default=1024, help="matrix side for the throughput ratios")
    ap.add_argument("--quick-only", action="store_true", help="only the quick-run figures")
    results.add_arguments(ap)
    args = ap.parse_args()
    rec = results.Recorder("sdc", args)
    print(rec.machine())
    t0 = time.perf_counter()
    quick_command(rec)
    quick_run_time(rec)
    if not args.quick_only:
        throughput_ratios(args.n, rec)
        detection(args.seeds)
        false_positives(args.healthy, rec)
        print(f"\n(total {time.perf_counter() - t0:.0f}s)")
    rec.save()


if __name__ == "__main__":
    main()
