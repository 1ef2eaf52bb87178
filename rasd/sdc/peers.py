"""Checks that compare a node's devices with each other: a bitwise vote and GFLOP/s vs peers.

The verdicts are pure functions over plain data; the runners only gather that data.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any, Mapping, Sequence

import numpy as np

from rasd.sdc.gemm import Workspace, timed_matmul
from rasd.sdc.numerics import bit_view, differing_bits
from rasd.sdc.results import CheckResult, Result

_MAX_REPORTED = 8


def vote_verdict(digests: Mapping[int, str]) -> dict[int, Result]:
    """Strict majority of identical digests passes, the others fail; no majority -> inconclusive.

    Needs at least two voters; a single device is inconclusive (nothing to compare with).
    """
    if len(digests) < 2:
        return {g: Result.INCONCLUSIVE for g in digests}
    counts: dict[str, int] = {}
    for d in digests.values():
        counts[d] = counts.get(d, 0) + 1
    winner, votes = max(counts.items(), key=lambda kv: kv[1])
    if votes * 2 <= len(digests):
        return {g: Result.INCONCLUSIVE for g in digests}
    return {g: (Result.PASS if d == winner else Result.FAIL) for g, d in digests.items()}


def throughput_verdict(gflops: Mapping[int, float], tolerance: float) -> dict[int, tuple[Result, float | None]]:
    """Each device against the median of its peers (the others) measured at the same moment.

    Returns (result, ratio to the peers' median); a device with no peer is inconclusive.
    """
    out: dict[int, tuple[Result, float | None]] = {}
    for g, rate in gflops.items():
        peers = [r for p, r in gflops.items() if p != g]
        if not peers:
            out[g] = (Result.INCONCLUSIVE, None)
            continue
        median = statistics.median(peers)
        ratio = rate / median if median > 0 else None
        slow = ratio is not None and ratio < 1.0 - tolerance
        out[g] = (Result.FAIL if slow else Result.PASS, ratio)
    return out


def cross_device_vote(workspaces: Sequence[Workspace], seed: int, n: int, dtype: str) -> list[CheckResult]:
    """The same GEMM on every device, grouped by bitwise-comparable identity; the odd one out fails."""
    products: dict[int, np.ndarray] = {}
    digests: dict[int, str] = {}
    keys: dict[int, str] = {}
    rates: dict[int, float] = {}
    seconds: dict[int, float] = {}
    classes: list[tuple[str, np.ndarray]] = []
    for ws in workspaces:
        t = time.perf_counter()
        c, mm = timed_matmul(ws, ws.operands(seed, n, dtype), dtype)
        host = ws.engine.to_host(c)
        g = ws.engine.device
        products[g] = host
        keys[g] = ws.engine.identity_key()
        # Bitwise classes by direct comparison; one hash per class, not per device (hashing
        # every result would cost a large share of the GEMM itself).
        same = next((d for d, h in classes if _bitwise_equal(h, host)), None)
        if same is None:
            same = hashlib.blake2b(np.ascontiguousarray(host).tobytes(), digest_size=16).hexdigest()
            classes.append((same, host))
        digests[g] = same
        rates[g] = 2.0 * n**3 / mm / 1e9 if mm > 0 else 0.0
        seconds[g] = time.perf_counter() - t
    results: list[CheckResult] = []
    for key in sorted(set(keys.values())):
        group = {g: d for g, d in digests.items() if keys[g] == key}
        verdict = vote_verdict(group)
        winners = [g for g, r in verdict.items() if r is Result.PASS]
        for g, r in verdict.items():
            ev: dict[str, Any] = {"check": "vote", "dtype": dtype, "n": n, "seed": seed, "digest": group[g],
                                  "voters": sorted(group), "identity": key}
            if r is Result.INCONCLUSIVE:
                ev["why"] = "no strict majority of identical results" if len(group) > 1 else "no peer of the same model"
            elif r is Result.FAIL:
                ev["majority_digest"] = group[winners[0]]
                ev.update(_first_differences(products[g], products[winners[0]], n, dtype))
            results.append(CheckResult(g, "vote", r, seconds[g], rates[g], ev))
    return results


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


def _first_differences(got: np.ndarray, majority: np.ndarray, n: int, dtype: str) -> dict[str, Any]:
    gb, mb = bit_view(got, dtype).reshape(-1), bit_view(majority, dtype).reshape(-1)
    idx = np.flatnonzero(gb != mb)
    first = []
    for i in idx[:_MAX_REPORTED].tolist():
        e = float(majority.reshape(-1)[i])
        g = got.reshape(-1)[i]
        first.append({"row": i // n, "col": i % n, "expected": e, "got": float(g)}
                     | differing_bits(e, g, dtype, int(mb[i])))
    return {"elements": int(idx.size), "first": first}


def measure_throughput(workspaces: Sequence[Workspace], seed: int, n: int, dtype: str, repeats: int) -> dict[int, float]:
    """Best GFLOP/s of ``repeats`` GEMMs per device, interleaved so that noise hits all alike."""
    best: dict[int, float] = {ws.engine.device: 0.0 for ws in workspaces}
    for ws in workspaces:
        ws.operands(seed, n, dtype)
        timed_matmul(ws, ws.operands(seed, n, dtype), dtype)  # warm-up: first-call costs are not speed
    for _ in range(repeats):
        for ws in workspaces:
            _, s = timed_matmul(ws, ws.operands(seed, n, dtype), dtype)
            if s > 0:
                best[ws.engine.device] = max(best[ws.engine.device], 2.0 * n**3 / s / 1e9)
    return best


def throughput_check(workspaces: Sequence[Workspace], seed: int, n: int, dtype: str, repeats: int,
                     tolerance: float) -> list[CheckResult]:
    t0 = time.perf_counter()
    rates = measure_throughput(workspaces, seed, n, dtype, repeats)
    per = (time.perf_counter() - t0) / max(1, len(workspaces))
    out = []
    for g, (r, ratio) in throughput_verdict(rates, tolerance).items():
        ev = {"check": "throughput", "dtype": dtype, "n": n, "gflops": round(rates[g], 2),
              "ratio_to_peer_median": None if ratio is None else round(ratio, 4), "tolerance": tolerance,
              "peers": sorted(p for p in rates if p != g)}
        if r is Result.FAIL:
            ev["why"] = "slower than its peers (gray failure)"
        elif r is Result.INCONCLUSIVE:
            ev["why"] = "no peer measured at the same moment"
        out.append(CheckResult(g, "throughput", r, per, rates[g], ev))
    return out
