"""How NVML's instant power (field 186) really refreshes on this node, and what share of its
updates the power sampler captures. Needs a real GPU; prints one JSON object.

    python -m tests.contract.refreshprobe [--seconds S] [--hz HZ] [--no-load]

For each phase (idle, then under a matrix-multiply load where CuPy is present), every GPU is read
as fast as one thread can (the reference) while the sampler runs beside it at its configured rate.
Per GPU it reports:
- how often the field's timestamp changes, and the spacing of those changes (the refresh period);
- whether the value ever changes under an unchanged timestamp (then stamps do not mark refreshes,
  and repeats can only be told apart by value);
- the sampler's dedup method, and the share of the reference's distinct timestamps (or, where
  stamps change on every read, of its value changes) that the sampler captured in the same window.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import threading
import time
from typing import Any

from rasd.backends import open_backend
from rasd.telemetry.power import PowerSampler

TRANSIENT_MS = 1.0  # a value held for less than this is a transient of the refresh
EDGE_SECONDS = 0.5  # the window's ends are left out: the reference and the sampler start apart


def _reference(gpu: Any, stop: threading.Event, out: list[tuple[int, int, float, int]]) -> None:
    """Read one GPU's field 186 back to back: (monotonic ns, NVML timestamp us, watts, wall ns)."""
    while not stop.is_set():
        r = gpu.instant_power()
        if r is not None:
            out.append((time.monotonic_ns(), r[1], r[0], time.time_ns()))


def _load(stop: threading.Event, seconds: float) -> dict[str, Any]:
    """Matrix multiplies on GPU 0 until ``stop``; what ran, or why none did."""
    try:
        import cupy as cp
    except ImportError:
        return {"ran": False, "why": "no CuPy"}
    n = 8192
    a = cp.random.random((n, n), dtype=cp.float32).astype(cp.float16)
    b = cp.random.random((n, n), dtype=cp.float32).astype(cp.float16)
    done = 0
    t0 = time.monotonic()
    while not stop.is_set() and time.monotonic() - t0 < seconds + 5:
        for _ in range(8):
            a @ b
        cp.cuda.Device(0).synchronize()
        done += 8
    return {"ran": True, "matmuls": done, "tflops": round(2 * n**3 * done / max(time.monotonic() - t0, 1e-9) / 1e12, 1)}


def _spacing_ms(stamps: list[int]) -> dict[str, float] | None:
    gaps = [(b - a) / 1e3 for a, b in zip(stamps, stamps[1:]) if b > a]
    return _spread(gaps) if len(gaps) >= 2 else None


def _spread(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=10)
    return {"median": round(statistics.median(xs), 2), "p10": round(q[0], 2), "p90": round(q[-1], 2)}


