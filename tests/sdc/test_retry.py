"""Checks found unavailable for a transient reason are tried again after a growing back-off; a
permanent reason (no engine library) never is; the state, the metrics and the log say which, why
and when the next try is."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
from prometheus_client import CollectorRegistry

from exporters.sections import sdc as section
from rasd.backends import open_backend
from rasd.backends.fake.clock import ManualClock
from rasd.model import FaultKind, NodeIdentity
from rasd.sdc.engines import EngineUnavailable, engines_for_backend
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.probe import CUPY_MISSING
from rasd.sdc.retry import FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS, is_permanent, retry_delay
from rasd.sdc.service import SdcService
from rasd.sdc.settings import SdcSettings
from rasd.snapshot import Snapshot
from rasd.store import Store
from tests.sdc.conftest import FAST
from tests.waiting import eventually

START = 1_800_000_000.0  # the manual clock's Unix time at the start of each test
HOUR = 3600.0


class CUDARuntimeError(RuntimeError):
    """Stands for CuPy's error class of the same name."""


class FlakyFactory:
    """Builds the fake's real engines, after failing with each of ``errors`` in turn."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, backend: Any, seed: int, memory_bytes: int) -> Mapping[int, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return engines_for_backend(backend, seed, memory_bytes)


def settings(**kw: Any) -> SdcSettings:
    fields = {n: getattr(FAST, n) for n in FAST.__dataclass_fields__}
    return SdcSettings(**(fields | {"periodic": True} | kw))


@pytest.fixture
def make(fake, tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[SdcService] = []

    def build(factory: Callable[..., Any] | None = None, clock: ManualClock | None = None,
              **kw: Any) -> tuple[SdcService, ManualClock, list[Any]]:
        clock = clock or ManualClock(START)
        events: list[Any] = []
        svc = SdcService(kw.pop("settings", settings()), fake(workload="idle", gpus=2), Store(":memory:"),
                         events.extend, clock=clock, lock_dir=str(tmp_path / "locks"), engine_factory=factory,
                         **kw)
        made.append(svc)
        return svc, clock, events

    yield build
    for svc in made:
        svc.close()


def poll(svc: SdcService, clock: ManualClock) -> None:
    """One health poll at the clock's time, waiting for the periodic check it starts."""
    svc.maybe_run_periodic(clock())
    assert eventually(lambda: all(not t.is_alive() for t in list(svc._threads)), 60.0), "a check hangs"


def metrics(svc: SdcService) -> Callable[[str, dict[str, str] | None], float | None]:
    snap = Snapshot(time_wall=START, node=NodeIdentity("n", "fake", None, None, None), gpus=(), sdc=svc.state())
    reg = CollectorRegistry()
    reg.register(type("C", (), {"collect": lambda self: section.collect(snap)})())
    return lambda name, labels=None: reg.get_sample_value(name, labels or {})


def test_the_back_off_doubles_from_five_minutes_up_to_the_periodic_interval() -> None:
    assert [retry_delay(n, 6 * HOUR) for n in range(1, 10)] == [
        300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0, 19200.0, 21600.0, 21600.0]
    assert retry_delay(3, 900.0) == 900.0  # checks every 15 minutes: never retried later than that
    assert retry_delay(1, 60.0) == 60.0  # below the first wait: the interval is the wait
    assert retry_delay(1000, 30 * 24 * HOUR) == MAX_RETRY_SECONDS  # a monthly check still retries every 6 h


def test_a_transient_build_failure_is_tried_again_after_the_back_off_and_checks_run(make, caplog) -> None:
    factory = FlakyFactory(CUDARuntimeError("cudaErrorMemoryAllocation: out of memory"))
    svc, clock, _ = make(factory)
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        poll(svc, clock)  # the first check: the build fails
        assert factory.calls == 1 and svc.state().checks == ()
        assert svc.unavailable == "CUDARuntimeError: cudaErrorMemoryAllocation: out of memory"
        clock.advance(FIRST_RETRY_SECONDS - 1)
        poll(svc, clock)  # within the back-off: counted, no build
        assert factory.calls == 1 and svc.unavailable_polls == 1
        clock.advance(1)
        poll(svc, clock)  # the back-off has passed: built again, and the checks run
    assert factory.calls == 2
    assert svc.unavailable is None and svc.state().unavailable is None
    assert {c.gpu for c in svc.state().checks} == {0, 1}
    assert all(c.time_wall == clock() for c in svc.state().checks)
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "event=sdc_checks_unavailable" in m]) == 1
    (again,) = [m for m in lines if "event=sdc_checks_available_again" in m]
    assert "failures=1" in again and "unavailable_seconds=300" in again
    svc.handlers()["validate"]({"gpus": [0]})  # and requests are served again


