"""Runs a level's plan over a set of GPUs and gathers one report.

No locks and no busy-GPU rule here (``validation`` does that); this module only sequences the
checks, randomises deep rounds, reports progress, honours cancellation, and turns an engine
error into an inconclusive result rather than a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rasd.sdc.gemm import Workspace, abft, freivalds, golden_gemm
from rasd.sdc.levels import LevelPlan
from rasd.sdc.memory import memory_check
from rasd.sdc.peers import cross_device_vote, throughput_check
from rasd.sdc.results import Cancelled, CheckResult, GpuReport, Result, RunReport, combine, merge
from rasd.sdc.settings import SdcSettings

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)
PowerLimit = Callable[[float | None], None]  # set every checked GPU's limit (watts); None restores
CHECK_ORDER = ("golden_gemm", "abft", "freivalds", "memory", "vote", "throughput")


def _guard(gpu: int, name: str, fn: Callable[[], Any]) -> list[CheckResult]:
    """An engine error (out of memory, a CUDA error) makes the check inconclusive, not a crash."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - any engine failure is evidence, not a crash
        log.warning("sdc check failed to run gpu=%s check=%s error=%s", gpu, name, f"{type(e).__name__}: {e}")
        return [CheckResult(gpu, name, Result.INCONCLUSIVE, time.perf_counter() - t0, None,
                            {"check": name, "error": f"{type(e).__name__}: {e}"})]
    return out if isinstance(out, list) else [out]


def _memory_bytes(plan: LevelPlan, ws: Workspace, s: SdcSettings) -> int:
    if plan.memory_bytes is not None:
        want = plan.memory_bytes
    else:
        want = int(ws.engine.free_memory_bytes() * plan.memory_share)
    return max(4096, min(want, s.memory_max_bytes, ws.engine.free_memory_bytes()))


def run_level(
    workspaces: Mapping[int, Workspace],
    targets: Sequence[int],
    plan: LevelPlan,
    settings: SdcSettings,
    seed: int,
    witnesses: Sequence[int] = (),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    power_limit: PowerLimit | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[RunReport, dict[int, list[Result]]]:
    """Run ``plan`` on ``targets`` (``witnesses`` join only the vote and the throughput check).

    Returns the report and, per target, the combined result of each round (the accusation
    workflow decides on rounds, never on one result).
    """
    started, t0 = clock(), time.perf_counter()
    parts: dict[int, dict[str, list[CheckResult]]] = {g: {} for g in targets}
    rounds: dict[int, list[Result]] = {g: [] for g in targets}
    peers = [workspaces[g] for g in [*targets, *witnesses]]
    notes: list[str] = []
    per_round = len(targets) * (len(plan.gemm_checks) + len(plan.memory_tests)) + 2
    total = per_round * plan.rounds if plan.seconds is None else per_round * plan.min_rounds
    done = 0

    def step(label: str) -> None:
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise Cancelled("the check was cancelled")
        if progress is not None:
            progress(min(done, total), total, label)
        done += 1

    rng = np.random.default_rng([seed, 0xDEE9])
    r = 0
    # A corrupted product holds NaN and infinities by design; the checks judge them, and NumPy's
    # RuntimeWarnings on every such cast would only flood the daemon's log.
    quiet = np.errstate(invalid="ignore", over="ignore", divide="ignore")
    quiet.__enter__()
    try:
        while True:
            if plan.power_limits_watts and power_limit is not None:
                watts = plan.power_limits_watts[r % len(plan.power_limits_watts)]
                power_limit(watts)
                notes.append(f"round {r}: power limit {watts:g} W")
            round_seed = seed + r if plan.randomize else seed
            n = int(rng.choice(plan.sizes)) if plan.randomize else plan.sizes[0]
            this_round: dict[int, list[CheckResult]] = {g: [] for g in targets}
            for g in targets:
                ws = workspaces[g]
                dtypes = ws.engine.dtypes()
                if plan.randomize:
                    dtypes = (str(rng.choice(dtypes)),)
                for name in plan.gemm_checks:
                    step(f"gpu {g} {name}")
                    for dt in dtypes:
                        fn = {"golden_gemm": lambda: golden_gemm(ws, round_seed, n, dt),
                              "abft": lambda: abft(ws, round_seed, n, dt),
                              "freivalds": lambda: freivalds(ws, round_seed, n, dt, settings.freivalds_trials)}[name]
                        this_round[g] += _guard(g, name, fn)
                tests = plan.memory_tests if r == 0 else ("random",)
                for test in tests:
                    step(f"gpu {g} memory {test}")
                    nbytes = _memory_bytes(plan, ws, settings)
                    this_round[g] += _guard(g, "memory", lambda: memory_check(ws.engine, nbytes, test, round_seed))
            step("vote")
            if plan.vote and len(peers) >= 2:
                dt = str(rng.choice(peers[0].engine.dtypes())) if plan.randomize else "float32"
                for res in _guard(targets[0], "vote", lambda: cross_device_vote(peers, round_seed, n, dt)):
                    if res.gpu in this_round:
                        this_round[res.gpu].append(res)
            elif plan.vote and r == 0:
                notes.append("vote skipped: fewer than two idle devices to compare")
            step("throughput")
            if plan.throughput and len(peers) >= 2 and r == 0:
                n_tp = max(plan.sizes[0], 512)
                for res in _guard(targets[0], "throughput", lambda: throughput_check(
                        peers, seed, n_tp, "float32", settings.throughput_repeats, settings.throughput_tolerance)):
                    if res.gpu in this_round:
                        this_round[res.gpu].append(res)
            elif plan.throughput and r == 0:
                notes.append("throughput skipped: no peer device to compare with")
            for g, results in this_round.items():
                # A slow GPU is a gray failure, not corruption: throughput stays out of SDC verdicts.
                rounds[g].append(combine(x.result for x in results if x.name != "throughput"))
                for x in results:
                    parts[g].setdefault(x.name, []).append(x)
            r += 1
            if plan.seconds is None:
                if r >= plan.rounds:
                    break
            elif r >= plan.rounds or (r >= plan.min_rounds and time.perf_counter() - t0 >= plan.seconds):
                break
    finally:
        quiet.__exit__(None, None, None)
        if plan.power_limits_watts and power_limit is not None:
            power_limit(None)
    if progress is not None:
        progress(total, total, "done")
    gpus = tuple(
        GpuReport(g, tuple(merge(g, name, parts[g][name]) for name in CHECK_ORDER if name in parts[g]))
        for g in targets
    )
    if plan.seconds is not None:
        notes.append(f"{r} rounds")
    report = RunReport(plan.name, seed, started, time.perf_counter() - t0, gpus, tuple(notes))
    return report, rounds
