"""The power sampler's reads on NVIDIA's mock NVML: native thread against Python loop, interleaved.

Prints figures, asserts nothing. Each pair runs the sampler at its default rate over every GPU of
the mock (8 H100s) for ``--seconds``, once reading from Python and once on the native thread,
with the main thread taking the results every second as the daemon's main loop does; the figure
is the whole process's CPU time (both threads, the library's own work included), the median of
the pairs and their spread. NVIDIA's mock is looked for at ``<repo>/../shared/nvml-mock`` and
the native reader where the install builds it (beside ``rasd/backends/nvml/powerloop.py``);
without either the bench says so and records nothing.

    python tests/bench/bench_native_power.py [--pairs 5] [--seconds 10] [--json PATH]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    results.add_arguments(ap)
    args = ap.parse_args()
    if args.child:
        child(args.pairs, args.seconds)
        return
    rec = results.Recorder("native_power", args)
    print(rec.machine())
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
    rec.save()


if __name__ == "__main__":
    main()
