"""Benchmark of `rasd replay` on a year of a 16,384-GPU fleet's fault events.

Targets: at least 100,000 events/s, and memory flat in the number of events (the replay streams;
the peak RSS of a quarter year and of a whole year must be about the same).

The event generator follows a published failure mix. Dubey et al., "The Llama 3 Herd of Models"
(2024), Table 5: 419 unexpected interruptions in a 54-day pre-training run on 16,384 H100 GPUs,
attributed to: faulty GPU 30.1%, GPU HBM3 memory 17.2%, software bug 12.9%, network switch/cable
8.4%, host maintenance 7.6%, GPU SRAM memory 4.5%, GPU system processor 4.1%, NIC 1.7%, NCCL
watchdog timeouts 1.7%, silent data corruption 1.4%, GPU thermal interface and sensor 0.7%, SSD
0.7%, power supply 0.4%, server chassis 0.4%, IO expansion board 0.2%, dependency 0.2%, other
software 0.2%, unknown 0.2%. That is 419 / 54 = 7.76 interruptions a day on 2,048 nodes; each
interruption here emits what a node's driver and NVML would show for its cause (causes outside
the GPU's view, such as an SSD, emit nothing), followed by the operators' remedy. On top comes
non-interrupting noise at ``--noise`` events per GPU per day: application Xids in driver bursts
(several lines within milliseconds), correctable ECC counts, remapped rows, PCIe replays and
NVLink CRC errors below the failure rates, thermal slowdowns.

    python tests/bench/bench_replay.py [--days 365] [--noise 0.5] [--seed 0] [--runs 3]
                                       [--json tests/bench/results/replay.json]

Figures are process CPU time of the `rasd replay` child (not wall time: the machine is shared),
the median of the runs given by ``--runs``; RSS is the child's peak (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

if __package__ in (None, ""):  # run as a script: the repository root, for tests.bench.results
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import results  # noqa: E402

GPUS = 16_384
PER_NODE = 8
NODES = GPUS // PER_NODE
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
DAY = 86_400.0
INTERRUPTIONS_PER_DAY = 419 / 54

# Table 5 of the Llama 3 paper: (share of interruptions, cause)
MIX: tuple[tuple[float, str], ...] = (
    (30.1, "faulty_gpu"), (17.2, "hbm3"), (12.9, "software"), (8.4, "network"),
    (7.6, "host_maintenance"), (4.5, "sram"), (4.1, "gsp"), (1.7, "nic"), (1.7, "nccl_watchdog"),
    (1.4, "sdc"), (0.7, "thermal"), (0.7, "ssd"), (0.4, "power_supply"), (0.4, "chassis"),
    (0.2, "io_expansion"), (0.2, "dependency"), (0.2, "software_other"), (0.2, "unknown"),
)
SM_LINES = ("Graphics SM Warp Exception on (GPC {g}, TPC {t}, SM 0): Out Of Range Address",
            "Graphics SM Global Exception on (GPC {g}, TPC {t}, SM 0): Multiple Warp Errors",
            "Graphics Exception: ESR 0x514730=0x201000e 0x514734=0x24")
Event = dict[str, Any]


def _ev(t: float, node: int, gpu: int, kind: str, **fields: Any) -> Event:
    return {"time": round(t, 6), "host": f"node{node:04d}", "gpu": gpu, "kind": kind, **fields}


def _burst(t: float, node: int, gpu: int, code: int, messages: list[str],
           rnd: random.Random) -> list[Event]:
    out = []
    for m in messages:
        out.append(_ev(t, node, gpu, "xid", xid=code, message=m))
        t += rnd.uniform(0.0001, 0.004)  # the driver prints one fault's lines within ms
    return out


def interruption(cause: str, t: float, node: int, rnd: random.Random) -> list[Event]:
    """What rasd would see of one interruption, then the operators' remedy."""
    g = rnd.randrange(PER_NODE)
    fix = t + rnd.uniform(600, 7200)
    if cause == "faulty_gpu":
        code = rnd.choice((79, 62, 109, 140, 46, 143))
        out = [_ev(t, node, g, "xid", xid=code, message="GPU has fallen off the bus."
                   if code == 79 else "")]
        if code == 79:
            out.append(_ev(t + 1, node, g, "gpu_lost"))
        out.append(_ev(fix, node, g, "remedy", action="reboot_node" if code == 79
                       else "reset_gpu", result="ok"))
        return out
    if cause in ("hbm3", "sram"):
        out = _burst(t, node, g, 48, ["An uncorrectable double bit error (DBE) has been detected "
                                      "on GPU in the framebuffer at partition 6"], rnd)
        if cause == "hbm3":
            out.append(_ev(t + 0.01, node, g, "xid", xid=63, message="Row Remapper: New row "
                           "marked for remapping, reset gpu to activate."))
            out.append(_ev(t + 1, node, g, "ecc", volatile_uncorrected=rnd.randint(1, 4)))
            out.append(_ev(t + 1, node, g, "remap", pending=True,
                           failure=rnd.random() < 0.03))
        else:
            out += _burst(t + 0.02, node, g, 95, ["Uncontained: FBHUB. RST: Yes, D-RST: No"], rnd)
        out.append(_ev(fix, node, g, "remedy", action="reset_gpu", result="ok"))
        return out
    if cause in ("software", "software_other"):
        gpc, tpc = rnd.randrange(8), rnd.randrange(9)
        return _burst(t, node, g, 13, [m.format(g=gpc, t=tpc) for m in SM_LINES], rnd)
    if cause == "network":
        link = rnd.randrange(18)
        out = [_ev(t, node, g, "nvlink", link=link, state="down")]
        out += _burst(t + 0.5, node, g, 74, [f"NVLink: fatal error detected on link {link}"
                                              "(0x100, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)"], rnd)
        out.append(_ev(t + 60, node, g, "nvlink", link=link, state="up"))
        out.append(_ev(fix, node, g, "remedy", action="reset_gpu", result="ok"))
        return out
    if cause == "host_maintenance":
        return [_ev(t, node, g, "remedy", action="reboot_node", result="ok")]
    if cause == "gsp":
        return [_ev(t, node, g, "xid", xid=rnd.choice((119, 120)), message="Timeout after 6s of "
                    "waiting for RPC response from GPU0 GSP!"),
                _ev(fix, node, g, "remedy", action="reset_gpu", result="ok")]
    if cause in ("nic", "io_expansion"):
        return [_ev(t, node, g, "pcie_replay", count=rnd.randint(200, 2000), lanes=16, gen=5,
                    seconds=60)]
    if cause == "nccl_watchdog":
        return _burst(t, node, g, 45, [f"Ch {c:08x}" for c in range(rnd.randint(4, 32))], rnd)
    if cause == "sdc":
        return [_ev(t, node, g, "sdc", verdict="suspect"),
                _ev(t + 1800, node, g, "sdc", verdict=rnd.choice(("confirmed", "cleared")))]
    if cause == "thermal":
        return [_ev(t, node, g, "thermal")]
    if cause in ("power_supply", "chassis"):
        return [_ev(t + i * 0.01, node, i, "gpu_lost") for i in range(PER_NODE)] + \
            [_ev(fix, node, 0, "remedy", action="reboot_node", result="ok")]
    return []  # SSD, dependency, unknown: nothing a GPU daemon sees


