"""The SDC checks, built once at the first check that is to run, or the reason they cannot run.

The checks (engines, GEMM, memory patterns, NumPy or CuPy) are loaded and built at the first check
that is to run, never at start: most of a node's life its GPUs run jobs and no check runs. On
real GPUs each check runs in a child process instead (``rasd.sdc.isolated``), so CuPy and its CUDA
contexts never stay in the daemon. A build that fails is one reason, logged once, that every later
caller is told; so is a check's process that could build no engine.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rasd.model import FaultEvent
from rasd.sdc.checks import Checks
from rasd.sdc.history import SdcHistory
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe, engines_missing
from rasd.sdc.results import ChecksUnavailable
from rasd.sdc.settings import SdcSettings

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
        self._build_lock = threading.Lock()
        self._found_lock = threading.Lock()
        # set only when the build has finished: the checks are built, or the reason is kept
        self._built = False
        self.unavailable: str | None = engines_missing(backend)
        if self.unavailable is not None:
            log.warning("sdc checks unavailable reason=%r", self.unavailable)

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

    def _build(self) -> None:
        """Load the checks and build one engine per GPU, once. Any failure is kept as the reason
        (``type: message``) and logged here, once; every later caller is told that reason."""
        with self._build_lock:
            if self._built:
                return
            try:
                if self.unavailable is None:
                    self._build_checks()
            except Exception as e:  # noqa: BLE001 - whatever stops the build makes the checks unavailable
                self.unavailable = _reason(e)
                log.warning("event=sdc_checks_unavailable reason=%r (logged once; later checks are refused "
                            "with this reason)", self.unavailable)
            finally:
                # only now: a caller that finds it set finds the checks built or the reason kept
                self._built = True

    def _build_checks(self) -> None:
        from rasd.sdc.accusation import AccusationWorkflow

        validator: Checks
        if self.isolate:
            from rasd.sdc.isolated import ChildValidator

            scenario = getattr(self._backend.scenario, "name", None)
            answering = {g: h for g, h in self._handles.items() if self.answers(g)}
            validator = self.children = ChildValidator(self.settings, answering, self._locks, self._probe,
                                                       {"kind": self._backend.name, "scenario": scenario})
        else:
            from rasd.sdc.engines import engines_for_backend
            from rasd.sdc.validation import Validator

            factory = self._engine_factory or engines_for_backend
            engines = factory(self._backend, self.settings.seed, self.settings.numpy_memory_bytes)
            validator = Validator(self.settings, self._handles, engines, self._locks, self._clock,
                                  probe=self._probe)
        self.workflow = AccusationWorkflow(self.settings, validator, self._history, self._emit, self._clock)
        self.validator = validator  # last: a validator that is set comes with its workflow

    def found_unavailable(self, reason: str) -> None:
        """A check's process could build no engine: a known state from now on, as when the
        build fails in this process (periodic polls only count it; requests are refused)."""
        with self._found_lock:
            if self.unavailable is None:
                self.unavailable = reason

    def get(self) -> Checks:
        """The checks, built on first use (a caller during the build waits for it);
        ChecksUnavailable (the reason) where they cannot run here."""
        validator = self.validator
        if validator is None:
            self._build()
            validator = self.validator
        if validator is None:
            raise ChecksUnavailable(self.unavailable or "SDC checks are unavailable on this node")
        return validator

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
