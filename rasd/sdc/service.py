"""The daemon's SDC service: periodic quick checks, accusations, validate jobs, state.

Every check is driven from a worker thread of this service (the daemon's poll loop and the control
socket's threads only start or look at jobs); per-GPU locks keep two checks off one GPU.

The checks are loaded and built at the first check that is to run, never at start
(``rasd.sdc.lazy``); until then the service answers from its history, its state and
``rasd.sdc.probe``. Checks found unavailable for a transient reason are tried again after a
growing back-off (``rasd.sdc.retry``): by the periodic poll once it has passed, or by the check
of an accusation or a validate request that comes after it, whichever starts first (the others
are refused until that try answers).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rasd.model import FaultEvent
from rasd.sdc.history import SdcHistory
from rasd.sdc.jobs import JOBS_KEPT, MAX_OPEN_JOBS, Job
from rasd.sdc.locks import GpuLocks
from rasd.sdc.lazy import EngineFactory, LazyChecks
from rasd.sdc.probe import BusyProbe
from rasd.sdc.checks import Checks
from rasd.sdc.results import Cancelled, ChecksUnavailable, Result
from rasd.sdc.settings import LEVELS, SdcSettings
from rasd.sdc.state import SdcState
from rasd.sdc.tickets import Ticket, open_ticket
from rasd.sdc.tracker import StateTracker

if TYPE_CHECKING:
    from rasd.sdc.accusation import AccusationWorkflow

log = logging.getLogger(__name__)

ACCUSATION_IDLE_WAIT_SECONDS = 3600.0  # an accused GPU is usually still running the job: wait for it
# A due GPU found running a job is asked again this much later, not every poll: each look costs a
# worker thread and an NVML process query per GPU, and jobs run for hours.
BUSY_RECHECK_SECONDS = 60.0


def default_lock_dir(backend_name: str) -> str:
    from rasd.paths import default_control_socket

    return os.path.dirname(default_control_socket(backend_name))


class SdcService:
    def __init__(self, settings: SdcSettings, backend: Any, store: Any, emit: Callable[[Sequence[FaultEvent]], None],
                 clock: Callable[[], float] = time.time, lock_dir: str | None = None,
                 close_timeout: float = 10.0, engine_factory: EngineFactory | None = None,
                 isolate: bool | None = None):
        self.settings = settings
        self.close_timeout = close_timeout
        self.clock = clock
        self._emit_to_ladder = emit
        self.history = SdcHistory(store)
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._guard = threading.Lock()
        self._last_periodic: dict[int, float] = {}
        self._busy_until: dict[int, float] = {}  # GPU -> when to look again whether it is idle
        self._periodic_running = False
        self._backend = backend
        self._handles = {g.index: g for g in backend.adapter.gpus()}
        self.locks = GpuLocks(lock_dir if lock_dir is not None else default_lock_dir(backend.name))
        self.probe = BusyProbe(self._handles)
        self.unavailable_polls = 0  # periodic polls that found the checks unavailable (logged once)
        # accusations whose check found the checks unavailable: resumed when they run again
        self._stalled: dict[int | None, Ticket] = {}
        # the checks, built at the first check (checks())
        self._checks = LazyChecks(settings, backend, self._handles, self.locks, self.probe, self.history,
                                  self._emit, clock, engine_factory, isolate)
        self._checks.on_available = self._resume_stalled
        self.tracker = StateTracker(self._handles)
        self._resume_open_accusations()

    # -- ladder and state ---------------------------------------------------------------------

    def _emit(self, events: Sequence[FaultEvent]) -> None:
        for ev in events:
            verdict = ev.details.get("verdict", "")
            technician = bool(ev.details.get("evidence", {}).get("technician"))
            self.tracker.accusation(ev.gpu, verdict, technician and verdict != "suspect")
        self._emit_to_ladder(events)

    def state(self) -> SdcState:
        return dataclasses.replace(self.tracker.state(), unavailable=self._checks.status(),
                                   unavailable_tries=self._checks.tries_failed)

    def reconfigure(self, settings: SdcSettings) -> None:
        """SIGHUP: new intervals, sizes and thresholds apply to the next check."""
        self.settings = settings
        self._checks.reconfigure(settings)

    @property
    def unavailable(self) -> str | None:
        """Why the checks cannot run on this node (None: they can, or none has failed yet)."""
        return self._checks.unavailable

    @property
    def validator(self) -> Checks | None:
        """The checks once built (None until then, and while their build fails)."""
        return self._checks.validator

    @property
    def workflow(self) -> AccusationWorkflow | None:
        """The accusation workflow, built with the checks."""
        return self._checks.workflow

    @property
    def isolate(self) -> bool:
        """Whether each check runs in a child process (``rasd.sdc.isolated``)."""
        return self._checks.isolate

    def _resume_open_accusations(self) -> None:
        """After a restart, open accusations keep their GPU suspect and get their check again
        (which builds the checks: an open accusation needs them)."""
        for a in self.history.accusations():
            if a.verdict is None:
                self.tracker.accusation(a.gpu, "suspect")
                if self.unavailable is None and self._checks.answers(a.gpu):
                    self._resume(a.id, a.gpu, a.reason, a.opened_wall)
            else:
                self.tracker.accusation(a.gpu, a.verdict, bool((a.evidence or {}).get("technician")))

    def _resume(self, accusation: int | None, gpu: int, reason: str, opened_wall: float) -> None:
        ticket = Ticket(accusation, gpu, reason, opened_wall, False)
        self._start("accuse", [gpu], lambda job: self._investigate_once_built(job, ticket))

    def _resume_stalled(self) -> None:
        """The checks run again: the accusations that found them unavailable get their check."""
        with self._guard:
            stalled, self._stalled = list(self._stalled.values()), {}
        for ticket in stalled:
            try:
                self._resume(ticket.accusation, ticket.gpu, ticket.reason, ticket.opened_wall)
            except ValueError as e:  # too many jobs open: it resumes at the next start instead
                log.warning("event=sdc_accusation_not_resumed accusation=%s gpu=%s error=%r",
                            ticket.accusation, ticket.gpu, str(e))

    def _stall(self, ticket: Ticket) -> dict[str, Any]:
        """The accusation stays open and its GPU suspect until the checks run again."""
        with self._guard:
            self._stalled[ticket.accusation] = ticket
        if self._checks.status() is None:  # another try succeeded meanwhile: no recovery is to come
            self._resume_stalled()
        return {"verdict": "suspect", "evidence": {"accusation": ticket.accusation, "unavailable": self.unavailable}}

    def checks(self) -> Checks:
        """The checks, built on first use (a caller during the build waits for it);
        ChecksUnavailable (the reason) where they cannot run here."""
        return self._checks.get()

    def _investigate_once_built(self, job: Job, ticket: Ticket) -> dict[str, Any]:
        """Build the checks in the job's thread (never in a request), then investigate."""
        try:
            self.checks()
            return self._investigate(job, ticket)
        except ChecksUnavailable:  # here, or found by the check's process: the accusation stays open
            return self._stall(ticket)

    # -- jobs ----------------------------------------------------------------------------------

    def _start(self, kind: str, gpus: Sequence[int], body: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(next(self._ids), kind, gpus)

        def run() -> None:
            try:
                job.result = body(job)
            except Cancelled:
                job.error = "cancelled: the daemon is stopping (an open accusation resumes at the next start)"
            except ChecksUnavailable as e:  # logged once where found; no traceback per job
                job.error = f"SDC checks are unavailable on this node: {e}"
            except Exception as e:  # noqa: BLE001 - a job's failure is reported, the service goes on
                log.exception("sdc job failed job=%s kind=%s", job.id, kind)
                job.error = f"{type(e).__name__}: {e}"
            finally:
                job.done_at = time.monotonic()
                job.done = True

        t = threading.Thread(target=run, name=f"rasd-sdc-{kind}-{job.id}", daemon=True)
        with self._guard:
            now = time.monotonic()
            for old in sorted(self._jobs)[:-JOBS_KEPT]:
                if self._jobs[old].evictable(now):
                    del self._jobs[old]
            if sum(1 for j in self._jobs.values() if not j.evictable(now)) >= MAX_OPEN_JOBS:
                raise ValueError(f"{MAX_OPEN_JOBS} checks are queued or unread already; retry when they finish")
            self._jobs[job.id] = job
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return job

    def _validate(self, job: Job, gpus: Sequence[int] | None, level: str, force: bool, wait: float) -> dict[str, Any]:
        """Run a check on ``gpus`` (None: every GPU with an engine), building the checks first."""
        def progress(done: int, total: int, label: str) -> None:
            job.progress = (done, total, label)

        checks = self.checks()
        if gpus is None:
            gpus = job.gpus = checks.gpus
        self.tracker.running(gpus, +1)
        try:
            outcome = checks.run(gpus, level, force=force, progress=progress, cancel=self._cancel,
                                         wait_seconds=wait)
        finally:
            self.tracker.running(gpus, -1)
        now = self.clock()
        self.tracker.record(outcome.report, now)
        self.history.record(outcome.report, now)
        return outcome.report.to_dict()

    def _investigate(self, job: Job, ticket: Ticket) -> dict[str, Any]:
        def progress(done: int, total: int, label: str) -> None:
            job.progress = (done, total, label)

        self.tracker.running([ticket.gpu], +1)
        try:
            finding = self._checks.accusations().investigate(
                ticket, cancel=self._cancel, idle_wait_seconds=ACCUSATION_IDLE_WAIT_SECONDS, progress=progress)
        finally:
            self.tracker.running([ticket.gpu], -1)
        now = self.clock()
        for o in finding.outcomes:
            self.tracker.record(o.report, now)
            self.history.record(o.report, now)
        return {"verdict": finding.verdict.value, "evidence": finding.evidence}

    # -- periodic ------------------------------------------------------------------------------

    def tick(self, now_wall: float) -> None:
        self.maybe_run_periodic(now_wall)

    def maybe_run_periodic(self, now_wall: float) -> None:
        """Called each health poll: start quick checks on due GPUs in a worker; never blocks."""
        if not self.settings.periodic:
            return
        self._run_due(now_wall)

    def _run_due(self, now_wall: float) -> None:
        """Quick checks on the due GPUs in a worker; once a transient unavailability's back-off has
        passed, on every idle GPU: that check is the retry."""
        if self._cancel.is_set():
            return
        if self._checks.refusal() is not None:  # a known state, logged once when it was found: counted only
            self.unavailable_polls += 1
            return
        retry = self._checks.retry_due()
        with self._guard:
            if self._periodic_running:
                return
            due = [g for g in sorted(self._handles)
                   if (retry or now_wall - self._last_periodic.get(g, float("-inf"))
                       >= self.settings.periodic_interval_seconds)
                   and now_wall >= self._busy_until.get(g, float("-inf"))]
            if not due:
                return
            self._periodic_running = True
        self._start("periodic", due, lambda job: self._periodic(job, due, now_wall))

    def _periodic(self, job: Job, due: Sequence[int], now_wall: float) -> dict[str, Any]:
        try:
            # Busy GPUs (running_pids) and suspects are skipped and stay due for the next poll.
            suspects = self.tracker.state().suspects
            held = self.locks.held()
            # asked before the checks load: a node whose GPUs all run jobs never loads them
            idle = [g for g in due if g not in suspects and not self.probe.busy_pids(g) and g not in held]
            with self._guard:
                for g in due:
                    if g not in idle:
                        self._busy_until[g] = now_wall + BUSY_RECHECK_SECONDS
            if idle:
                try:
                    known = self.checks().gpus
                except ChecksUnavailable as e:  # logged once by the build; later polls only count
                    return {"checked": [], "unavailable": str(e)}
                idle = [g for g in idle if g in known]  # a GPU lost before the start has no engine
            if not idle:
                return {"checked": []}
            try:
                report = self._validate(job, idle, "quick", force=False, wait=0.0)
            except ChecksUnavailable as e:  # found by the check's process; later polls only count
                return {"checked": [], "unavailable": str(e)}
            checked = [g["gpu"] for g in report["gpus"] if not any(c["name"] == "available" for c in g["checks"])]
            with self._guard:
                for g in checked:
                    self._last_periodic[g] = now_wall
            for g in report["gpus"]:
                if g["result"] == Result.FAIL.value and self.workflow is not None:
                    # A failed quick check accuses the GPU on rasd's own behalf.
                    names = [c["name"] for c in g["checks"] if c["result"] == "fail"]
                    self.accuse(g["gpu"], f"periodic quick check failed: {', '.join(names)}")
            return {"checked": checked, "report": report}
        finally:
            with self._guard:
                self._periodic_running = False

    # -- control ops ---------------------------------------------------------------------------

    def accuse(self, gpu: int, reason: str) -> dict[str, Any]:
        """Open the accusation and answer at once; the checks are built and run in the job.
        While the checks are unavailable and the back-off has not passed (or the reason is
        permanent) the answer is the reason; past it the accusation opens and its check is the
        try (if that fails, it stays open, its GPU suspect, until the checks run again)."""
        self._checks.refuse()
        known = self._checks.known_gpus()
        if gpu not in known:
            raise ValueError(f"no GPU {gpu} on this node; choose one of {known}")
        ticket = open_ticket(self.settings, self.history, self._emit, self.clock, gpu, reason)
        job = self._start("accuse", [gpu], lambda j: self._investigate_once_built(j, ticket))
        return {"accusation": ticket.accusation, "gpu": gpu, "verdict": "suspect", "escalated": ticket.escalated,
                "job": job.id}

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"accuse": self._op_accuse, "validate": self._op_validate, "sdc_status": self._op_status}

    def _op_accuse(self, req: dict[str, Any]) -> dict[str, Any]:
        gpu, reason = req.get("gpu"), req.get("reason")
        if not isinstance(gpu, int) or isinstance(gpu, bool):
            raise ValueError('accuse needs "gpu": the GPU index as a whole number')
        if not isinstance(reason, str):
            raise ValueError('accuse needs "reason": a short text saying what the job saw')
        return self.accuse(gpu, reason)

    def _op_validate(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start a validation job, or (with "job") report on one: {"job", "done", "progress", "report"}."""
        if "job" in req:
            job = self._jobs.get(req["job"]) if isinstance(req["job"], int) else None
            if job is None:
                raise ValueError(f"no job {req['job']!r}; it may have ended long ago")
            if job.done:
                job.read = True
            return job.to_dict()
        level = req.get("level", "quick")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        # Checked without building the checks: on real GPUs the build (CuPy, a CUDA context per
        # device) can outlast the client's request timeout, so it runs in the job (the retry, once
        # an unavailability's back-off has passed).
        self._checks.refuse()
        gpus = req.get("gpus", "all")
        known = self._checks.known_gpus()
        targets = known if gpus == "all" else gpus
        if not isinstance(targets, list) or not all(isinstance(g, int) and not isinstance(g, bool) for g in targets):
            raise ValueError('"gpus" must be "all" or a list of GPU indexes')
        unknown = [g for g in targets if g not in known]
        if unknown:
            raise ValueError(f"no GPU {unknown[0]} on this node; choose one of {known} or all")
        force = bool(req.get("force", False))
        wait = float(req.get("wait_seconds", 600.0))
        chosen = None if gpus == "all" else targets
        job = self._start("validate", targets, lambda j: self._validate(j, chosen, level, force, wait))
        return job.to_dict()

    def _op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        st = self.state()
        u = st.unavailable
        with self._guard:
            jobs = [j.to_dict() | {"report": None} for j in self._jobs.values()]
        return {
            "available": u is None,
            "why": None if u is None else u.reason,
            "permanent": None if u is None else u.permanent,
            "unavailable_since": None if u is None else u.since_wall,
            "failures": 0 if u is None else u.failures,
            "retry_at": None if u is None else u.retry_wall,  # Unix time; None: never (permanent)
            "unavailable_polls": self.unavailable_polls,
            "unavailable_tries": st.unavailable_tries,
            "suspects": sorted(st.suspects),
            "technician": sorted(st.technician),
            "running": sorted(st.running),
            "checks": [{"gpu": c.gpu, "check": c.check, "result": c.result, "time_wall": c.time_wall,
                        "seconds": c.seconds, "gflops": c.gflops} for c in st.checks],
            "accusations": [{"id": a.id, "gpu": a.gpu, "reason": a.reason, "opened_wall": a.opened_wall,
                             "verdict": a.verdict} for a in self.history.accusations()[-50:]],
            "jobs": jobs,
        }

    def close(self, timeout: float | None = None) -> None:
        """Cancel running checks (they stop between steps) and wait for the workers
        (``timeout`` seconds, by default ``close_timeout``)."""
        if timeout is None:
            timeout = self.close_timeout
        self._cancel.set()
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self._checks.close()  # a check process that has not stopped yet is killed: none outlives us