def noise(t: float, node: int, rnd: random.Random) -> list[Event]:
    g = rnd.randrange(PER_NODE)
    k = rnd.random()
    if k < 0.30:
        return [_ev(t, node, g, "ecc", volatile_corrected=rnd.randint(1, 50),
                    volatile_uncorrected=0)]
    if k < 0.45:
        return [_ev(t, node, g, "pcie_replay", count=rnd.randint(1, 10), lanes=16, gen=5,
                    seconds=60)]
    if k < 0.60:
        return [_ev(t, node, g, "nvlink", link=rnd.randrange(18), state="up",
                    crc_flit_errors=rnd.randint(1, 100), rate_per_second=rnd.uniform(0.1, 5))]
    if k < 0.75:  # application errors, in the driver's bursts
        code = rnd.choice((13, 31, 43))
        if code == 13:
            gpc, tpc = rnd.randrange(8), rnd.randrange(9)
            return _burst(t, node, g, 13, [m.format(g=gpc, t=tpc) for m in SM_LINES], rnd)
        return _burst(t, node, g, code, [f"Ch {rnd.randrange(64):08x}"] * rnd.randint(1, 3), rnd)
    if k < 0.85:
        return [_ev(t, node, g, "xid", xid=rnd.choice((63, 92, 94)), message="")]
    if k < 0.95:
        return [_ev(t, node, g, "thermal")]
    return [_ev(t, node, g, "retired_pages", single_bit=rnd.randint(0, 3), double_bit=0)]


