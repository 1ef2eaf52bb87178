"""SDC resource bounds: prints figures with targets beside them, asserts nothing.

1. `rasd run --backend fake --scenario sdc` (a corrupting GPU, idle node: periodic checks and an
   accusation run) for N seconds: the daemon's peak RSS (sampled every 0.25 s) and CPU share.
2. `rasd validate --level standard` on 8 fake GPUs, and a standalone deep check over every default
   GEMM size: peak RSS from the kernel (getrusage of a wrapper's children).

Run: python tests/bench/bench_sdc_memory.py [--seconds 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import results  # noqa: E402

PEAK_TARGET_MB = 1024
GIB = 1 << 30
WRAPPER = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": r.returncode, "peak": u.ru_maxrss * 1024, "cpu": u.ru_utime + u.ru_stime}))
"""


def _env(tmp: Path) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, XDG_STATE_HOME=str(tmp / "s"), XDG_RUNTIME_DIR=str(tmp / "r"),
                PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def daemon(seconds: float, tmp: Path) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "rasd", "run", "--backend", "fake", "--scenario", "sdc",
                          "--listen", f"127.0.0.1:{port}"], env=_env(tmp),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(p.pid)
    peak = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.25)
        cpu = sum(ps.cpu_times()[:2])
        wall = time.monotonic() - t0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(15)
    return {"peak": peak, "cpu_pct": 100 * cpu / wall, "wall": wall}


def command(tmp: Path, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "rasd", *args],
                         capture_output=True, text=True, env=_env(tmp), timeout=1800)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40.0)
    results.add_arguments(ap)
    args = ap.parse_args()
    rec = results.Recorder("sdc_memory", args)
    print(rec.machine())
    mb = results.below(PEAK_TARGET_MB, " MB")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        r = daemon(args.seconds, tmp / "d")
        print(f"daemon on the sdc scenario, {r['wall']:.0f} s: peak RSS {r['peak'] / 2**20:.0f} MB "
              f"(target < 1024 MB), CPU {r['cpu_pct']:.0f}% of one core (target <= 100%)")
        rec.add("sdc_memory.daemon.peak", f"daemon on the sdc scenario ({r['wall']:.0f} s): peak RSS",
                r["peak"] / 2**20, "MB", target=mb, text=f"{r['peak'] / 2**20:.0f} MB")
        rec.add("sdc_memory.daemon.cpu", "daemon on the sdc scenario: CPU, % of one core", r["cpu_pct"], "%",
                target=results.at_most(100.0, "%"), text=f"{r['cpu_pct']:.0f}%")
        r = command(tmp / "v", "validate", "--backend", "fake", "--level", "standard", "--json")
        print(f"rasd validate --level standard, 8 fake GPUs: peak RSS {r['peak'] / 2**20:.0f} MB "
              f"(target < 1024 MB), {r['cpu']:.1f} s CPU")
        rec.add("sdc_memory.standard.peak", "`rasd validate --level standard`, 8 fake GPUs: peak RSS",
                r["peak"] / 2**20, "MB", target=mb, text=f"{r['peak'] / 2**20:.0f} MB ({r['cpu']:.1f} s CPU)")
        cfg = tmp / "deep.toml"
        cfg.write_text("[sdc]\ndeep_seconds = 1.0\ndeep_rounds = 8\ndeep_min_rounds = 8\n")
        r = command(tmp / "a", "accuse", "--backend", "fake", "--scenario", "sdc", "--gpu", "3", "--reason",
                    "bench", "--config", str(cfg), "--json")
        print(f"standalone deep check, 8 rounds over sizes 256..2048: peak RSS {r['peak'] / 2**20:.0f} MB "
              f"(target < 1024 MB), {r['cpu']:.1f} s CPU")
        rec.add("sdc_memory.deep.peak", "standalone deep check, 8 rounds over sizes 256..2048: peak RSS",
                r["peak"] / 2**20, "MB", target=mb, text=f"{r['peak'] / 2**20:.0f} MB ({r['cpu']:.1f} s CPU)")
    rec.save()


if __name__ == "__main__":
    main()
