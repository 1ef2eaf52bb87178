"""Benchmark of `rasd replay`: a generated fleet log through parsing, classification,
escalation and the in-memory store. Prints events/s and peak RSS; no timed asserts.

    python tests/bench/bench_replay.py [--gpus 1000] [--days 7] [--per-gpu-day 6]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from rasd.ladder.replay import parse_lines, replay


def fleet_log(gpus: int, days: float, per_gpu_day: float, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    t0 = 1_735_689_600.0
    n = int(gpus * days * per_gpu_day)
    xids = [13, 31, 43, 45, 48, 62, 63, 64, 74, 79, 92, 94, 95, 109, 119, 154]
    lines = []
    for _ in range(n):
        t = t0 + rnd.random() * days * 86400
        g = rnd.randrange(gpus)
        k = rnd.random()
        if k < 0.45:
            code = rnd.choice(xids)
            ev = {"kind": "xid", "xid": code}
            if code == 74:
                ev["message"] = f"NVLink: fatal error detected on link {rnd.randrange(18)}"
            elif code == 13:
                ev["message"] = f"Graphics SM Warp Exception on (GPC {rnd.randrange(8)}, TPC 1)"
        elif k < 0.6:
            ev = {"kind": "nvlink", "link": rnd.randrange(18),
                  "state": rnd.choice(["up", "down"]), "replay_errors": rnd.randrange(2)}
        elif k < 0.7:
            ev = {"kind": "ecc", "volatile_uncorrected": rnd.randrange(2),
                  "volatile_corrected": rnd.randrange(5)}
        elif k < 0.75:
            ev = {"kind": "remap", "pending": rnd.random() < 0.5, "failure": rnd.random() < 0.02}
        elif k < 0.8:
            ev = {"kind": "pcie_replay", "count": rnd.randrange(50), "lanes": 16, "gen": 5}
        elif k < 0.85:
            ev = {"kind": "thermal"}
        elif k < 0.9:
            ev = {"kind": "recovery_action",
                  "action": rnd.choice(["gpu_reset", "node_reboot", "drain_p2p"])}
        else:
            ev = {"kind": "remedy", "action": rnd.choice(["restart_process", "reset_gpu",
                                                           "reboot_node"]),
                  "result": "ok" if rnd.random() < 0.9 else "failed"}
        ev.update(time=round(t, 3), gpu=g)
        lines.append(json.dumps(ev))
    lines.sort(key=lambda s: json.loads(s)["time"])
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--per-gpu-day", type=float, default=6)
    a = ap.parse_args()
    lines = fleet_log(a.gpus, a.days, a.per_gpu_day)
    t0 = time.perf_counter()
    items = parse_lines(lines)
    t1 = time.perf_counter()
    decisions = replay(items)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"fleet: {a.gpus} GPUs x {a.days:g} days, {len(items)} events, "
          f"{len(decisions)} decisions")
    print(f"parse:  {len(items) / (t1 - t0):,.0f} events/s ({t1 - t0:.2f} s)")
    print(f"replay: {len(items) / (t2 - t1):,.0f} events/s ({t2 - t1:.2f} s, classify + "
          "escalate + in-memory store)")
    print(f"total:  {len(items) / (t2 - t0):,.0f} events/s")
    print(f"peak RSS: {rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
