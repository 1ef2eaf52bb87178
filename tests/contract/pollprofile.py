"""Where a health poll's time goes on this node's NVML: each GPU polled ``--polls`` times, fast
and slow polls apart, under cProfile; prints the NVML functions by time per poll, and the whole
poll's CPU and wall time. Needs an NVML (a real GPU, or NVIDIA's mock through its environment).

    python -m tests.contract.pollprofile [--polls 50]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

from rasd.backends import open_backend


def profile(gpus: list, polls: int, slow: bool) -> dict:
    for g in gpus:
        g.poll(slow=True)  # the first poll reads everything and finds what is unsupported
    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    prof.enable()
    for _ in range(polls):
        for g in gpus:
            g.poll(slow=slow)
    prof.disable()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    n = polls * len(gpus)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    nvml = []
    for (_, _, name), (_, calls, tottime, _, _) in stats.items():
        if name.startswith("nvml"):
            nvml.append((name, calls / n, 1e6 * tottime / n))
    nvml.sort(key=lambda x: -x[2])
    return {
        "poll_cpu_us": round(1e6 * cpu / n, 1), "poll_wall_us": round(1e6 * wall / n, 1),
        "nvml_calls_per_poll": round(sum(c for _, c, _ in nvml), 1),
        "nvml_us_per_poll": round(sum(t for _, _, t in nvml), 1),
        "top": [{"call": name, "per_poll": round(c, 2), "us_per_poll": round(t, 1)} for name, c, t in nvml[:15]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", type=int, default=50)
    args = ap.parse_args()
    backend = open_backend("nvml")
    gpus = backend.adapter.gpus()
    out = {"gpus": len(gpus), "fast": profile(gpus, args.polls, False), "slow": profile(gpus, args.polls, True)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
