"""Power benchmarks: analysis cost per GPU per window, the service tick at 8 GPUs, and the
sampler's achieved distinct-update rate against NVML's ~10 Hz refresh on the fake backend.

Run: python tests/bench/bench_power.py   (about 30 s; prints figures, asserts nothing)
"""

from __future__ import annotations

import threading
import time
from statistics import median

import numpy as np

from rasd.backends import open_backend
from rasd.model import PowerSample
from rasd.power.analysis import analyze_series, analyze_window
from rasd.power.decide import GpuLimits, decide
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
    limits = {g: GpuLimits(700.0, 200.0, 700.0) for g in range(8)}
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
    print("== PowerService at 8 GPUs (what the daemon pays every health poll)")
    svc = PowerService(PowerSettings(node_budget_watts=4000.0), [_Gpu(g) for g in range(8)])
    rows: list[PowerSample] = []
    for g in range(8):
        t, w = nvml_trace(Wave(hz=0.8, swing_watts=300.0, shape="square", noise_watts=5.0), 30.0,
                          rng=np.random.default_rng(g))
        rows += to_samples(g, t, w)
    t0 = time.perf_counter()
    for s in rows:
        svc.add_samples([s])
    per_add = (time.perf_counter() - t0) / len(rows)
    print(f"  add_samples: {per_add * 1e6:.2f} us per reading (sampler thread)")
    s = timed(lambda: svc.tick(1_700_000_100.0), 50)
    print(f"  tick (window copy + analysis + decision + budget): {s * 1e3:.2f} ms")


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
    bench_sampler()


if __name__ == "__main__":
    main()
