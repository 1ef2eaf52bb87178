"""Power benchmarks: analysis cost per GPU per window, the service tick at 8 GPUs (what the
daemon's main loop pays every second, with the target), `rasd power analyze` on a 2-million-row
trace (CPU time and peak memory, with the targets), and the sampler's achieved distinct-update
rate against NVML's ~10 Hz refresh on the fake backend.

Run: python tests/bench/bench_power.py   (about a minute; prints figures, asserts nothing)
Figures are process CPU time (this machine is shared; wall time is printed beside it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import numpy as np

from rasd.backends import open_backend
from rasd.model import PowerSample
from rasd.power.analysis import analyze_series, analyze_window
from rasd.model import PowerLimits
from rasd.power.decide import decide
from rasd.power.service import PowerService
from rasd.power.settings import PowerSettings
from rasd.power.synthetic import Wave, nvml_trace, to_samples
from rasd.telemetry.power import PowerSampler

BAND = (0.1, 3.0)


def timed(fn, repeat: int) -> float:
    """Median seconds of one call."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return median(runs)


def bench_analysis() -> None:
    print("== analysis cost (30 s window, 10 Hz distinct updates = 300 readings per GPU)")
    for shape, noise in (("sine", 5.0), ("square", 5.0), ("flat", 10.0)):
        wave = Wave(hz=0.0 if shape == "flat" else 0.8, swing_watts=0.0 if shape == "flat" else 300.0,
                    shape="sine" if shape == "flat" else shape, noise_watts=noise)
        t, w = nvml_trace(wave, 30.0)
        s = timed(lambda: analyze_series(t, w, BAND, min_amplitude_watts=2.0), 200)
        print(f"  one GPU, {shape:6}: {s * 1e3:7.3f} ms per window")
    for window in (30.0, 120.0):
        t, w = nvml_trace(Wave(hz=0.8, swing_watts=300.0, shape="square", noise_watts=5.0), window)
        s = timed(lambda: analyze_series(t, w, BAND), 50)
        print(f"  one GPU, {window:.0f} s window ({t.size} readings): {s * 1e3:7.3f} ms")
    series = {g: nvml_trace(Wave(hz=0.8, swing_watts=300.0, shape="square", noise_watts=5.0), 30.0,
                            rng=np.random.default_rng(g)) for g in range(8)}
    s = timed(lambda: analyze_window(series, BAND, min_amplitude_watts=2.0), 50)
    print(f"  8 GPUs + node sum: {s * 1e3:7.3f} ms per window ({s * 1e3 / 9:.3f} ms per series)")
    analysis = analyze_window(series, BAND)
    limits = {g: PowerLimits(700.0, 200.0, 700.0) for g in range(8)}
    readings = {g: w for g, (_, w) in series.items()}
    s = timed(lambda: decide(analysis, limits, PowerSettings(), 0.0, None, readings), 200)
    print(f"  decision (8 GPUs): {s * 1e3:7.3f} ms")


class _Gpu:
    def __init__(self, index: int):
        self.index = index

    def power_limits(self):
        from types import SimpleNamespace

        return SimpleNamespace(limit_watts=700.0, min_watts=200.0, max_watts=700.0)

    def set_power_limit(self, watts: float) -> float:
        return watts

    def smoothing_supported(self) -> bool:
        return False

    def apply_smoothing(self, *a):
        return {}

    def disable_smoothing(self) -> None:
        pass


