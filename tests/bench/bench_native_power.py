"""The power sampler's reads on NVIDIA's mock NVML: native thread against Python loop, interleaved;
and what judging the native reads costs the daemon's main loop, per read.

Prints figures, asserts nothing. Each pair runs the sampler at its default rate over every GPU of
the mock (8 H100s) for ``--seconds``, once reading from Python and once on the native thread,
with the main thread taking the results every second as the daemon's main loop does; the figure
is the whole process's CPU time (both threads, the library's own work included), the median of
the pairs and their spread. NVIDIA's mock is looked for at ``<repo>/../shared/nvml-mock`` and
the native reader where the install builds it (beside ``rasd/backends/nvml/powerloop.py``);
without either the bench says so and records nothing of that part.

Judging (no library needed): a minute of 8 and of 72 GPUs' reads at 12.5 Hz, shaped as the
native reader queues them (NVML refreshing every 100 ms, so 4 reads in 5 are distinct updates),
is fed a second's worth a pass through the real code (``tests/bench/judge_feed.py``): taken out of
the queue (``NativeLoop.drain``), judged (``PowerSampler.drain``: repeats, rates, methods) and
stored (the power service's window). The figure is this thread's CPU time per read, each stage's
share beside it: at 72 GPUs the daemon judges 900 reads a second, so 1 us a read is 0.09% of a
core. Then the same on real native reads: the fake node's power model read by the native reader
for ``--fake-seconds``, drained every second, the drains' CPU per read. ``--against DIR`` runs all
of it on another checkout's code (an older commit) in turn with this one (A B A B), each run in
its own process, and gives the ratios.

    python tests/bench/bench_native_power.py [--pairs 5] [--seconds 10] [--judge-only]
        [--judge-runs 5] [--fake-seconds 6] [--against DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench import results  # noqa: E402

MOCK = REPO.parent / "shared" / "nvml-mock"
FEED = Path(__file__).with_name("judge_feed.py")
JUDGE_GPUS = (8, 72)
JUDGE_SECONDS = {8: 300.0, 72: 60.0}  # about 30,000 and 54,000 reads
STAGES = ("take", "judge", "store")  # judge_feed's, cumulative


def child(pairs: int, seconds: float) -> None:
    """In a process whose NVML is the mock: run the pairs, print JSON."""
    from rasd import config
    from rasd.backends import open_backend
    from rasd.telemetry.power import PowerSampler

    hz = config.TelemetrySettings().power_sample_hz
    be = open_backend("nvml")
    gpus = be.adapter.gpus()
    out: dict[str, list[float]] = {"python": [], "native": [], "reads_python": [], "reads_native": []}
    for _ in range(pairs):
        for mode in ("python", "native"):
            native = be.adapter.native_power(gpus) if mode == "native" else None
            if mode == "native" and native is None:
                print(json.dumps({"error": "the native reader is not built here (pip install . builds it)"}))
                return
            s = PowerSampler(gpus, hz, lambda batch: None, native=native)
            s.start()
            time.sleep(1.0)
            s.drain()
            r0, c0, w0 = s.stats()["reads"], time.process_time(), time.monotonic()
            end = w0 + seconds
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                s.drain()
            cpu, wall = time.process_time() - c0, time.monotonic() - w0
            reads = s.stats()["reads"] - r0
            s.stop()
            s.join(1.0)
            out[mode].append(100 * cpu / wall)
            out[f"reads_{mode}"].append(reads / len(gpus) / wall)
    out["gpus"] = [len(gpus)]
    out["hz"] = [hz]
    print(json.dumps(out))


def judge_child(code: Path, repeats: int, fake_seconds: float) -> None:
    """In a process whose ``rasd`` is ``code``'s: each stage's CPU per read, median of
    ``repeats`` (the stages in turn), and the drains' CPU per read on the fake node's native
    reads for ``fake_seconds`` (0: not run), printed as JSON (us)."""
    import importlib.util

    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location("judge_feed", FEED)
    assert spec is not None and spec.loader is not None
    feed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(feed)
    out: dict[str, dict[str, float]] = {}
    for gpus in JUDGE_GPUS:
        records = feed.stream(gpus, JUDGE_SECONDS[gpus])
        got: dict[str, list[float]] = {stage: [] for stage in feed.STAGES}
        for _ in range(repeats):
            for stage in feed.STAGES:
                cpu, reads = feed.run(gpus, 0.0, stage, records)
                got[stage].append(cpu / reads * 1e6)
        out[str(gpus)] = {stage: statistics.median(v) for stage, v in got.items()}
        if fake_seconds > 0:
            real = feed.fake_run(gpus, fake_seconds)
            if real is not None:
                cpu, reads, distinct = real
                out[str(gpus)]["fake"] = cpu / reads * 1e6
                out[str(gpus)]["fake_distinct"] = distinct / reads
    print(json.dumps(out))


def judge_once(code: Path, repeats: int, fake_seconds: float) -> dict[str, dict[str, float]]:
    r = subprocess.run([sys.executable, __file__, "--judge-child", str(code), "--judge-runs", str(repeats),
                        "--fake-seconds", str(fake_seconds), "--no-json"],
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=""))
    if r.returncode != 0:
        raise SystemExit(f"bench_native_power: judging on {code} failed: {r.stderr.strip()[-500:]}")
    out: dict[str, dict[str, float]] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def stages(per_stage: dict[str, float]) -> tuple[float, str]:
    """Each stage's own cost from the cumulative figures (take, then judge, then store)."""
    take, judge, store = per_stage["take"], per_stage["judge"], per_stage["store"]
    return store, f"take {take:.2f} + judge {judge - take:.2f} + store {store - judge:.2f}"