def fleet_year(days: float, noise_per_gpu_day: float, seed: int = 0) -> Iterator[str]:
    """JSON lines in time order, one day at a time (memory: one day's events)."""
    rnd = random.Random(seed)
    causes = [c for _, c in MIX]
    weights = [w for w, _ in MIX]
    carry: list[Event] = []  # remedies and follow-ups that fall into a later day
    day = 0
    while day < days:
        start = T0 + day * DAY
        end = start + DAY
        events = [e for e in carry if e["time"] < end]
        carry = [e for e in carry if e["time"] >= end]
        n_int = _poisson(rnd, INTERRUPTIONS_PER_DAY)
        for _ in range(n_int):
            cause = rnd.choices(causes, weights)[0]
            events += interruption(cause, rnd.uniform(start, end), rnd.randrange(NODES), rnd)
        for _ in range(_poisson(rnd, noise_per_gpu_day * GPUS)):
            events += noise(rnd.uniform(start, end), rnd.randrange(NODES), rnd)
        carry += [e for e in events if e["time"] >= end]
        events = [e for e in events if e["time"] < end]
        events.sort(key=lambda e: e["time"])
        for e in events:
            yield json.dumps(e, separators=(",", ":"))
        day += 1
    carry.sort(key=lambda e: e["time"])
    for e in carry:
        yield json.dumps(e, separators=(",", ":"))


def _poisson(rnd: random.Random, lam: float) -> int:
    if lam > 50:
        return max(0, round(rnd.gauss(lam, lam ** 0.5)))
    n, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
    while True:
        p *= rnd.random()
        if p < limit:
            return n
        n += 1


def write_log(path: str, days: float, noise_per_gpu_day: float, seed: int) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for line in fleet_year(days, noise_per_gpu_day, seed):
            fh.write(line)
            fh.write("\n")
            n += 1
    return n


# the child reports its own CPU time and peak RSS, its workers' included (a parent's
# RUSAGE_CHILDREN keeps the largest child's peak, which would blur interleaved runs)
_CHILD = """
import resource, sys
from rasd.cli import main
try:
    main(args=sys.argv[1:], prog_name="rasd")
finally:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    sys.stderr.write(f"\\nbench cpu={cpu} maxrss={max(me.ru_maxrss, kids.ru_maxrss)}\\n")
"""