def _phase(backend: Any, gpus: list[Any], seconds: float, hz: float, load: bool) -> dict[str, Any]:
    stop = threading.Event()
    refs: list[list[tuple[int, int, float, int]]] = [[] for _ in gpus]
    threads = [threading.Thread(target=_reference, args=(g, stop, refs[i]), daemon=True) for i, g in enumerate(gpus)]
    load_info: dict[str, Any] = {"ran": False, "why": "not asked"}
    loader = None
    if load:
        def run_load() -> None:
            load_info.update(_load(stop, seconds))
        loader = threading.Thread(target=run_load, daemon=True)
        loader.start()
        time.sleep(1.0)  # the load's allocation and first kernels before the window opens
    samples: list[Any] = []
    native = backend.adapter.native_power(gpus)
    sampler = PowerSampler(gpus, hz, samples.extend, native=native)
    for t in threads:
        t.start()
    sampler.start()
    t0 = time.monotonic_ns()
    time.sleep(seconds)
    t1 = time.monotonic_ns()
    sampler.stop()
    sampler.join(1.0)
    sampler.drain()
    stop.set()
    for t in threads:
        t.join(2.0)
    if loader is not None:
        loader.join(30.0)
    lo, hi = t0 + int(EDGE_SECONDS * 1e9), t1 - int(EDGE_SECONDS * 1e9)
    span = (hi - lo) / 1e9
    per_gpu = {}
    for i, g in enumerate(gpus):
        ref = [r for r in refs[i] if lo <= r[0] <= hi]
        if len(ref) < 2:
            per_gpu[str(g.index)] = {"reads": len(ref), "why": "too few reference reads"}
            continue
        stamps = [r[1] for r in ref]
        new_stamp = [j for j in range(1, len(ref)) if ref[j][1] != ref[j - 1][1]]
        value_under_same_stamp = sum(
            1 for j in range(1, len(ref)) if ref[j][1] == ref[j - 1][1] and ref[j][2] != ref[j - 1][2])
        value_changes = [j for j in range(1, len(ref)) if ref[j][2] != ref[j - 1][2]]
        # A value held for less than TRANSIENT_MS before the next change is a transient of the
        # refresh (the reading passing through a value), not an update anyone could sample
        ends = [ref[j][0] for j in value_changes[1:]] + [ref[-1][0]]
        held_ms = [(e - ref[j][0]) / 1e6 for j, e in zip(value_changes, ends)]
        # An update is a held value that differs from the held value before it: a transient that
        # falls back to the value before it (A, then B for microseconds, then A) is no update
        updates = []
        held_before = ref[0][2]
        for j, h in zip(value_changes, held_ms):
            if h >= TRANSIENT_MS and ref[j][2] != held_before:
                updates.append(j)
            if h >= TRANSIENT_MS:
                held_before = ref[j][2]
        after = [ref[j][2] for j in value_changes[1:]] + [ref[-1][2]]
        transients = [(ref[j - 1][2], ref[j][2], a) for j, h, a in zip(value_changes, held_ms, after) if h < TRANSIENT_MS]
        first_ts, last_ts = ref[0][1], ref[-1][1]
        ref_stamps = set(stamps)
        mine = [s for s in samples if s.gpu == g.index and first_ts <= s.nvml_timestamp_us <= last_ts]
        mine_stamps = {s.nvml_timestamp_us for s in mine}
        every_read_new = len(new_stamp) >= 0.9 * (len(ref) - 1)
        gs = sampler._gpus[i]
        entry: dict[str, Any] = {
            "reads": len(ref),
            "reads_per_s": round(len(ref) / span, 1),
            "stamp_changes_per_s": round(len(new_stamp) / span, 2),
            "stamp_spacing_ms": _spacing_ms(sorted(ref_stamps)),
            "share_of_reads_with_a_new_stamp": round(len(new_stamp) / (len(ref) - 1), 4),
            "value_changes_under_an_unchanged_stamp": value_under_same_stamp,
            "value_changes_per_s": round(len(value_changes) / span, 2),
            # when the value changed (the first read with the new value): the refresh period where
            # stamps do not show it, but only changes that moved the value are seen
            "value_change_spacing_ms": _spacing_ms([ref[j][0] // 1000 for j in value_changes]),
            "updates_per_s": round(len(updates) / span, 2),
            "update_spacing_ms": _spacing_ms([ref[j][0] // 1000 for j in updates]),
            "transients_per_s": round(len(transients) / span, 2),
            "transient_held_ms": _spread([h for h in held_ms if h < TRANSIENT_MS]) if len(transients) >= 2 else None,
            # a transient's value against the values either side of it: the reading bouncing
            # back, or passing through a value between the old and the new one
            "transients_then_back": sum(1 for b, v, a in transients if a == b),
            "transients_between": sum(1 for b, v, a in transients if min(b, a) < v < max(b, a)),
            "transient_examples": [list(t) for t in transients[:6]],
            "distinct_watts": len({r[2] for r in ref}),
            "watts_min_max": [min(r[2] for r in ref), max(r[2] for r in ref)],
            # wall clock when the read returned, less the stamp: near 0 on every read where the
            # stamp is the read's own time, spread over a refresh period where it is the refresh's
            "read_minus_stamp_ms": _spread([(r[3] / 1e3 - r[1]) / 1e3 for r in ref]),
            "sampler_method": gs.method.name.lower(),
            "sampler_distinct_in_window": len(mine),
            "sampler_stamps_the_reference_missed": len(mine_stamps - ref_stamps),
        }
        if every_read_new:
            # stamps change on every read: only value changes are updates. A change is captured
            # where the sampler kept a read with its value before the next change
            entry["capture_by"] = "value"
            # the last update is left out: the sampler's read of it may come after the window
            starts = [ref[j][1] for j in updates]
            if len(starts) > 1:
                caught = set()
                for smp in mine:
                    k = bisect.bisect_right(starts, smp.nvml_timestamp_us) - 1
                    if 0 <= k < len(starts) - 1 and smp.watts == ref[updates[k]][2]:
                        caught.add(k)
                entry["capture"] = round(len(caught) / (len(starts) - 1), 4)
            else:
                entry["capture"] = None  # the value never changed: nothing to capture
        else:
            union = ref_stamps | mine_stamps
            entry["capture_by"] = "timestamp"
            entry["capture"] = round(len(mine_stamps & union) / len(union), 4)
        per_gpu[str(g.index)] = entry
    return {"seconds": round(span, 2), "load": load_info, "sampler": {"native": sampler.native, **sampler.stats()},
            "gpus": per_gpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0, help="each phase's length")
    ap.add_argument("--hz", type=float, action="append",
                    help="the sampler's rate; again for more rates, each in its own phases (default: 12.5)")
    ap.add_argument("--no-load", action="store_true", help="the idle phase only")
    args = ap.parse_args()
    backend = open_backend("nvml")
    gpus = backend.adapter.gpus()
    out: dict[str, Any] = {"gpus": len(gpus)}
    for hz in args.hz or [12.5]:
        out[f"idle@{hz:g}Hz"] = _phase(backend, gpus, args.seconds, hz, False)
        if not args.no_load:
            out[f"load@{hz:g}Hz"] = _phase(backend, gpus, args.seconds, hz, True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
