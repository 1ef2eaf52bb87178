"""Scrape benchmark: prints figures with their targets beside them, asserts nothing.

1. Cost of one scrape in daemon CPU at 8 and 72 fake GPUs, when the snapshot changed since the
   last scrape (render + gzip: what a Prometheus scraping every 15 s costs) and when it did not
   (cached bytes), beside prometheus_client's ``generate_latest`` over the same sections;
   interleaved A B A B, medians quoted. Target: under 10 ms at 72 GPUs.
2. A scrape storm on a whole `rasd run --backend fake` over loopback: N concurrent scrapers
   (asyncio, back to back, gzip like Prometheus) for a bounded time and request count. Prints
   errors, p50/p99/max latency, the daemon's CPU, and its health polls during the storm.
   Targets: 0 errors, p99 under 100 ms, polls at their pace (one per interval, no overrun).

Run: python tests/bench/bench_scrape.py [--scrapers 50 --seconds 20 --requests 100000] [--json PATH]
(figures also merged into a results file: tests/bench/results.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import psutil
from prometheus_client import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exporters.prometheus import ScrapeCache, make_registry  # noqa: E402
from rasd import config  # noqa: E402
from rasd.backends import open_backend  # noqa: E402
from rasd.daemon import Daemon  # noqa: E402
from tests.bench import results  # noqa: E402

SCRAPE_TARGET_MS = 10.0
P99_TARGET_MS = 100.0


def _daemon(gpus: int, tmp: Path) -> Daemon:
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / f"s{gpus}.db"), control_socket=str(tmp / f"s{gpus}.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    return Daemon(cfg, open_backend("fake", gpus=gpus), hostname="bench")


def bench_cost(gpus: int, pairs: int, tmp: Path) -> dict[str, float]:
    d = _daemon(gpus, tmp)
    try:
        snaps = []
        for _ in range(2 * pairs + 2):
            for p in d.pollers:
                p.poll_once()
            d.sampler.round()
            snaps.append(d.tick())
        cur = [snaps[0]]
        cache = ScrapeCache(lambda: cur[0])
        reg = make_registry(lambda: cur[0])
        cache.gzipped(cache.get())  # warm: first render fills the prefix caches
        ours, theirs, cached = [], [], []
        for i in range(pairs):  # A B A B over fresh snapshots
            cur[0] = snaps[2 + 2 * i]
            t0 = time.process_time()
            cache.gzipped(cache.get())
            ours.append(time.process_time() - t0)
            t0 = time.process_time()
            cache.gzipped(cache.get())
            cached.append(time.process_time() - t0)
            cur[0] = snaps[3 + 2 * i]
            t0 = time.process_time()
            generate_latest(reg)
            theirs.append(time.process_time() - t0)
        body = cache.get().body
        return {
            "ours_ms": statistics.median(ours) * 1e3, "upstream_ms": statistics.median(theirs) * 1e3,
            "cached_ms": statistics.median(cached) * 1e3,
            "series": sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#")),
            "kib": len(body) / 1024, "gzip_kib": len(cache.gzipped(cache.get())) / 1024,
        }
    finally:
        d.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scrape(port: int, timeout: float) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.0 200") and not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(data[:40])
    return time.perf_counter() - t0


async def _storm(port: int, scrapers: int, seconds: float, max_requests: int, timeout: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    budget = [max_requests]

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < end and budget[0] > 0:
            budget[0] -= 1
            try:
                latencies.append(await _scrape(port, timeout))
            except (OSError, asyncio.TimeoutError, RuntimeError):
                errors += 1

    await asyncio.gather(*(one() for _ in range(scrapers)))
    return latencies, errors


def _series(port: int, name: str) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]={name}", timeout=10).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", body, re.M)}


def _watch_polls(port: int, seconds: float) -> list[float]:
    """Every GPU's last health-poll duration, read twice a second for ``seconds`` (seconds)."""
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.extend(_series(port, "rasd_gpu_poll_duration_seconds").values())
        except OSError:
            pass
        time.sleep(0.5)
    return out


def _q(values: list[float], f: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(f * len(v)))] * 1e3 if v else float("nan")