def test_a_child_reporting_unavailable_once_then_the_next_periodic_check_after_the_back_off_runs(
        make, spawned: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # the child's NVML cannot load: it says unavailable
    svc, clock, _ = make(isolate=True)
    checks = svc.checks()
    assert isinstance(checks, ChildValidator)
    checks.backend = {"kind": "nvml"}
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        poll(svc, clock)
        assert len(spawned) == 1 and svc.unavailable is not None and "NVML" in svc.unavailable
        u = svc.state().unavailable
        assert u is not None and not u.permanent and u.retry_wall == clock() + FIRST_RETRY_SECONDS
        checks.backend = {"kind": "fake", "scenario": None}  # the hiccup passes
        clock.advance(FIRST_RETRY_SECONDS / 2)
        poll(svc, clock)
        assert len(spawned) == 1  # not yet: counted only
        clock.advance(FIRST_RETRY_SECONDS / 2)
        poll(svc, clock)  # the next periodic check after the back-off runs, in a child
    assert len(spawned) == 2
    assert svc.unavailable is None
    assert {(c.gpu, c.result) for c in svc.state().checks if c.check == "golden_gemm"} == {(0, "pass"), (1, "pass")}
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "event=sdc_checks_unavailable" in m]) == 1
    assert len([m for m in lines if "event=sdc_checks_available_again" in m]) == 1


PERMANENT: dict[str, Callable[[], Exception]] = {
    "no-numpy": lambda: ModuleNotFoundError("No module named 'numpy'", name="numpy"),
    "no-cupy": lambda: EngineUnavailable(CUPY_MISSING, permanent=True),  # CuPy's import failed in the engine
}


@pytest.mark.parametrize("kind", sorted(PERMANENT))
def test_a_permanent_reason_is_never_tried_again(make, kind: str, caplog) -> None:
    error = PERMANENT[kind]()
    factory = FlakyFactory(error)
    svc, clock, _ = make(factory)
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        for _ in range(6):
            poll(svc, clock)
            clock.advance(MAX_RETRY_SECONDS * 4)
        with pytest.raises(ValueError, match=re.escape(str(error))):
            svc.accuse(0, "loss spike")  # answered with the reason, and no retry either
        with pytest.raises(ValueError, match=re.escape(str(error))):
            svc.handlers()["validate"]({"gpus": [0]})
    assert factory.calls == 1
    u = svc.state().unavailable
    assert u is not None and u.permanent and u.retry_wall is None and u.failures == 1
    status = svc.handlers()["sdc_status"]({})
    assert status["available"] is False and status["permanent"] is True and status["retry_at"] is None
    value = metrics(svc)
    assert value("rasd_sdc_checks_unavailable", {"kind": "permanent"}) == 1
    assert value("rasd_sdc_checks_unavailable", {"kind": "transient"}) == 0
    assert value("rasd_sdc_checks_retry_timestamp_seconds") == 0
    (said,) = [r.getMessage() for r in caplog.records if "event=sdc_checks_unavailable" in r.getMessage()]
    assert "kind=permanent" in said


def test_repeated_failures_double_the_back_off_up_to_the_cap(make) -> None:
    interval = 2 * HOUR
    factory = FlakyFactory(*[CUDARuntimeError("cudaErrorInitializationError")] * 8)
    svc, clock, _ = make(factory, settings=settings(periodic_interval_seconds=interval))
    waits = []
    for _ in range(8):
        poll(svc, clock)  # each poll comes exactly when the retry is due
        u = svc.state().unavailable
        assert u is not None and u.retry_wall is not None
        waits.append(u.retry_wall - clock())
        clock.advance(waits[-1] / 2)
        poll(svc, clock)  # halfway: nothing is tried
        clock.advance(waits[-1] / 2)
    assert waits == [300.0, 600.0, 1200.0, 2400.0, 4800.0, 7200.0, 7200.0, 7200.0]
    assert factory.calls == 8 and svc.state().unavailable_tries == 8
    assert svc.state().unavailable.failures == 8  # type: ignore[union-attr]
    poll(svc, clock)  # the ninth try builds
    assert factory.calls == 9 and svc.unavailable is None


