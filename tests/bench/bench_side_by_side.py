"""Whole daemon side by side with nvitop-exporter: CPU, memory, threads, power-update capture.

Prints figures with their targets; asserts nothing. Each setup (NVIDIA's mock NVML with 8 GPUs,
rasd's fake node with 8 and 72 GPUs) runs rasd at defaults and nvitop-exporter at its defaults
(1 s updates) in turn, A B A B, one process at a time on an otherwise unchanged machine. Per run:
CPU time of the process (psutil, user + system) over a fixed window after a warm-up, RSS and
threads at the end, one scrape every 15 s (a default Prometheus) of each. For rasd also the
share of NVML's distinct instant-power updates it captured: on the fake, NVML refreshes field 186
every 100 ms per GPU, so the truth is 10 x GPUs x seconds; NVIDIA's mock stamps every read as new
(there rasd falls back to value changes, and the figure given is its distinct-update rate).

nvitop-exporter comes from PyPI into its own virtual environment under the cache directory
(created on first use; ``--nvitop-venv`` to reuse another). NVIDIA's mock NVML is looked for at
``<repo>/../shared/nvml-mock``; its setups are skipped, saying so, where it is absent.

    python tests/bench/bench_side_by_side.py [--seconds 30] [--pairs 3] [--setups mock8,fake8,fake72]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

REPO = Path(__file__).resolve().parents[2]
MOCK = REPO.parent / "shared" / "nvml-mock"
HELPER = Path(__file__).with_name("sidebyside_fake.py")
NVITOP_EXPORTER = "nvitop-exporter==1.7.2"
NVML_REFRESH_HZ = 10.0  # the fake's field-186 refresh (rasd.backends powersim)
SCRAPE_EVERY_SECONDS = 15.0


@dataclass
class Run:
    cpu_percent: float  # of one core
    rss_mb: float
    threads: int
    capture: float | None = None  # rasd only: captured / NVML's distinct updates (fake)
    rate_hz: float | None = None  # rasd only: distinct updates per GPU per second


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rasd-bench"


def nvitop_venv(path: Path | None) -> Path:
    venv = path or cache_dir() / "nvitop-venv"
    py = venv / "bin" / "python"
    if not (venv / "bin" / "nvitop-exporter").exists():
        print(f"installing {NVITOP_EXPORTER} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", NVITOP_EXPORTER], check=True)
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def wait_up(port: int, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving /metrics")
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("did not serve /metrics in time")


def measure(cmd: list[str], env: dict[str, str], port: int, gpus: int, warmup: float, seconds: float,
            is_rasd: bool, fake: bool, log: Path) -> Run:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=str(REPO))
    try:
        wait_up(port, proc)
        time.sleep(warmup)  # imports, first polls and the analysis window filling are not steady state
        ps = psutil.Process(proc.pid)
        text = scrape(port)
        c0, t0 = sum(ps.cpu_times()[:2]), time.monotonic()
        # rasd's counters are as of its last snapshot: time the window by the snapshots' stamps
        s0 = metric(text, "rasd_power_samples_total") if is_rasd else 0.0
        w0 = metric(text, "rasd_snapshot_timestamp_seconds") if is_rasd else 0.0
        end = t0 + seconds
        while True:
            time.sleep(min(SCRAPE_EVERY_SECONDS, max(0.0, end - time.monotonic())))
            text = scrape(port)
            if time.monotonic() >= end:
                break
        c1, t1 = sum(ps.cpu_times()[:2]), time.monotonic()
        run = Run(100 * (c1 - c0) / (t1 - t0), ps.memory_info().rss / 2**20, ps.num_threads())
        if is_rasd:
            got = metric(text, "rasd_power_samples_total") - s0
            span = metric(text, "rasd_snapshot_timestamp_seconds") - w0
            run.rate_hz = got / gpus / span
            if fake:
                run.capture = got / (NVML_REFRESH_HZ * gpus * span)
        return run
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mock_config(tmp: Path, gpus: int) -> Path | None:
    """The stock H100 profile with power that varies per read (as a loaded GPU's does); None when
    the mock cannot show ``gpus`` devices (it stops at 8)."""
    src = (MOCK / "configs" / "mock-nvml-config-h100.yaml").read_text()
    dyn = "device_defaults:\n  dynamic_metrics:\n    power:\n      base_mw: 500000\n      variance_mw: 50000\n"
    text = src.replace("device_defaults:\n", dyn, 1)
    if gpus > 8:
        return None  # MaxDevices = 8 in the mock (its README, "Limitations")
    path = tmp / f"mock-h100-{gpus}.yaml"
    path.write_text(text)
    return path


Command = Callable[[int], list[str]]


def setups(names: list[str], tmp: Path, venv: Path) -> list[tuple[str, int, bool, dict[str, str], Command, Command]]:
    """(label, gpus, fake?, env, rasd command, nvitop command) per runnable setup; commands take
    the port."""
    base = dict(os.environ, PYTHONPATH=str(REPO))
    out = []
    for name in names:
        m = re.fullmatch(r"(mock|fake)(\d+)", name)
        if not m:
            raise SystemExit(f"--setups: {name!r} is not mockN or fakeN (e.g. mock8,fake8,fake72)")
        kind, gpus = m.group(1), int(m.group(2))
        if kind == "mock":
            if not (MOCK / "lib").is_dir():
                print(f"{name}: skipped, NVIDIA's mock NVML is not at {MOCK}")
                continue
            cfg = mock_config(tmp, gpus)
            if cfg is None:
                print(f"{name}: skipped, the mock NVML simulates at most 8 GPUs (MaxDevices = 8)")
                continue
            env = dict(base, LD_LIBRARY_PATH=str(MOCK / "lib"), MOCK_NVML_CONFIG=str(cfg))
            out.append((
                f"mock NVML, {gpus} GPUs", gpus, False, env,
                lambda port: [sys.executable, "-m", "rasd", "run", "--backend", "nvml", "--log-level", "warning",
                              "--listen", f"127.0.0.1:{port}"],
                lambda port: [str(venv / "bin" / "nvitop-exporter"), "--bind-address", "127.0.0.1", "--port", str(port)],
            ))
        else:
            out.append((
                f"rasd's fake, {gpus} GPUs", gpus, True, base,
                lambda port, n=gpus: [sys.executable, str(HELPER), "rasd", "--gpus", str(n), "--port", str(port)],
                lambda port, n=gpus: [str(venv / "bin" / "python"), str(HELPER), "nvitop", "--gpus", str(n),
                                      "--port", str(port)],
            ))
    return out


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f}" if xs else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after /metrics answers")
    ap.add_argument("--pairs", type=int, default=3, help="A B pairs per setup")
    ap.add_argument("--setups", default="mock8,fake8,fake72")
    ap.add_argument("--nvitop-venv", type=Path, default=None)
    args = ap.parse_args()
    venv = nvitop_venv(args.nvitop_venv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}")
    print(f"runs: {args.pairs} interleaved pairs (rasd, nvitop-exporter) per setup, {args.seconds:.0f} s windows "
          f"after {args.warmup:.0f} s warm-up, a scrape every {SCRAPE_EVERY_SECONDS:.0f} s")
    with tempfile.TemporaryDirectory(prefix="rasd-sbs-") as t:
        tmp = Path(t)
        threads_by_gpus: dict[int, int] = {}
        for label, gpus, fake, env, rasd_cmd, nv_cmd in setups(args.setups.split(","), tmp, venv):
            a: list[Run] = []
            b: list[Run] = []
            for pair in range(args.pairs):
                state = tmp / f"state-{pair}"
                shutil.rmtree(state, ignore_errors=True)
                renv = dict(env, XDG_STATE_HOME=str(state / "state"), XDG_RUNTIME_DIR=str(state / "run"))
                port = free_port()
                a.append(measure(rasd_cmd(port), renv, port, gpus, args.warmup, args.seconds, True, fake,
                                 tmp / "rasd.log"))
                port = free_port()
                b.append(measure(nv_cmd(port), env, port, gpus, args.warmup, args.seconds, False, fake,
                                 tmp / "nvitop.log"))
                print(f"  {label} pair {pair + 1}: rasd {a[-1].cpu_percent:.2f}% {a[-1].rss_mb:.0f} MB "
                      f"{a[-1].threads} threads | nvitop-exporter {b[-1].cpu_percent:.2f}% {b[-1].rss_mb:.0f} MB "
                      f"{b[-1].threads} threads", flush=True)
            report(label, gpus, fake, a, b)
            threads_by_gpus[gpus] = max(threads_by_gpus.get(gpus, 0), max(r.threads for r in a))
        if len(threads_by_gpus) > 1:
            print("rasd threads by GPU count (target: no growth per GPU): "
                  + ", ".join(f"{g} GPUs -> {n}" for g, n in sorted(threads_by_gpus.items())))


def report(label: str, gpus: int, fake: bool, a: list[Run], b: list[Run]) -> None:
    med = statistics.median
    cpu_r = [x.cpu_percent / y.cpu_percent for x, y in zip(a, b) if y.cpu_percent > 0]
    rss_r = [x.rss_mb / y.rss_mb for x, y in zip(a, b)]
    print(f"{label}:")
    print(f"  CPU, % of one core: rasd {med([x.cpu_percent for x in a]):.2f} vs nvitop-exporter "
          f"{med([y.cpu_percent for y in b]):.2f}; ratio (median of pairs) {med(cpu_r):.2f}  [target <= 1.00]; "
          f"pair ratios {spread(cpu_r)} (the machine's noise)")
    print(f"  RSS: rasd {med([x.rss_mb for x in a]):.0f} MB vs {med([y.rss_mb for y in b]):.0f} MB; "
          f"ratio {med(rss_r):.2f}  [target <= 1.25]; pair ratios {spread(rss_r)}")
    print(f"  threads: rasd {max(x.threads for x in a)} vs {max(y.threads for y in b)}  [target: not one per GPU per job]")
    rates = [x.rate_hz for x in a if x.rate_hz is not None]
    if fake:
        caps = [x.capture for x in a if x.capture is not None]
        print(f"  instant-power updates captured: {100 * med(caps):.2f}% of NVML's (runs {spread([100 * c for c in caps])})"
              f"  [target >= 99%]")
    elif rates:
        print(f"  instant-power: every read is stamped new here, so repeats are found by value; "
              f"{med(rates):.1f} distinct updates per GPU per second")


if __name__ == "__main__":
    main()
