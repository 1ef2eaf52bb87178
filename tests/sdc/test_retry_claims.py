"""A try of unavailable checks is claimed as it starts: a try that never answers (its process dies,
runs past its limit or answers an error) counts as a failure and doubles the back-off, and no
other check becomes a try while one runs; an accusation past the back-off opens, its check the try."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping

import pytest

from rasd.model import FaultKind
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.retry import FIRST_RETRY_SECONDS
from tests.sdc import test_retry
from tests.sdc.test_retry import CUDARuntimeError, FlakyFactory, metrics, poll
from tests.waiting import eventually

make = test_retry.make  # the service fixture those tests use


@pytest.fixture
def failing_child(make, spawned: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A service on real-GPU terms whose first check's process found no NVML (unavailable,
    transient); ``checks`` is its ChildValidator."""
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # the child's NVML cannot load
    svc, clock, _ = make(isolate=True)
    checks = svc.checks()
    assert isinstance(checks, ChildValidator)
    checks.backend = {"kind": "nvml"}
    poll(svc, clock)
    assert len(spawned) == 1 and svc.state().unavailable is not None
    return svc, clock, checks


@pytest.mark.parametrize("python", ["/bin/false", "/bin/true"])
def test_a_retry_whose_process_ends_without_an_answer_doubles_the_back_off(
        failing_child, spawned: list, python: str) -> None:
    svc, clock, checks = failing_child
    checks.python = python  # the retry's process ends without an answer (a crash, an OOM kill)
    clock.advance(FIRST_RETRY_SECONDS)
    poll(svc, clock)
    assert len(spawned) == 2
    u = svc.state().unavailable
    assert u is not None and not u.permanent and u.failures == 2
    assert u.retry_wall == clock() + 2 * FIRST_RETRY_SECONDS  # counted as a failure: the wait doubles
    assert metrics(svc)("rasd_sdc_checks_retry_timestamp_seconds", None) == clock() + 2 * FIRST_RETRY_SECONDS
    for _ in range(5):  # polls 10 s apart, well inside the back-off: no process each
        clock.advance(10)
        poll(svc, clock)
    assert len(spawned) == 2
    assert svc.unavailable_polls == 5
    clock.advance(2 * FIRST_RETRY_SECONDS - 50)
    poll(svc, clock)  # the next try, when the doubled wait has passed
    assert len(spawned) == 3
    u = svc.state().unavailable
    assert u is not None and u.failures == 3 and u.retry_wall == clock() + 4 * FIRST_RETRY_SECONDS


def test_a_retry_answering_an_error_counts_as_a_failure(failing_child, spawned: list, tmp_path: Path) -> None:
    svc, clock, checks = failing_child
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"error": "RuntimeError: cuInit failed"}\'\n')
    fake_python.chmod(0o755)
    checks.python = str(fake_python)
    clock.advance(FIRST_RETRY_SECONDS)
    poll(svc, clock)
    assert len(spawned) == 2
    (job,) = [j for j in svc._jobs.values() if j.error]
    assert "cuInit failed" in job.error
    clock.advance(10)
    poll(svc, clock)
    assert len(spawned) == 2
    u = svc.state().unavailable
    assert u is not None and u.failures == 2 and u.retry_wall == clock() - 10 + 2 * FIRST_RETRY_SECONDS


class GatedFactory(FlakyFactory):
    """FlakyFactory whose builds after the first wait for ``go``: a try that is still running."""

    def __init__(self, *errors: Exception):
        super().__init__(*errors)
        self.go = threading.Event()

    def __call__(self, backend: Any, seed: int, memory_bytes: int) -> Mapping[int, Any]:
        if self.calls >= 1:
            assert self.go.wait(60.0)
        return super().__call__(backend, seed, memory_bytes)


def test_a_validate_request_while_the_periodic_retry_runs_is_refused_not_tried_too(make) -> None:
    factory = GatedFactory(CUDARuntimeError("cudaErrorInitializationError"))
    svc, clock, _ = make(factory)
    poll(svc, clock)
    clock.advance(FIRST_RETRY_SECONDS)
    svc.maybe_run_periodic(clock())  # the retry: its build waits
    assert eventually(lambda: svc.state().unavailable.retry_wall > clock(), 30.0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="cudaErrorInitializationError"):
        svc.handlers()["validate"]({"gpus": [0]})
    with pytest.raises(ValueError, match="cudaErrorInitializationError"):
        svc.accuse(0, "NaNs at step 40")
    factory.go.set()
    assert eventually(lambda: all(not t.is_alive() for t in list(svc._threads)), 60.0)
    assert factory.calls == 2 and svc.unavailable is None


def test_an_accusation_past_the_back_off_is_opened_and_kept_open_while_its_try_fails(make) -> None:
    factory = FlakyFactory(*[CUDARuntimeError("cudaErrorMemoryAllocation: out of memory")] * 2)
    svc, clock, events = make(factory)
    poll(svc, clock)
    assert svc.unavailable is not None
    clock.advance(FIRST_RETRY_SECONDS)
    reply = svc.accuse(0, "job 17 failed with NaNs")  # its check is the try, and it fails
    assert reply["verdict"] == "suspect" and reply["accusation"] is not None
    assert eventually(lambda: svc._jobs[reply["job"]].done, 60.0)
    assert factory.calls == 2 and svc.state().unavailable.failures == 2  # type: ignore[union-attr]
    assert 0 in svc.state().suspects  # open, stalled until the checks run
    clock.advance(2 * FIRST_RETRY_SECONDS)
    poll(svc, clock)  # the next try builds: the accusation gets its check
    assert eventually(lambda: 0 not in svc.state().suspects, 60.0)
    assert [e.details["verdict"] for e in events if e.kind is FaultKind.SDC] == ["suspect", "cleared"]
    assert factory.calls == 3
