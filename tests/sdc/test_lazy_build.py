"""The checks are built at the first check, once, in a worker thread: callers during the build
wait for it, a failed build is one reason (logged once) for every caller until its retry, and control
requests answer before the build (which can outlast a client's request timeout on real GPUs)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from rasd.model import FaultKind
from rasd.sdc.engines import engines_for_backend
from rasd.sdc.service import SdcService
from rasd.store import Store

# Long enough never to be reached by a correct service; a broken one fails here instead of hanging.
STUCK_SECONDS = 10.0


class CUDARuntimeError(RuntimeError):
    """Stands for CuPy's error class of the same name (what getDeviceCount raises without a device)."""


class GatedFactory:
    """Builds the fake's real engines, but only once ``release`` is set; counts its calls and
    sets ``started`` when a build begins. With ``error`` it fails that way instead."""

    def __init__(self, error: Exception | None = None, gated: bool = True):
        self.started = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()
        self.error = error
        self.calls = 0

    def __call__(self, backend: Any, seed: int, memory_bytes: int) -> Mapping[int, Any]:
        self.calls += 1
        self.started.set()
        if not self.release.wait(STUCK_SECONDS):
            raise AssertionError("the build was never released")
        if self.error is not None:
            raise self.error
        return engines_for_backend(backend, seed, memory_bytes)


@pytest.fixture
def make(fake, fast, tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[SdcService] = []

    def build(factory: GatedFactory, periodic: bool = False) -> tuple[SdcService, list]:
        events: list = []
        settings = fast if not periodic else type(fast)(**{**_fields(fast), "periodic": True})
        svc = SdcService(settings, fake(workload="idle", gpus=2), Store(":memory:"), events.extend,
                         lock_dir=str(tmp_path / "locks"), engine_factory=factory)
        made.append(svc)
        return svc, events

    yield build
    for svc in made:
        svc.close()


def _fields(settings: Any) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    out: dict[str, Any] = {}
    answered = threading.Event()

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e
        answered.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out, answered


def _join_jobs(svc: SdcService) -> None:
    for t in list(svc._threads):
        t.join(STUCK_SECONDS * 3)
        assert not t.is_alive()


def test_a_caller_during_the_build_waits_for_it_instead_of_being_told_unavailable(make) -> None:
    factory = GatedFactory()
    svc, _ = make(factory)
    first, first_out, _ = _in_thread(svc.checks)
    assert factory.started.wait(STUCK_SECONDS)
    # the build is under way (held at the gate): a second caller now
    second, second_out, _ = _in_thread(svc.checks)
    factory.release.set()
    first.join(STUCK_SECONDS)
    second.join(STUCK_SECONDS)
    assert "error" not in second_out, second_out.get("error")
    assert first_out["value"] is second_out["value"] is svc.validator
    assert factory.calls == 1


def test_a_failed_build_is_one_reason_logged_once_and_periodic_polls_only_count(make, caplog) -> None:
    factory = GatedFactory(CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), gated=False)
    svc, _ = make(factory, periodic=True)
    reason = "CUDARuntimeError: cudaErrorNoDevice: no CUDA-capable device is detected"
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        interval = svc.settings.periodic_interval_seconds
        for poll in range(5):
            svc.maybe_run_periodic(1000.0 + poll * interval)
            _join_jobs(svc)
    assert factory.calls == 1
    assert svc.unavailable == reason
    assert svc.unavailable_polls == 4  # the first poll found it out; the other four only counted
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"
    said = [r.getMessage() for r in caplog.records if reason in r.getMessage()]
    assert len(said) == 1, said
    with pytest.raises(ValueError, match="CUDARuntimeError: cudaErrorNoDevice"):
        svc.checks()
    with pytest.raises(ValueError, match="CUDARuntimeError: cudaErrorNoDevice"):
        svc.handlers()["validate"]({"gpus": [0]})
    status = svc.handlers()["sdc_status"]({})
    assert status["available"] is False and status["why"] == reason and status["unavailable_polls"] == 4


def test_validate_answers_before_the_build_and_the_job_builds(make) -> None:
    factory = GatedFactory()
    svc, _ = make(factory)
    op = svc.handlers()["validate"]
    try:
        t, out, answered = _in_thread(lambda: op({"gpus": [1], "level": "quick"}))
        # the build is held at its gate: the request must still be answered
        assert answered.wait(STUCK_SECONDS), "validate waited for the checks to be built"
    finally:
        factory.release.set()
    t.join(STUCK_SECONDS)
    reply = out["value"]
    assert reply["done"] is False and reply["gpus"] == [1]
    _join_jobs(svc)
    result = op({"job": reply["job"]})
    assert result["error"] is None and [g["gpu"] for g in result["report"]["gpus"]] == [1]
    assert factory.calls == 1


def test_validate_all_and_bad_gpus_are_answered_without_building(make) -> None:
    factory = GatedFactory()
    svc, _ = make(factory)
    op = svc.handlers()["validate"]
    with pytest.raises(ValueError, match=r"no GPU 7 on this node; choose one of \[0, 1\] or all"):
        op({"gpus": [7]})
    with pytest.raises(ValueError, match="must be"):
        op({"gpus": [True]})
    assert factory.calls == 0  # refused requests build nothing
    reply = op({"gpus": "all"})
    assert reply["gpus"] == [0, 1]
    factory.release.set()
    _join_jobs(svc)
    assert [g["gpu"] for g in op({"job": reply["job"]})["report"]["gpus"]] == [0, 1]


def test_accuse_answers_suspect_before_the_build(make) -> None:
    factory = GatedFactory()
    svc, events = make(factory)
    try:
        t, out, answered = _in_thread(lambda: svc.handlers()["accuse"]({"gpu": 0, "reason": "loss spike"}))
        assert answered.wait(STUCK_SECONDS), "accuse waited for the checks to be built"
        assert out["value"]["verdict"] == "suspect" and 0 in svc.state().suspects
        assert [e.details["verdict"] for e in events if e.kind is FaultKind.SDC] == ["suspect"]
    finally:
        factory.release.set()
    _join_jobs(svc)
    assert [e.details["verdict"] for e in events if e.kind is FaultKind.SDC] == ["suspect", "cleared"]


def test_a_build_failing_in_a_validate_job_shows_in_its_result_and_the_log_once(make, caplog) -> None:
    factory = GatedFactory(CUDARuntimeError("cudaErrorInitializationError: initialization error"))
    svc, _ = make(factory)
    op = svc.handlers()["validate"]
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        jobs = [op({"gpus": [0]})["job"] for _ in range(3)]  # all asked while the build is held
        factory.release.set()
        _join_jobs(svc)
    errors = [op({"job": j})["error"] for j in jobs]
    assert errors == ["SDC checks are unavailable on this node: CUDARuntimeError: "
                      "cudaErrorInitializationError: initialization error"] * 3
    assert factory.calls == 1
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"
    assert len([r for r in caplog.records if "cudaErrorInitializationError" in r.getMessage()]) == 1
    with pytest.raises(ValueError, match="cudaErrorInitializationError"):
        op({"gpus": [0]})
