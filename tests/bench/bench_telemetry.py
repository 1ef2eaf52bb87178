"""Telemetry spine benchmark: prints figures with their targets, asserts nothing.

For 8 and 72 fake GPUs, in-process, CPU time of this process:
- the health poll of all GPUs, fast part (every second) and with the slow part (every 30 s), and
  what that costs a second at the defaults; of the fast poll, rasd's own part a GPU: the same
  NVML calls made on the fake node alone, in turn with the polls, are taken out (medians);
- the power sampler over 20 s of the fake node's time at the default rate on a hand-driven clock: CPU per
  second of sampling, reads per GPU per second (NVML refreshes 10 times a second; a read that can
  only repeat is skipped) and the share of NVML's distinct updates captured;
- the main loop's tick (aggregation, ladder, power service, snapshot);
- the scrape the daemon serves: render + gzip of each new snapshot (scrapes of the same snapshot
  are cached bytes; bench_scrape.py has those and a scrape storm), series and bytes.
The whole daemon, side by side with nvitop-exporter, is bench_side_by_side.py. Run:

    python tests/bench/bench_telemetry.py [--rounds 50] [--json tests/bench/results/telemetry.json]

The figures also go to the benchmarks' results file (tests/bench/results.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import results  # noqa: E402
from exporters.prometheus import ScrapeCache  # noqa: E402
from rasd import config  # noqa: E402
from rasd.backends import open_backend  # noqa: E402
from rasd.backends.fake.clock import ManualClock  # noqa: E402
from rasd.daemon import Daemon  # noqa: E402
from rasd.telemetry.power import PowerSampler  # noqa: E402

NVML_REFRESH_HZ = 10.0


def cpu() -> float:
    return time.process_time()


def bench_polls(gpus: int, rounds: int, tmp: Path) -> dict[str, float]:
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / f"b{gpus}.db"), control_socket=str(tmp / f"b{gpus}.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    d = Daemon(cfg, open_backend("fake", gpus=gpus), hostname="bench")
    try:
        for p in d.pollers:  # warm-up: identity, link count, the first (full) poll
            p.poll_once()
        d.tick()
        t0 = cpu()
        for _ in range(rounds):
            for p in d.pollers:
                p.poll_once()  # the slow part is not due: fast part only
        fast = (cpu() - t0) / rounds
        t0 = cpu()
        for _ in range(rounds):
            for p in d.pollers:
                p.want_slow()
                p.poll_once()
        full = (cpu() - t0) / rounds
        t0 = cpu()
        snaps = [d.tick() for _ in range(rounds)]
        tick = (cpu() - t0) / rounds
        poll_all, fake_part = bench_poll_split(d, rounds)
        cur = [snaps[0]]
        cache = ScrapeCache(lambda: cur[0])
        cache.gzipped(cache.get())
        t0 = cpu()
        for snap in snaps[1:]:
            cur[0] = snap
            cache.gzipped(cache.get())
        scrape = (cpu() - t0) / max(1, rounds - 1)
        text = cache.get().body
        series = sum(1 for ln in text.decode().splitlines() if ln and not ln.startswith("#"))
        interval = cfg.telemetry.slow_interval_seconds
        per_second = fast + (full - fast) / interval
        return {"fast_ms": fast * 1e3, "full_ms": full * 1e3, "poll_per_s_ms": per_second * 1e3,
                "own_us": (poll_all - fake_part) / gpus * 1e6, "poll_us": poll_all / gpus * 1e6,
                "fake_us": fake_part / gpus * 1e6,
                "tick_ms": tick * 1e3, "scrape_ms": scrape * 1e3, "series": series, "bytes": len(text)}
    finally:
        d.stop()


def record_fast_poll(gpus: int) -> list[tuple[str, int, tuple[object, ...]]]:
    """The NVML calls of one fast health poll of every GPU, as (function, GPU, arguments after
    the handle), made on a fake node of its own (the measured daemon's library stays as it is)."""
    be = open_backend("fake", gpus=gpus)
    try:
        lib, index = be.adapter.lib, {}
        handles = be.adapter.gpus()
        for g in handles:
            index[id(g.raw)] = g.index
        calls: list[tuple[str, int, tuple[object, ...]]] = []
        for name in dir(lib):
            if name.startswith("nvmlDevice") and callable(fn := getattr(lib, name)):
                def rec(h: object, *a: object, _fn: Callable[..., object] = fn, _name: str = name) -> object:
                    calls.append((_name, index[id(h)], tuple(list(x) if isinstance(x, list) else x for x in a)))
                    return _fn(h, *a)
                setattr(lib, name, rec)
        for g in handles:
            g.identity()
            g.poll(slow=True)  # the first poll chooses each reading's call
        calls.clear()
        for g in handles:
            g.poll(slow=False)
        return calls
    finally:
        be.close()


def bench_poll_split(d: Daemon, rounds: int) -> tuple[float, float]:
    """(fast poll of every GPU, the fake's part of it), CPU seconds, medians of interleaved
    rounds: the fake's part is the same NVML calls made on the daemon's own fake node without
    rasd around them (``record_fast_poll``), so the difference is rasd's own layers."""
    lib = d.backend.adapter.lib
    raw = {g.index: g.raw for g in d.gpus}
    replay = [(getattr(lib, name), raw[i], args) for name, i, args in record_fast_poll(len(d.gpus))]
    polls, fakes = [], []
    for _ in range(rounds):
        t0 = cpu()
        for p in d.pollers:
            p.poll_once()
        t1 = cpu()
        for fn, h, args in replay:
            fn(h, *args)
        t2 = cpu()
        polls.append(t1 - t0)
        fakes.append(t2 - t1)
    return statistics.median(polls), statistics.median(fakes)


def count_calls(gpus: int) -> tuple[float, float]:
    """NVML calls per GPU per health poll on the fake, (fast part, with the slow part): every
    device call counted once, a field-values call as one whatever its number of fields."""
    be = open_backend("fake", gpus=gpus)
    try:
        lib, n = be.adapter.lib, [0]
        for name in dir(lib):
            if name.startswith("nvmlDevice") and callable(fn := getattr(lib, name)):
                def counted(*a: object, _fn: Callable[..., object] = fn, **k: object) -> object:
                    n[0] += 1
                    return _fn(*a, **k)
                setattr(lib, name, counted)
        handles = be.adapter.gpus()
        for g in handles:
            g.identity()
        n[0] = 0
        for g in handles:
            g.poll(slow=True)
        full = n[0] / gpus
        n[0] = 0
        for g in handles:
            g.poll(slow=False)
        return n[0] / gpus, full
    finally:
        be.close()


def bench_sampler(gpus: int, seconds: float = 20.0, hz: float = config.TelemetrySettings().power_sample_hz) -> dict[str, float]:
    clock = ManualClock(1000.0)
    be = open_backend("fake", gpus=gpus, clock=clock)
    try:
        got: list[object] = []
        s = PowerSampler(be.adapter.gpus(), hz, got.extend, clock=clock)
        rounds = int(seconds * hz)
        for _ in range(int(2 * hz)):  # 2 s to learn each GPU's refresh period
            s.round()
            clock.advance(1.0 / hz)
        got.clear()
        before = s.stats()
        t0 = cpu()
        for _ in range(rounds):
            s.round()
            clock.advance(1.0 / hz)
        used = cpu() - t0
        after = s.stats()
        reads = after["reads"] - before["reads"]
        return {
            "cpu_percent": 100 * used / seconds,
            "reads_per_gpu_s": reads / gpus / seconds,
            "capture": len(got) / (NVML_REFRESH_HZ * gpus * seconds),
        }
    finally:
        be.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    results.add_arguments(ap)
    args = ap.parse_args()
    rec = results.Recorder("telemetry", args)
    print(rec.machine())
    capture_target = results.at_least(99.0, "%")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for n in (8, 72):
            r = bench_polls(n, args.rounds, tmp)
            calls_fast, calls_full = count_calls(n)
            sm = bench_sampler(n)
            col = f"{n} GPUs"
            poll_share = r["poll_per_s_ms"] / 10  # ms of CPU a second -> % of one core
            figs = [
                rec.add(f"telemetry.poll_fast.{n}", "health poll of all GPUs, fast part (every `health_interval_seconds`)",
                        r["fast_ms"], "ms", text=f"{r['fast_ms']:.2f} ms", table="telemetry", column=col),
                rec.add(f"telemetry.poll_full.{n}",
                        "health poll of all GPUs with the slow part (every `slow_interval_seconds`, or after an Xid)",
                        r["full_ms"], "ms", text=f"{r['full_ms']:.1f} ms", table="telemetry", column=col),
                rec.add(f"telemetry.poll_calls.{n}", "NVML calls per GPU a health poll: fast part, with the slow part",
                        calls_fast, "calls", text=f"{calls_fast:.0f}, {calls_full:.0f}", table="telemetry", column=col,
                        notes={"with_slow_part": calls_full}),
                rec.add(f"telemetry.poll_own.{n}",
                        "fast health poll, rasd's own part a GPU (of the whole; the fake node's calls made alone "
                        "taken out)", r["own_us"], "us",
                        text=f"{r['own_us']:.1f} us (of {r['poll_us']:.1f} us)", table="telemetry", column=col,
                        notes={"poll_us": round(r["poll_us"], 2), "fake_us": round(r["fake_us"], 2)}),
                rec.add(f"telemetry.poll_share.{n}", "health poll at the defaults, share of one core",
                        poll_share, "%", text=f"{poll_share:.3f}%", table="telemetry", column=col),
                rec.add(f"telemetry.sampler.{n}",
                        f"power sampler at {config.TelemetrySettings().power_sample_hz:g} Hz (the default): CPU, "
                        "reads per GPU a second, updates captured",
                        100 * sm["capture"], "%", target=capture_target,
                        text=f"{sm['cpu_percent']:.2f}% of a core, {sm['reads_per_gpu_s']:.1f}, "
                             f"{100 * sm['capture']:.2f}%",
                        table="telemetry", column=col,
                        notes={"cpu_percent": round(sm["cpu_percent"], 3),
                               "reads_per_gpu_s": round(sm["reads_per_gpu_s"], 2)}),
                rec.add(f"telemetry.tick.{n}", "main-loop tick (without a power window)", r["tick_ms"], "ms",
                        text=f"{r['tick_ms']:.2f} ms", table="telemetry", column=col),
                rec.add(f"telemetry.scrape.{n}", "scrape of a new snapshot (render + gzip)", r["scrape_ms"], "ms",
                        target=results.below(10.0, " ms") if n == 72 else None,
                        text=f"{r['scrape_ms']:.1f} ms, {r['series']:,} series, {r['bytes'] / 1024:.0f} KiB",
                        table="telemetry", column=col),
            ]
            print(f"{n} fake GPUs (the fake's own simulation included):")
            for f in figs:
                print("  " + f.line())
    rec.save()


if __name__ == "__main__":
    main()
