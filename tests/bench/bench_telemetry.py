"""Telemetry spine benchmark: prints figures, asserts nothing.

For 8 and 72 fake GPUs: CPU time per health poll (all GPUs), per power-sampler round, per scrape;
series and bytes per scrape; then a whole `rasd run --backend fake` at defaults for a while:
CPU share of one core and RSS. Run: python tests/bench/bench_telemetry.py [--daemon-seconds N]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exporters.prometheus import ScrapeCache  # noqa: E402
from rasd import config  # noqa: E402
from rasd.backends import open_backend  # noqa: E402
from rasd.daemon import Daemon  # noqa: E402


def cpu() -> float:
    t = time.process_time()
    return t


def bench_node(gpus: int, rounds: int, tmp: Path) -> dict[str, float]:
    cfg = config.Config.default()
    cfg = replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / f"b{gpus}.db"), control_socket=str(tmp / f"b{gpus}.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
    be = open_backend("fake", gpus=gpus)
    d = Daemon(cfg, be, hostname="bench")
    try:
        for p in d.pollers:  # warm-up: identity, link probing
            p.poll_once()
        d.tick()
        t0 = cpu()
        for _ in range(rounds):
            for p in d.pollers:
                p.poll_once()
        poll = (cpu() - t0) / rounds
        t0 = cpu()
        for _ in range(rounds * 4):
            d.sampler.round()
        power = (cpu() - t0) / (rounds * 4)
        t0 = cpu()
        snaps = [d.tick() for _ in range(rounds)]
        tick = (cpu() - t0) / rounds
        # what the daemon serves: a scrape after each new snapshot renders it (and gzips it, as
        # Prometheus asks); scrapes of the same snapshot are cached bytes (bench_scrape.py)
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
        return {
            "poll_ms": poll * 1e3, "power_round_ms": power * 1e3, "tick_ms": tick * 1e3,
            "scrape_ms": scrape * 1e3, "series": series, "bytes": len(text),
        }
    finally:
        d.stop()


def bench_daemon(seconds: float, tmp: Path) -> dict[str, float]:
    port = 19000 + os.getpid() % 1000
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"), XDG_RUNTIME_DIR=str(tmp / "run"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasd", "run", "--backend", "fake", "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        ps = psutil.Process(proc.pid)
        time.sleep(5)  # start-up (imports, first polls) is not steady state
        c0 = sum(ps.cpu_times()[:2])
        w0 = time.monotonic()
        import urllib.request

        scrapes = 0
        end = w0 + seconds
        while time.monotonic() < end:  # one scrape every 15 s, like a default Prometheus
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            scrapes += 1
            time.sleep(min(15.0, max(0.0, end - time.monotonic())))
        c1 = sum(ps.cpu_times()[:2])
        rss = ps.memory_info().rss
        return {"cpu_percent_of_one_core": 100 * (c1 - c0) / (time.monotonic() - w0), "rss_mb": rss / 2**20, "scrapes": scrapes}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--daemon-seconds", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        for n in (8, 72):
            r = bench_node(n, args.rounds, tmp)
            print(
                f"{n:3d} fake GPUs: health poll {r['poll_ms']:.2f} ms CPU | power round {r['power_round_ms']:.3f} ms CPU "
                f"(20 Hz -> {r['power_round_ms'] * 20 / 10:.2f}% of one core) | main-loop tick {r['tick_ms']:.2f} ms | "
                f"scrape {r['scrape_ms']:.2f} ms CPU, {r['series']} series, {r['bytes'] / 1024:.1f} KiB"
            )
        if args.daemon_seconds > 0:
            r = bench_daemon(args.daemon_seconds, tmp)
            print(
                f"rasd run --backend fake (8 GPUs, defaults) over {args.daemon_seconds:.0f} s: "
                f"{r['cpu_percent_of_one_core']:.1f}% of one core, RSS {r['rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