def run_replay(path: str, jobs: int) -> tuple[float, float, int, str]:
    """(CPU seconds, wall seconds, peak RSS bytes of one process, the summary line)."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _CHILD, "replay", "--jobs", str(jobs), path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    wall = time.perf_counter() - t0
    lines = p.stderr.decode().strip().splitlines()
    fields = dict(x.split("=") for x in lines[-1].split()[1:])
    summary = [x for x in lines if x.endswith("closed")][-1]
    return float(fields["cpu"]), wall, int(fields["maxrss"]) * 1024, summary


def _span(days: float) -> str:
    return {365.0: "year", 91.25: "quarter year"}.get(days, f"{days:g} days")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--noise", type=float, default=0.5, help="noise events per GPU per day")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    results.add_arguments(ap)
    a = ap.parse_args()
    rec = results.Recorder("replay", a)
    print(rec.machine())
    with tempfile.TemporaryDirectory() as tmp:
        sizes = (a.days / 4, a.days)
        logs = []
        for days in sizes:
            path = os.path.join(tmp, f"fleet-{days:g}d.jsonl")
            t0 = time.perf_counter()
            n = write_log(path, days, a.noise, a.seed)
            logs.append((days, path, n))
            print(f"generated {n:,} events for {GPUS:,} GPUs x {days:g} days "
                  f"({os.path.getsize(path) / 2**20:,.0f} MiB, {time.perf_counter() - t0:.0f} s)")
        cores = os.cpu_count() or 1
        configs = [(days, path, n, jobs) for days, path, n in logs
                   for jobs in sorted({1, min(cores, 8)})]
        results_: dict[tuple[float, int], list[tuple[float, float, int, str]]] = {
            (c[0], c[3]): [] for c in configs}
        for _ in range(a.runs):  # interleaved: each size and job count in turn
            for days, path, _n, jobs in configs:
                results_[(days, jobs)].append(run_replay(path, jobs))
        load = os.getloadavg()[0]
        print(f"machine: {cores} CPUs, load average {load:.1f} while measuring (other work "
              "shares the CPUs: wall figures are noisy, CPU-time figures less so)")
        target = results.at_least(100_000, " events/s")
        for days, _path, n, jobs in configs:
            rs = results_[(days, jobs)]
            cpu = statistics.median(r[0] for r in rs)
            wall = statistics.median(r[1] for r in rs)
            rss = max(r[2] for r in rs)
            lo, hi = min(r[0] for r in rs), max(r[0] for r in rs)
            print(f"{days:g} days, --jobs {jobs}: {n:,} events; {rs[-1][3]}")
            print(f"  {n / wall:,.0f} events/s wall (target >= 100,000); {n / cpu:,.0f} events "
                  f"per CPU-second (target >= 100,000); median of {len(rs)} runs, CPU "
                  f"{lo:.1f}-{hi:.1f} s")
            print(f"  peak RSS of one process: {rss / 2**20:.0f} MiB")
            size = f"{days:g}d"
            column = f"{_span(days)} ({n / 1e6:.2f} M events)"
            who = "one process" if jobs == 1 else f"`--jobs {jobs}` (hosts spread over {jobs} workers)"
            notes: dict[str, results.Note] = {"days": days, "events": n, "runs": len(rs),
                                              "cpu_min_s": round(lo, 2), "cpu_max_s": round(hi, 2)}
            rate = n / cpu
            rec.add(f"replay.cpu_rate.{size}.jobs{jobs}",
                    f"events per CPU-second, {who}", rate, "events/s",
                    target=target if jobs == 1 else None,
                    text=f"{rate:,.0f} (CPU {lo:.1f}-{hi:.1f} s over {len(rs)} runs)",
                    table="replay", column=column, notes=notes)
            rec.add(f"replay.wall_rate.{size}.jobs{jobs}",
                    f"events per second of wall time, {who}", n / wall, "events/s",
                    text=f"{n / wall:,.0f}", table="replay", column=column,
                    notes={**notes, "load_average": round(load, 2)})
            rec.add(f"replay.rss.{size}.jobs{jobs}",
                    f"peak RSS, {'one process' if jobs == 1 else f'each of {jobs} workers'}",
                    rss / 2**20, "MiB", text=f"{rss / 2**20:.0f} MiB", table="replay",
                    column=column, notes=notes)
        small = max(r[2] for r in results_[(sizes[0], 1)])
        large = max(r[2] for r in results_[(sizes[1], 1)])
        growth = large / small
        print(f"memory: {growth:.2f}x the peak RSS for {logs[1][2] / logs[0][2]:.1f}x the "
              "events (target: flat, about 1x)")
        rec.add("replay.rss_growth", "peak RSS growth from a quarter of the log to all of it, one process",
                growth, "x", target=results.stated("flat (about 1x)"), met=growth < 1.25,
                text=f"{growth:.2f}x for {logs[1][2] / logs[0][2]:.1f}x the events",
                table="replay", column=f"{_span(sizes[1])} ({logs[1][2] / 1e6:.2f} M events)")
    for fig in rec.figures.values():
        print(fig.line())
    rec.save()


if __name__ == "__main__":
    main()