def test_the_state_and_the_metrics_say_why_and_when_the_next_try_is(make) -> None:
    factory = FlakyFactory(*[CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")] * 2)
    svc, clock, _ = make(factory)
    poll(svc, clock)
    clock.advance(FIRST_RETRY_SECONDS)
    poll(svc, clock)  # the second failure in a row: the next try in 10 minutes
    status = svc.handlers()["sdc_status"]({})
    reason = "CUDARuntimeError: cudaErrorNoDevice: no CUDA-capable device is detected"
    assert status["available"] is False and status["why"] == reason and status["permanent"] is False
    assert status["failures"] == 2 and status["unavailable_since"] == START
    assert status["retry_at"] == clock() + 2 * FIRST_RETRY_SECONDS and status["unavailable_tries"] == 2
    value = metrics(svc)
    assert value("rasd_sdc_checks_unavailable", {"kind": "transient"}) == 1
    assert value("rasd_sdc_checks_unavailable", {"kind": "permanent"}) == 0
    assert value("rasd_sdc_checks_retry_timestamp_seconds") == clock() + 2 * FIRST_RETRY_SECONDS
    assert value("rasd_sdc_checks_unavailable_tries_total") == 2
    clock.advance(2 * FIRST_RETRY_SECONDS)
    poll(svc, clock)  # the third try builds
    value = metrics(svc)
    assert value("rasd_sdc_checks_unavailable", {"kind": "transient"}) == 0
    assert value("rasd_sdc_checks_retry_timestamp_seconds") == 0
    assert value("rasd_sdc_checks_unavailable_tries_total") == 2  # a counter: it stays
    assert svc.handlers()["sdc_status"]({})["available"] is True


def test_an_accusation_answers_with_the_reason_within_the_back_off_and_opens_past_it(make) -> None:
    # periodic checks off: only the accusation can start the retry
    factory = FlakyFactory(CUDARuntimeError("cudaErrorDevicesUnavailable: all CUDA-capable devices are busy"))
    svc, clock, events = make(factory, settings=settings(periodic=False))
    job = svc.handlers()["validate"]({"gpus": [0]})["job"]  # nothing tried yet: the job finds it
    assert eventually(lambda: svc._jobs[job].done, 30.0)
    assert "cudaErrorDevicesUnavailable" in (svc._jobs[job].error or "")
    threads = len(svc._threads)
    with pytest.raises(ValueError, match="cudaErrorDevicesUnavailable"):
        svc.accuse(0, "loss spike at step 1200")  # within the back-off: the reason, nothing tried
    assert factory.calls == 1 and len(svc._threads) == threads
    clock.advance(FIRST_RETRY_SECONDS)
    reply = svc.accuse(0, "loss spike at step 1300")  # past it: opened, and its check is the try
    assert reply["verdict"] == "suspect"
    assert eventually(lambda: svc._jobs[reply["job"]].done, 60.0)
    assert factory.calls == 2 and svc.unavailable is None
    assert [e.details["verdict"] for e in events if e.kind is FaultKind.SDC] == ["suspect", "cleared"]
    assert 0 not in svc.state().suspects


def test_an_accusation_stalled_by_unavailable_checks_gets_its_check_when_they_run_again(make) -> None:
    factory = FlakyFactory(CUDARuntimeError("cudaErrorInitializationError: initialization error"))
    svc, clock, events = make(factory)
    svc.accuse(1, "NaNs at step 12")  # taken before anything was built; the build in its job fails
    assert eventually(lambda: svc.unavailable is not None and not svc._threads[-1].is_alive(), 30.0)
    assert 1 in svc.state().suspects  # open, the GPU suspect
    clock.advance(FIRST_RETRY_SECONDS)
    poll(svc, clock)  # the retry builds: the stalled accusation resumes
    assert eventually(lambda: 1 not in svc.state().suspects, 60.0)
    assert [e.details["verdict"] for e in events if e.kind is FaultKind.SDC] == ["suspect", "cleared"]
    assert factory.calls == 2


def test_a_real_gpu_node_without_cupy_is_unavailable_for_good_from_the_start(tmp_path: Path,
                                                                               monkeypatch) -> None:
    from rasd.sdc import lazy

    monkeypatch.setattr(lazy, "engines_missing", lambda backend: CUPY_MISSING)
    svc = SdcService(settings(), open_backend("fake", workload="idle"), Store(":memory:"), [].extend,
                     clock=ManualClock(START), lock_dir=str(tmp_path / "locks"))
    try:
        u = svc.state().unavailable
        assert u is not None and u.reason == CUPY_MISSING and u.permanent and u.retry_wall is None
    finally:
        svc.close()


def test_a_check_process_without_numpy_makes_the_checks_unavailable_for_good(
        make, spawned: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # NumPy not there at all: Python's own way to make a module absent (its import raises
    # ModuleNotFoundError naming it, as on a machine without it)
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["numpy"] = None\n')
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ['PYTHONPATH']}")
    svc, clock, _ = make(isolate=True)
    for _ in range(3):
        poll(svc, clock)
        clock.advance(MAX_RETRY_SECONDS * 2)
    assert len(spawned) == 1  # one child said so; no later poll starts another
    u = svc.state().unavailable
    assert u is not None and u.permanent and u.retry_wall is None
    assert u.reason.startswith("ModuleNotFoundError: ") and "numpy" in u.reason


def test_a_check_process_whose_numpy_fails_to_load_is_tried_again(
        make, spawned: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "site" / "numpy"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libopenblas.so.0: cannot open shared object file")\n')
    monkeypatch.setenv("PYTHONPATH", f"{broken.parent}{os.pathsep}{os.environ['PYTHONPATH']}")
    svc, clock, _ = make(isolate=True)
    poll(svc, clock)
    u = svc.state().unavailable
    assert u is not None and not u.permanent and u.retry_wall == clock() + FIRST_RETRY_SECONDS
    assert u.reason == "ImportError: libopenblas.so.0: cannot open shared object file"
    clock.advance(FIRST_RETRY_SECONDS)
    poll(svc, clock)
    assert len(spawned) == 2  # installed, failing to load: tried again after the back-off


CUPY_IMPORT = """
import json
from rasd.sdc.engines import EngineUnavailable
from rasd.sdc.engines_cupy import cupy_engines
from rasd.sdc.retry import is_permanent
try:
    cupy_engines({0: "00000000:01:00.0"})
except EngineUnavailable as e:
    print(json.dumps([str(e), is_permanent(e)]))
"""


def cupy_import(site: Path) -> tuple[str, bool]:
    """What building CuPy engines says in a process with ``site`` first on its path."""
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ['PYTHONPATH']}")
    out = subprocess.run([sys.executable, "-c", CUPY_IMPORT], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    reason, permanent = json.loads(out)
    return reason, permanent


def test_cupy_installed_but_unable_to_load_a_cuda_library_is_transient_and_says_why(tmp_path: Path) -> None:
    cupy = tmp_path / "cupy"
    cupy.mkdir()
    error = "CuPy failed to load libcuda.so.1: cannot open shared object file: No such file or directory"
    (cupy / "__init__.py").write_text(f"raise ImportError({error!r})\n")
    reason, permanent = cupy_import(tmp_path)
    assert reason == f"CuPy could not be loaded: {error}"
    assert not permanent


def test_cupy_not_installed_is_permanent(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["cupy"] = None\n')
    assert cupy_import(tmp_path) == (CUPY_MISSING, True)


def test_only_an_engine_library_not_found_is_permanent() -> None:
    assert is_permanent(ModuleNotFoundError("No module named 'cupy'", name="cupy"))
    assert is_permanent(ModuleNotFoundError("No module named 'numpy'", name="numpy"))
    # a module CuPy needs, or a library it loads: installed, broken for now
    assert not is_permanent(ModuleNotFoundError("No module named 'fastrlock'", name="fastrlock"))
    assert not is_permanent(ImportError("libcublas.so.12: cannot open shared object file"))
    try:
        try:
            raise ModuleNotFoundError("No module named 'cupy'", name="cupy")
        except ImportError as e:
            raise EngineUnavailable("no engine") from e
    except EngineUnavailable as e:
        assert is_permanent(e)  # raised from it
