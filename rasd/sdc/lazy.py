"""The SDC checks, built once at the first check that is to run, or the reason they cannot run.

The checks (engines, GEMM, memory patterns, NumPy or CuPy) are loaded and built at the first check
that is to run, never at start: most of a node's life its GPUs run jobs and no check runs. On
real GPUs each check runs in a child process instead (``rasd.sdc.isolated``), so CuPy and its CUDA
contexts never stay in the daemon. A build that fails is one reason, logged once, that every
caller is told until the next try; so is a check's process that could build no engine. A transient
reason is tried again after a growing back-off (``rasd.sdc.retry``): the first check asked for once
it has passed builds the checks again, or on real GPUs is itself the try; a permanent reason (no
engine library in this installation) is never tried again. A try is claimed as it starts
(``claim_try``): the next back-off is set then, so a try that never answers (its process died or
ran past its limit) counts as a failure and no other check becomes a try meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rasd.model import FaultEvent
from rasd.sdc.checks import Checks
from rasd.sdc.history import SdcHistory
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe, engines_missing
from rasd.sdc.results import ChecksUnavailable
from rasd.sdc.retry import is_permanent, retry_delay
from rasd.sdc.settings import SdcSettings
from rasd.sdc.state import Unavailable

if TYPE_CHECKING:
    from rasd.sdc.accusation import AccusationWorkflow
    from rasd.sdc.engines import Engine
    from rasd.sdc.isolated import ChildValidator

# (backend, seed, NumPy memory budget in bytes) -> one engine per GPU; rasd.sdc.engines's
# engines_for_backend unless given
EngineFactory = Callable[[Any, int, int], Mapping[int, "Engine"]]

log = logging.getLogger("rasd.sdc.service")  # the service's: its lines keep their logger


def _reason(e: Exception) -> str:
    # rasd's own refusals are written for people; anything else (CuPy's CUDARuntimeError from
    # getDeviceCount, a driver refusal) is named by its class so the reason says where it came from
    if type(e).__name__ in ("EngineUnavailable", "ChecksUnavailable"):
        return str(e)
    return f"{type(e).__name__}: {e}"


class LazyChecks:
    """The node's checks and their accusation workflow, built on first use (``get``) from what
    the service hands over: its backend and GPU handles, locks, busy probe, history, clock and
    the sink its accusations emit fault events to."""

    def __init__(self, settings: SdcSettings, backend: Any, handles: Mapping[int, Any], locks: GpuLocks,
                 probe: BusyProbe, history: SdcHistory, emit: Callable[[Sequence[FaultEvent]], None],
                 clock: Callable[[], float], engine_factory: EngineFactory | None = None,
                 isolate: bool | None = None):
        self.settings = settings
        self._backend = backend
        self._handles = handles
        self._locks = locks
        self._probe = probe
        self._history = history
        self._emit = emit
        self._clock = clock
        self._engine_factory = engine_factory
        # Built at the first check (get()): None until then, and None for good when unavailable.
        self.validator: Checks | None = None
        self.children: ChildValidator | None = None  # the validator, when each check runs in a child
        self.workflow: AccusationWorkflow | None = None
        # Each check in a child process (rasd.sdc.isolated): by default on real GPUs, where a
        # check's CuPy and CUDA contexts must not stay in the daemon. The fake node lives in this
        # process, so its checks run here unless asked (then the child checks a node of its own,
        # of the same packaged scenario).
        self.isolate = (engine_factory is None and getattr(backend, "fake_node", None) is None
                        if isolate is None else isolate)
        self._build_lock = threading.Lock()  # one build at a time; callers during it wait for it
        self._state_lock = threading.Lock()  # guards _unavailable, _claimed and tries_failed
        self._unavailable: Unavailable | None = None
        self._claimed = False  # a try claimed (claim_try) has not answered yet
        self.tries_failed = 0  # tries that found the checks unavailable, since the start
        # told (in the thread that found it) when the checks run again after being unavailable
        self.on_available: Callable[[], None] | None = None
        missing = engines_missing(backend)
        if missing is not None:
            self.found_unavailable(missing, permanent=True)

    def reconfigure(self, settings: SdcSettings) -> None:
        """New intervals, sizes and thresholds apply to the next check (and to the build)."""
        self.settings = settings
        if self.validator is not None:
            self.validator.settings = settings
        if self.workflow is not None:
            self.workflow.settings = settings

    def answers(self, gpu: int) -> bool:
        """The GPU is here and answers (a GPU lost before the start gets no engine)."""
        handle = self._handles.get(gpu)
        if handle is None:
            return False
        try:
            handle.identity()
        except Exception:  # noqa: BLE001 - lost or unreadable: nothing to check on
            return False
        return True

    # -- availability --------------------------------------------------------------------------

    @property
    def unavailable(self) -> str | None:
        """Why the checks cannot run (None: they can, or none has needed them yet)."""
        u = self._unavailable
        return None if u is None else u.reason

    def status(self) -> Unavailable | None:
        """Why the checks are unavailable and when they are tried again (None: available)."""
        return self._unavailable

    def refusal(self) -> str | None:
        """The reason to refuse a check now: the checks are unavailable and the reason is permanent
        or its back-off has not passed. None: a check may run (when unavailable, it is the retry)."""
        u = self._unavailable
        if u is None:
            return None
        if u.retry_wall is None or self._clock() < u.retry_wall:
            return u.reason
        return None

    def refuse(self) -> None:
        """Raise ChecksUnavailable (the reason) when ``refusal`` says a check may not run now."""
        reason = self.refusal()
        if reason is not None:
            u = self._unavailable
            raise ChecksUnavailable(reason, u is not None and u.permanent)

    def retry_due(self) -> bool:
        """Unavailable, transiently, and the back-off has passed: the next check is the retry."""
        return self._unavailable is not None and self.refusal() is None

    def claim_try(self) -> None:
        """A check is to start: while the checks are unavailable it is the try, claimed here under
        the state lock with the next back-off set now, as if it failed (an outcome clears it). So
        a try whose process dies, runs past its limit or answers an error doubles the back-off
        like a failure, and checks asked for meanwhile are refused rather than tried too. Raises
        ChecksUnavailable (the reason) while the back-off has not passed or the reason is permanent."""
        now = self._clock()
        with self._state_lock:
            u = self._unavailable
            if u is None:
                return
            if u.retry_wall is None or now < u.retry_wall:
                raise ChecksUnavailable(u.reason, u.retry_wall is None)
            failures = u.failures + 1
            retry = now + retry_delay(failures, self.settings.periodic_interval_seconds)
            self._unavailable = dataclasses.replace(u, failures=failures, retry_wall=retry)
            self._claimed = True
        log.debug("event=sdc_checks_retry failures_before=%d next_retry_in_seconds=%.0f", failures - 1, retry - now)

    def found_unavailable(self, reason: str, permanent: bool = False) -> None:
        """A try found the checks unavailable (the build here, or a check's process that could build
        no engine): requests are refused with ``reason`` until the next try, ``retry_delay`` from
        now (from when the try was claimed, for a claimed one), or for good when ``permanent``.
        The first failure of a spell is logged, later ones are counted (``tries_failed``)."""
        now = self._clock()
        with self._state_lock:
            self.tries_failed += 1
            was = self._unavailable
            claimed, self._claimed = self._claimed, False
            if was is None:
                since, failures, retry = now, 1, now + retry_delay(1, self.settings.periodic_interval_seconds)
            elif was.retry_wall is None:
                return  # permanent already
            elif claimed or now < was.retry_wall:
                # a claimed try (counted and its back-off set when it started), or a check begun
                # before the last failure was recorded (two at once): the back-off stands
                since, failures, retry = was.since_wall, was.failures, was.retry_wall
            else:
                since, failures = was.since_wall, was.failures + 1
                retry = now + retry_delay(failures, self.settings.periodic_interval_seconds)
            self._unavailable = Unavailable(reason, permanent, since, failures, None if permanent else retry)
        if was is None or permanent:
            kind = "permanent" if permanent else "transient"
            then = ("never tried again until the daemon restarts" if permanent else
                    f"tried again from {retry - now:.0f} s on, the wait doubling while it fails")
            log.warning("event=sdc_checks_unavailable kind=%s reason=%r failures=%d (logged once; %s; later "
                        "failures are counted)", kind, reason, failures, then)
        else:
            log.debug("event=sdc_checks_still_unavailable reason=%r failures=%d retry_in_seconds=%.0f",
                      reason, failures, retry - now)

    def available_again(self) -> None:
        """A try after a transient failure ran: the checks are available again (logged once)."""
        now = self._clock()
        with self._state_lock:
            was = self._unavailable
            claimed, self._claimed = self._claimed, False
            if was is None or was.retry_wall is None:
                return
            self._unavailable = None
        failed = was.failures - (1 if claimed else 0)  # the try that ran was counted when it was claimed
        log.info("event=sdc_checks_available_again failures=%d unavailable_seconds=%.0f reason_was=%r",
                 failed, now - was.since_wall, was.reason)
        if self.on_available is not None:
            self.on_available()

    # -- the build -------------------------------------------------------------------------------

    def _build_checks(self) -> None:
        from rasd.sdc.accusation import AccusationWorkflow

        validator: Checks
        if self.isolate:
            from rasd.sdc.isolated import ChildValidator

            scenario = getattr(self._backend.scenario, "name", None)
            answering = {g: h for g, h in self._handles.items() if self.answers(g)}
            validator = self.children = ChildValidator(self.settings, answering, self._locks, self._probe,
                                                       {"kind": self._backend.name, "scenario": scenario})
            self.children.on_outcome = self.available_again  # a child that answers proves the checks run
            self.children.on_unavailable = self.found_unavailable
            self.children.on_start = self.claim_try  # a check's process while unavailable is the try
        else:
            from rasd.sdc.engines import engines_for_backend
            from rasd.sdc.validation import Validator

            factory = self._engine_factory or engines_for_backend
            engines = factory(self._backend, self.settings.seed, self.settings.numpy_memory_bytes)
            validator = Validator(self.settings, self._handles, engines, self._locks, self._clock,
                                  probe=self._probe)
        self.workflow = AccusationWorkflow(self.settings, validator, self._history, self._emit, self._clock)
        self.validator = validator  # last: a validator that is set comes with its workflow

    def get(self) -> Checks:
        """The checks, built on first use or at a retry (a caller during the build waits for it);
        ChecksUnavailable (the reason) while they cannot run here. A build that fails is kept as
        the reason (``type: message``), logged once by ``found_unavailable``."""
        validator = self.validator
        if validator is not None and self._unavailable is None:
            return validator
        with self._build_lock:
            if self.validator is not None or self.isolate:
                self.refuse()  # on real GPUs the check's process is the try, claimed as it starts
            else:
                self.claim_try()  # the build is the try (no-op the first time)
            if self.validator is None:
                try:
                    self._build_checks()
                except Exception as e:  # noqa: BLE001 - whatever stops the build makes the checks unavailable
                    reason, permanent = _reason(e), is_permanent(e)
                    self.found_unavailable(reason, permanent)
                    raise ChecksUnavailable(reason, permanent) from None
                if not self.isolate:
                    self.available_again()  # built here: the engines are the proof (no-op the first time)
            assert self.validator is not None
            return self.validator

    def known_gpus(self) -> list[int]:
        """The GPUs a check may name, without building the checks: those with an engine once
        built, until then those that answer (a GPU lost before the start gets no engine)."""
        if self.validator is not None:
            return self.validator.gpus
        return [g for g in sorted(self._handles) if self.answers(g)]

    def accusations(self) -> AccusationWorkflow:
        """The accusation workflow, building the checks first."""
        self.get()
        assert self.workflow is not None  # built with the validator
        return self.workflow

    def close(self) -> None:
        """Kill a check process that has not stopped yet: none outlives the daemon."""
        if self.children is not None:
            self.children.close()