def judging(rec: results.Recorder, runs: int, against: Path | None, fake_seconds: float) -> None:
    """The judging figures: this checkout's (and ``against``'s, in turn) CPU per read."""
    mine: list[dict[str, dict[str, float]]] = []
    theirs: list[dict[str, dict[str, float]]] = []
    for _ in range(runs):
        mine.append(judge_once(REPO, 3, fake_seconds))
        if against is not None:
            theirs.append(judge_once(against, 3, fake_seconds))
    other = ""
    if against is not None:
        commit = subprocess.run(["git", "-C", str(against), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or str(against)
        other = f"commit {commit}"
    for gpus in JUDGE_GPUS:
        k = str(gpus)
        med = {stage: statistics.median(m[k][stage] for m in mine) for stage in STAGES}
        total, parts = stages(med)
        totals = [m[k]["store"] for m in mine]
        reads = gpus * 12.5
        col = f"{gpus} GPUs' reads at 12.5 Hz"
        f = rec.add(f"native_power.judge.{gpus}", "judging the native reads on the main loop: CPU per read, us",
                    total, "us", target=results.at_most(1.0, "us", text="1 us a read (0.09% of a core at 72 GPUs)"),
                    text=f"{total:.2f} us ({parts}; {len(totals)} runs {min(totals):.2f}-{max(totals):.2f}); "
                    f"{reads:g} reads a second: {reads * total / 1e4:.3f}% of a core", column=col, table="native_power_judge")
        print("  " + f.line())
        if theirs:
            old = {stage: statistics.median(t[k][stage] for t in theirs) for stage in STAGES}
            old_total, old_parts = stages(old)
            ratios = [m[k]["store"] / t[k]["store"] for m, t in zip(mine, theirs)]
            print(f"    {other}: {old_total:.2f} us ({old_parts}); {reads:g} reads a second: "
                  f"{reads * old_total / 1e4:.3f}% of a core")
            f = rec.add(f"native_power.judge_ratio.{gpus}", f"judging per read against {other} (median of interleaved pairs)",
                        statistics.median(ratios), "x", text=f"{statistics.median(ratios):.2f}x "
                        f"(pairs {min(ratios):.2f}-{max(ratios):.2f}, the machine's noise)", column=col,
                        table="native_power_judge")
            print("  " + f.line())
        fake(rec, gpus, mine, theirs, other)


def fake(rec: results.Recorder, gpus: int, mine: list[dict[str, dict[str, float]]],
         theirs: list[dict[str, dict[str, float]]], other: str) -> None:
    """The figures of the fake node's real native reads, where they ran."""
    k, col = str(gpus), f"{gpus} GPUs' reads at 12.5 Hz"
    got = [m[k]["fake"] for m in mine if "fake" in m[k]]
    if not got:
        print(f"    fake node, {gpus} GPUs: no native reads offered (or --fake-seconds 0)")
        return
    med = statistics.median(got)
    distinct = statistics.median(m[k]["fake_distinct"] for m in mine if "fake" in m[k])
    f = rec.add(f"native_power.judge_fake.{gpus}", "the same on the fake node's native reads (drained every second): CPU per read, us",
                med, "us", text=f"{med:.2f} us ({len(got)} runs {min(got):.2f}-{max(got):.2f}; "
                f"{100 * distinct:.0f}% of reads distinct); {gpus * 12.5:g} reads a second: "
                f"{gpus * 12.5 * med / 1e4:.3f}% of a core", column=col, table="native_power_judge")
    print("  " + f.line())
    old = [t[k]["fake"] for t in theirs if "fake" in t[k]]
    if theirs and not old:
        print(f"    {other}: the fake node offers no native reads there")
    elif old:
        pairs = [m[k]["fake"] / t[k]["fake"] for m, t in zip(mine, theirs) if "fake" in m[k] and "fake" in t[k]]
        print(f"    {other}: {statistics.median(old):.2f} us; {statistics.median(pairs):.2f}x "
              f"(pairs {min(pairs):.2f}-{max(pairs):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--judge-only", action="store_true", help="only the judging figures (no mock NVML needed)")
    ap.add_argument("--judge-runs", type=int, default=5, help="judging runs (each its own process, median of 3)")
    ap.add_argument("--fake-seconds", type=float, default=6.0,
                    help="seconds of the fake node's native reads in each judging run (0: none)")
    ap.add_argument("--against", type=Path, default=None, metavar="DIR",
                    help="also judge with the rasd of this checkout (e.g. an older commit), in turn with this one")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--judge-child", type=Path, default=None, help=argparse.SUPPRESS)
    results.add_arguments(ap)
    args = ap.parse_args()
    if args.child:
        child(args.pairs, args.seconds)
        return
    if args.judge_child is not None:
        judge_child(args.judge_child, args.judge_runs, args.fake_seconds)
        return
    if args.against is not None and not (args.against / "rasd" / "telemetry" / "power.py").is_file():
        raise SystemExit(f"bench_native_power: --against {args.against}: no rasd checkout there; "
                         "give the top directory of one (e.g. a git worktree of an older commit)")
    rec = results.Recorder("native_power", args)
    print(rec.machine())
    print("judging the native reads (this thread's CPU per read; take + judge + store):")
    judging(rec, args.judge_runs, args.against, args.fake_seconds)
    if not args.judge_only:
        mock_pairs(rec, args)
    rec.save()


def mock_pairs(rec: results.Recorder, args: argparse.Namespace) -> None:
    if not (MOCK / "lib" / "libnvidia-ml.so.1").is_file():
        print(f"skipped: NVIDIA's mock NVML is not at {MOCK}")
        return
    env = dict(os.environ, LD_LIBRARY_PATH=str(MOCK / "lib"),
               MOCK_NVML_CONFIG=str(MOCK / "configs" / "mock-nvml-config-h100.yaml"),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, __file__, "--child", "--pairs", str(args.pairs), "--seconds",
                        str(args.seconds), "--no-json"], env=env, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(f"bench_native_power: the run on the mock failed: {r.stderr.strip()[-500:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    if "error" in got:
        print(f"skipped: {got['error']}")
        return
    py, nat = got["python"], got["native"]
    ratios = [n / p for n, p in zip(nat, py) if p > 0]
    med_py, med_nat = statistics.median(py), statistics.median(nat)
    gpus, hz = int(got["gpus"][0]), got["hz"][0]
    col = f"NVIDIA's mock NVML, {gpus} H100s"
    figs = [
        rec.add("native_power.python", f"power sampler at {hz:g} Hz, reads from Python: whole process CPU, % of a core",
                med_py, "%", text=f"{med_py:.3f}% ({len(py)} runs {min(py):.3f}-{max(py):.3f}; "
                f"{statistics.median(got['reads_python']):.1f} reads a GPU a second)", column=col),
        rec.add("native_power.native", f"power sampler at {hz:g} Hz, reads on the native thread: whole process CPU, % of a core",
                med_nat, "%", target=results.at_most(med_py, "%", text="no more than reading from Python"),
                text=f"{med_nat:.3f}% ({len(nat)} runs {min(nat):.3f}-{max(nat):.3f}; "
                f"{statistics.median(got['reads_native']):.1f} reads a GPU a second)", column=col),
        rec.add("native_power.ratio", "native against Python (median of interleaved pairs)",
                statistics.median(ratios), "x", text=f"{statistics.median(ratios):.2f}x "
                f"(pairs {min(ratios):.2f}-{max(ratios):.2f}, the machine's noise)", column=col),
    ]
    for f in figs:
        print("  " + f.line())


if __name__ == "__main__":
    main()
