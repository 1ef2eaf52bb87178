from __future__ import annotations

import dataclasses
import threading

from rasd.sdc.faults import InjectedFault
from rasd.sdc.locks import GpuLocks
from rasd.sdc.results import Result
from rasd.sdc.validation import Validator


class Handle:
    def __init__(self, index: int, pids: list[int] | None = None):
        self.index = index
        self.pids = pids or []
        self.limits: list[float] = []

    def running_pids(self) -> list[int]:
        return list(self.pids)

    def set_power_limit(self, watts: float) -> float:
        self.limits.append(watts)
        return watts

    def power_limits(self):
        return type("Limits", (), {"limit_watts": 700.0})()


def _validator(make_engine, fast, n=3, busy=(), faults=(), tmp_path=None, settings=None):
    handles = {g: Handle(g, [4242] if g in busy else []) for g in range(n)}
    engines = {g: make_engine(g, *[f for f in faults if f.gpu == g]) for g in range(n)}
    return Validator(settings or fast, handles, engines, GpuLocks(str(tmp_path) if tmp_path else None))


def test_quick_run_names_the_corrupted_gpu(make_engine, fast) -> None:
    fault = InjectedFault(gpu=1, kind="gemm_bitflip", bit=29, dtypes=("float32",))
    out = _validator(make_engine, fast, faults=[fault]).run([0, 1, 2], "quick")
    assert [g.result for g in out.report.gpus] == [Result.PASS, Result.FAIL, Result.PASS]
    failed = {c.name for c in out.report.gpus[1].checks if c.result is Result.FAIL}
    assert {"golden_gemm", "abft", "freivalds", "vote"} <= failed
    assert out.report.result is Result.FAIL


def test_busy_gpu_is_not_checked_unless_forced(make_engine, fast) -> None:
    v = _validator(make_engine, fast, busy=(1,))
    out = v.run([0, 1], "quick")
    busy = out.report.gpus[1]
    assert [c.name for c in busy.checks] == ["available"] and busy.result is Result.INCONCLUSIVE
    assert "4242" in busy.checks[0].evidence["why"] and "--force" in busy.checks[0].evidence["why"]
    assert out.report.result is Result.INCONCLUSIVE
    forced = v.run([1], "quick", force=True)
    assert forced.report.result is Result.PASS


def test_two_checks_never_share_a_gpu(make_engine, fast, tmp_path) -> None:
    v = _validator(make_engine, fast, tmp_path=tmp_path)
    other = GpuLocks(str(tmp_path))  # another process's locks: the flock on the same file
    assert other.try_acquire(0)
    try:
        out = v.run([0, 1], "quick")
    finally:
        other.release(0)
    assert out.report.gpus[0].checks[0].name == "available"
    assert "being checked" in out.report.gpus[0].checks[0].evidence["why"]
    assert out.report.gpus[1].result is Result.PASS
    assert v.locks.held() == frozenset()


def test_single_gpu_validation_votes_with_idle_witnesses(make_engine, fast) -> None:
    fault = InjectedFault(gpu=0, kind="gemm_bitflip", bit=0, deterministic=True, dtypes=("float32",))
    out = _validator(make_engine, fast, faults=[fault]).run([0], "quick")
    vote = next(c for c in out.report.gpus[0].checks if c.name == "vote")
    assert vote.result is Result.FAIL
    assert any("witnesses" in n for n in out.report.notes)


def test_deep_runs_rounds_and_cycles_power_limits_only_when_enforced(make_engine, fast) -> None:
    enforced = dataclasses.replace(fast, enforce_power=True, deep_power_limits_watts=(500.0, 600.0))
    v = _validator(make_engine, fast, settings=enforced)
    out = v.run([0], "deep")
    assert len(out.rounds[0]) >= 3
    assert v.handles[0].limits[:2] == [500.0, 600.0] and v.handles[0].limits[-1] == 700.0  # restored
    plain = _validator(make_engine, fast)
    plain.run([0], "deep")
    assert plain.handles[0].limits == []


def test_cancel_stops_between_steps(make_engine, fast) -> None:
    import pytest

    from rasd.sdc.runner import Cancelled

    cancel = threading.Event()
    cancel.set()
    v = _validator(make_engine, fast)
    with pytest.raises(Cancelled):
        v.run([0], "quick", cancel=cancel)
    assert v.locks.held() == frozenset()


def test_unknown_gpu_is_a_clear_error(make_engine, fast) -> None:
    import pytest

    with pytest.raises(ValueError, match="no GPU 9"):
        _validator(make_engine, fast).run([9], "quick")


def test_engines_built_per_run_are_for_the_gpus_it_uses_only(make_engine, fast) -> None:
    """In a check's child process each engine is a CUDA context: none on a GPU running a job,
    none on one another check holds, none on GPUs the daemon did not offer as witnesses."""
    handles = {g: Handle(g, [4242] if g == 1 else []) for g in range(4)}
    built: list[list[int]] = []

    def build(gpus):
        built.append(sorted(gpus))
        return {g: make_engine(g) for g in gpus}

    v = Validator(fast, handles, build)
    assert v.gpus == [0, 1, 2, 3]
    assert v.locks.try_acquire(3)  # another check holds GPU 3
    out = v.run([0], "quick", witnesses=[1, 2, 3])
    assert built == [[0, 2]]  # GPU 0, and GPU 2 as a witness
    assert out.report.result is Result.PASS
    v.run([1], "quick")
    assert built == [[0, 2]]  # busy: nothing built, nothing checked


def test_a_gpu_with_no_engine_built_is_reported_lost_and_the_rest_checked(make_engine, fast) -> None:
    # GPU 2 no longer answers; GPU 7 is gone from the node altogether
    v = Validator(fast, {g: Handle(g) for g in range(3)}, lambda gpus: {g: make_engine(g) for g in gpus if g < 2})
    out = v.run([0, 2], "quick")
    by_gpu = {g.gpu: g for g in out.report.gpus}
    assert by_gpu[0].result is Result.PASS
    (c,) = by_gpu[2].checks
    assert c.name == "available" and c.result is Result.INCONCLUSIVE and "lost" in c.evidence["why"]
    assert v.locks.held() == frozenset()
    # no handle either: lost too, not a refusal of the whole check
    out = v.run([0, 7], "quick")
    assert [g.result for g in out.report.gpus] == [Result.PASS, Result.INCONCLUSIVE]


def test_waiting_for_a_lock_ends_when_cancelled(make_engine, fast, tmp_path) -> None:
    import time

    import pytest

    from rasd.sdc.results import Cancelled

    v = _validator(make_engine, fast, tmp_path=tmp_path)
    other = GpuLocks(str(tmp_path))  # a check in another process holds GPU 0
    assert other.try_acquire(0)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            v.run([0], "quick", cancel=cancel, wait_seconds=600.0)
    finally:
        other.release(0)
    assert time.monotonic() - t0 < 10 and v.locks.held() == frozenset()


def test_engines_for_some_gpus_of_a_node() -> None:
    from rasd.backends import open_backend
    from rasd.sdc.engines import engines_for_backend

    be = open_backend("fake", workload="idle")
    try:
        assert sorted(engines_for_backend(be, gpus={1, 3})) == [1, 3]
    finally:
        be.close()