def bench_service() -> None:
    print("== PowerService at 8 GPUs, 30 s window (what the daemon's main loop pays every second)")
    svc = PowerService(PowerSettings(node_budget_watts=4000.0), [_Gpu(g) for g in range(8)])
    rows: list[PowerSample] = []
    for g in range(8):
        t, w = nvml_trace(Wave(hz=0.8, swing_watts=300.0, shape="square", noise_watts=5.0), 40.0,
                          rng=np.random.default_rng(g))
        rows += to_samples(g, t, w)
    rows.sort(key=lambda r: r.nvml_timestamp_us)
    t0 = time.perf_counter()
    for s in rows[: len(rows) * 3 // 4]:
        svc.add_samples([s])
    per_add = (time.perf_counter() - t0) / (len(rows) * 3 // 4)
    print(f"  add_samples: {per_add * 1e6:.2f} us per reading (sampler thread)")
    # One tick per simulated second, as in the daemon: full analysis every analysis_seconds (5 s),
    # a cheap escalation check in between.
    rest = rows[len(rows) * 3 // 4 :]
    start = rest[0].nvml_timestamp_us / 1e6
    full: list[float] = []
    cheap: list[float] = []
    every: list[float] = []
    for _ in range(3):
        svc_every = PowerService(PowerSettings(node_budget_watts=4000.0, analysis_seconds=1e-6),
                                 [_Gpu(g) for g in range(8)])
        svc_every.add_samples(rows[: len(rows) * 3 // 4])
        svc = PowerService(PowerSettings(node_budget_watts=4000.0), [_Gpu(g) for g in range(8)])
        svc.add_samples(rows[: len(rows) * 3 // 4])
        k, second = 0, 1
        while k < len(rest):
            edge = start + second
            batch = []
            while k < len(rest) and rest[k].nvml_timestamp_us / 1e6 < edge:
                batch.append(rest[k])
                k += 1
            for target, out in ((svc_every, None), (svc, "split")):
                target.add_samples(batch)
                c0 = time.process_time()
                before = target._analysed_at
                target.tick(1_700_000_000.0 + second)
                spent = time.process_time() - c0
                if out is None:
                    every.append(spent)
                elif target._analysed_at != before:
                    full.append(spent)
                else:
                    cheap.append(spent)
            second += 1
    per_second = (sum(full) + sum(cheap)) / (len(full) + len(cheap))
    print(f"  tick, full analysis every tick (before): {median(every) * 1e3:.2f} ms (median of {len(every)})")
    print(f"  tick, full analysis + decision:          {median(full) * 1e3:.2f} ms, every 5 s")
    print(f"  tick, escalation check only:             {median(cheap) * 1e3:.2f} ms, the other seconds")
    print(f"  main-loop power cost: {per_second * 1e3:.2f} ms per second of CPU "
          f"(target: under 2 ms; a full analysis every second cost {median(every) * 1e3:.1f} ms here, "
          f"9.3 ms in the daemon; {median(every) / per_second:.1f}x less)")


SMI_COLUMNS = "timestamp, index, power.draw.instant [W], utilization.gpu [%], temperature.gpu"


def write_smi_trace(path: Path, rows: int = 2_000_000, gpus: int = 8, log_hz: float = 20.0) -> None:
    """An nvidia-smi log of 8 GPUs polled at 20 Hz (each 10 Hz NVML update printed about twice)."""
    n = rows // gpus
    rng = np.random.default_rng(0)
    start = 1_714_564_800.0
    log_t = start + np.arange(n) / log_hz + np.cumsum(rng.uniform(0, 0.0002, n))
    upd_t = start - 0.05 + np.arange(int((log_t[-1] - start) * 10) + 3) * 0.1
    phases = np.arange(gpus)
    w_upd = 300 + 150 * (np.sin(2 * np.pi * 0.7 * upd_t[:, None] + phases) > 0) + rng.normal(0, 3, (upd_t.size, gpus))
    idx = np.searchsorted(upd_t, log_t, side="right") - 1
    secs = np.floor(log_t).astype(np.int64)
    ms = np.minimum(np.round((log_t - secs) * 1000).astype(int), 999)
    with path.open("w") as f:
        f.write(SMI_COLUMNS + "\n")
        prefix: dict[int, str] = {}
        buf: list[str] = []
        for i in range(n):
            s = int(secs[i])
            p = prefix.get(s)
            if p is None:
                prefix.clear()
                p = prefix[s] = datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y/%m/%d %H:%M:%S")
            stamp = f"{p}.{ms[i]:03d}"
            wi = w_upd[idx[i]]
            buf += [f"{stamp}, {g}, {wi[g]:.2f} W, 97 %, 54\n" for g in range(gpus)]
            if len(buf) > 100_000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))


def write_rasd_trace(path: Path, rows: int = 2_000_000, gpus: int = 2) -> None:
    """rasd's own layout: 2 GPUs x 1 million distinct 10 Hz updates (28 hours): the analysis's worst case."""
    n = rows // gpus
    rng = np.random.default_rng(1)
    t = 1_714_564_800.0 + np.arange(n) * 0.1 + rng.uniform(-0.002, 0.002, n)
    with path.open("w") as f:
        f.write("timestamp,gpu,watts\n")
        for k in range(0, n, 100_000):
            part = slice(k, min(k + 100_000, n))
            lines = []
            for g in range(gpus):
                w = 300 + 150 * (np.sin(2 * np.pi * 0.7 * t[part] + g) > 0) + rng.normal(0, 3, t[part].size)
                lines += [f"{a:.6f},{g},{b:.3f}" for a, b in zip(t[part], w)]
            f.write("\n".join(lines) + "\n")


def run_analyze(path: Path) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak RSS MB) of one `rasd power analyze PATH --json`."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rasd", "power", "analyze", str(path), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"rasd power analyze {path} failed: {err}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024.0


def bench_large_trace(repeat: int = 3) -> None:
    print("== rasd power analyze on a 2-million-row trace (whole command: start, read, analyse, decide)")
    with tempfile.TemporaryDirectory(prefix="rasd-bench-") as tmp:
        files = {"nvidia-smi, 8 GPUs at 20 Hz": Path(tmp) / "smi.csv", "rasd layout, 2 GPUs x 1M": Path(tmp) / "rasd.csv"}
        write_smi_trace(files["nvidia-smi, 8 GPUs at 20 Hz"])
        write_rasd_trace(files["rasd layout, 2 GPUs x 1M"])
        runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in files}
        for _ in range(repeat):  # interleaved, A B A B
            for name, path in files.items():
                runs[name].append(run_analyze(path))
        for name, r in runs.items():
            cpu = median(x[0] for x in r)
            wall = median(x[1] for x in r)
            rss = max(x[2] for x in r)
            size = files[name].stat().st_size / 1e6
            print(f"  {name} ({size:.0f} MB): CPU {cpu:.2f} s (target < 3 s), wall {wall:.2f} s, "
                  f"peak RSS {rss:.0f} MB (target < 300 MB); median of {repeat}")


def bench_sampler(seconds: float = 6.0) -> None:
    print(f"== sampler on the fake backend (8 GPUs, {seconds:.0f} s of real time per rate)")
    print("   NVML refresh modelled at 100 ms; 'missed' = NVML updates between two captured ones")
    for hz in (10.0, 20.0, 50.0):
        be = open_backend("fake", "power-swing")
        try:
            gpus = be.adapter.gpus()
            got: dict[int, list[int]] = {g.index: [] for g in gpus}
            lock = threading.Lock()

            def sink(samples) -> None:
                with lock:
                    for s in samples:
                        got[s.gpu].append(s.nvml_timestamp_us)

            sampler = PowerSampler(gpus, hz, sink)
            sampler.start()
            time.sleep(seconds)
            rates = sampler.rates()
            stats = sampler.stats()
            sampler.stop()
            sampler.join(2.0)
        finally:
            be.close()
        captured = missed = 0
        for ts in got.values():
            if len(ts) < 2:
                continue
            d = np.diff(np.asarray(ts, dtype=float)) / 1e5  # in 100 ms refresh periods
            captured += len(ts)
            missed += int(np.sum(np.maximum(np.round(d) - 1, 0)))
        rate = median(rates.values()) if rates else float("nan")
        share = captured / (captured + missed) if captured else float("nan")
        print(f"  poll {hz:4.0f} Hz: achieved {rate:5.2f} distinct updates/s per GPU (NVML refresh 10 Hz), "
              f"captured {share:6.1%} of updates, reads {stats['reads']}, distinct {stats['distinct']}")


def main() -> None:
    bench_analysis()
    bench_service()
    bench_large_trace()
    bench_sampler()


if __name__ == "__main__":
    main()