def bench_storm(scrapers: int, seconds: float, max_requests: int, scenario: str | None, tmp: Path) -> dict[str, float]:
    port = _free_port()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"), XDG_RUNTIME_DIR=str(tmp / "run"))
    cmd = [sys.executable, "-m", "rasd", "run", "--backend", "fake", "--listen", f"127.0.0.1:{port}"]
    if scenario:
        cmd += ["--scenario", scenario]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ps = psutil.Process(proc.pid)
        for _ in range(100):
            try:
                if _series(port, "rasd_health_polls_total"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        time.sleep(3)  # past start-up
        quiet = _watch_polls(port, 5.0)  # poll durations without the storm, for comparison
        polls0 = sum(_series(port, "rasd_health_polls_total").values())
        overruns0 = sum(_series(port, "rasd_gpu_poll_overruns_total").values())
        c0, w0 = sum(ps.cpu_times()[:2]), time.monotonic()
        during: list[float] = []
        watcher = threading.Thread(target=lambda: during.extend(_watch_polls(port, seconds)), daemon=True)
        watcher.start()
        lat, errors = asyncio.run(_storm(port, scrapers, seconds, max_requests, timeout=10.0))
        wall = time.monotonic() - w0
        watcher.join(seconds + 15)
        cpu = sum(ps.cpu_times()[:2]) - c0
        polls = sum(_series(port, "rasd_health_polls_total").values()) - polls0
        overruns = sum(_series(port, "rasd_gpu_poll_overruns_total").values()) - overruns0
        lat.sort()
        q = (lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3) if lat else (lambda f: float("nan"))
        return {
            "requests": len(lat), "errors": errors, "wall": wall, "rps": len(lat) / wall,
            "p50": q(0.50), "p99": q(0.99), "max": lat[-1] * 1e3 if lat else float("nan"),
            "cpu_pct": 100 * cpu / wall, "cpu_ms_per_scrape": 1e3 * cpu / max(1, len(lat)),
            "polls": polls, "expected_polls": wall / 1.0, "overruns": overruns,
            "threads": ps.num_threads(),
            "poll_quiet_p50": _q(quiet, 0.5), "poll_quiet_max": max(quiet, default=float("nan")) * 1e3,
            "poll_storm_p50": _q(during, 0.5), "poll_storm_max": max(during, default=float("nan")) * 1e3,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=15, help="interleaved scrape-cost pairs per node size")
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--requests", type=int, default=100000, help="stop the storm after this many requests")
    ap.add_argument("--scenario", default=None, help="scenario for the storm's daemon (default: 8 healthy GPUs)")
    results.add_arguments(ap)
    args = ap.parse_args()
    rec = results.Recorder("scrape", args)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(rec.machine())
        for n in (8, 72):
            r = bench_cost(n, args.pairs, tmp)
            col = f"{n} GPUs"
            rec.add(f"scrape.cost.{n}", "scrape of a new snapshot (render + gzip), daemon CPU", r["ours_ms"], "ms",
                    target=results.below(SCRAPE_TARGET_MS, " ms") if n == 72 else None, column=col,
                    text=f"{r['ours_ms']:.2f} ms", notes={"pairs": args.pairs})
            rec.add(f"scrape.cached.{n}", "scrape of the same snapshot (cached bytes)", r["cached_ms"], "ms",
                    column=col, text=f"{r['cached_ms']:.3f} ms")
            rec.add(f"scrape.generate_latest.{n}", "prometheus_client's `generate_latest` over the same sections",
                    r["upstream_ms"], "ms", column=col, text=f"{r['upstream_ms']:.1f} ms")
            rec.add(f"scrape.series.{n}", "series, exposition size (gzip)", r["series"], "series", column=col,
                    text=f"{r['series']:,}, {r['kib']:.0f} KiB ({r['gzip_kib']:.0f} KiB)")
            mark = "ok" if n != 72 or r["ours_ms"] < SCRAPE_TARGET_MS else "MISSED"
            print(f"scrape cost {n:2d} GPUs ({r['series']} series, {r['kib']:.0f} KiB, gzip {r['gzip_kib']:.0f} KiB): "
                  f"new snapshot {r['ours_ms']:.2f} ms CPU (target < {SCRAPE_TARGET_MS:.0f} ms at 72: {mark}), "
                  f"cached {r['cached_ms']:.3f} ms, generate_latest {r['upstream_ms']:.2f} ms "
                  f"(x{r['upstream_ms'] / r['ours_ms']:.1f}); medians of {args.pairs} interleaved pairs")
        if args.seconds > 0:
            r = bench_storm(args.scrapers, args.seconds, args.requests, args.scenario, tmp)
            ok = lambda c: "ok" if c else "MISSED"  # noqa: E731
            print(f"storm: {args.scrapers} scrapers, {r['requests']} scrapes in {r['wall']:.1f} s ({r['rps']:.0f}/s), "
                  f"daemon threads {r['threads']}")
            print(f"  errors {r['errors']} (target 0: {ok(r['errors'] == 0)})")
            print(f"  latency p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms (target < {P99_TARGET_MS:.0f} ms: "
                  f"{ok(r['p99'] < P99_TARGET_MS)}), max {r['max']:.1f} ms")
            print(f"  daemon CPU {r['cpu_pct']:.0f}% of one core ({r['cpu_ms_per_scrape']:.2f} ms per scrape)")
            print(f"  health polls {r['polls']:.0f} in {r['wall']:.1f} s at 1 s interval (target ~{r['expected_polls']:.0f}: "
                  f"{ok(r['polls'] >= r['expected_polls'] - 2)}), overruns {r['overruns']:.0f} (target 0: "
                  f"{ok(r['overruns'] == 0)})")
            print(f"  GPU poll duration quiet p50 {r['poll_quiet_p50']:.2f} ms max {r['poll_quiet_max']:.2f} ms; "
                  f"during the storm p50 {r['poll_storm_p50']:.2f} ms max {r['poll_storm_max']:.2f} ms "
                  "(target: about the same)")
            col = f"{args.scrapers} scrapers, {r['wall']:.0f} s"
            rec.add("scrape.storm.errors", "scrape storm: errors", r["errors"], "errors", target=results.at_most(0, text="none"),
                    table="scrape_storm", text=f"{r['errors']} of {r['requests'] + r['errors']:,} ({col})")
            rec.add("scrape.storm.p99", "scrape storm: latency p99 (p50)", r["p99"], "ms",
                    target=results.below(P99_TARGET_MS, " ms"), table="scrape_storm",
                    text=f"{r['p99']:.1f} ms ({r['p50']:.1f} ms)")
            polls_ok = r["polls"] >= r["expected_polls"] - 2 and r["overruns"] == 0
            rec.add("scrape.storm.polls", "scrape storm: health polls, overruns", r["polls"], "polls",
                    target=results.stated("polls unmoved"), met=polls_ok, table="scrape_storm",
                    text=f"{r['polls']:.0f} in {r['wall']:.0f} s, {r['overruns']:.0f} overruns; poll p50 "
                         f"{r['poll_quiet_p50']:.2f} ms quiet, {r['poll_storm_p50']:.2f} ms in the storm")
    rec.save()


if __name__ == "__main__":
    main()
