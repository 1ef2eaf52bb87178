"""SDC checks in a process of their own, for the daemon on real GPUs.

A check on a real GPU loads CuPy and creates a CUDA context per device: on an H200 that left the
daemon at 700 MB of RSS for the rest of its life (from 45), holding device memory and listed
among the GPU's processes, where a job's launcher or a scheduler's GPU check sees it. So the
daemon runs each check (``ChildValidator.run``) in a child process, ``python -m
rasd.sdc.child``, that builds the engines, runs the one check and exits: everything CUDA
gave it goes with it, and a check that crashes the process (a segfault in the driver) or hangs
(a GPU that stopped answering) takes the daemon with it no more.

The daemon decides first, as ``Validator.run`` does in one process: a GPU running a job (its own
check processes left out) or held by another of its checks is reported inconclusive and given to
no child, and no child starts when no GPU is left. It holds its in-process per-GPU locks on the
GPUs it gives the child (the targets, and idle GPUs as witnesses for the vote and the throughput
check); the child takes the lock files, as a standalone ``rasd validate`` does, and makes a CUDA
context on those GPUs only.

The parent sends one JSON request on the child's stdin and reads JSON lines from its stdout:
``{"progress": [done, total, label]}`` as the check goes, then one of ``{"outcome": ...}`` (the
report with every check's evidence and unrounded seconds, as the store keeps them),
``{"unavailable": reason, "permanent": bool}`` (no engine could be built; permanent when none can
in this installation), ``{"cancelled": true}`` or ``{"error": "Type: message"}``. The child's log lines go to stderr, which it shares with the daemon.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rasd.sdc.child import outcome_from_wire
from rasd.sdc.levels import plan_for
from rasd.sdc.locks import GpuLocks, admit
from rasd.sdc.probe import BusyProbe
from rasd.sdc.results import Cancelled, CheckResult, ChecksUnavailable, GpuReport, Outcome, Result, RunReport
from rasd.sdc.settings import SdcSettings

if TYPE_CHECKING:
    from rasd.sdc.runner import Progress

log = logging.getLogger(__name__)

# How long a check may take before its process is stopped as hung: far beyond what each level
# takes on a healthy GPU (quick: seconds; standard: about 2 minutes a node), and for deep and the
# accusations' escalated checks, their own length twice over.
LIMIT_SECONDS = {"quick": 300.0, "standard": 1800.0}
DEEP_MARGIN_SECONDS = 600.0
# After SIGTERM (cancelled, or over its limit) before SIGKILL; as long again after that before
# the daemon stops reading a child that neither ends nor closes its output (stuck in the driver,
# or a process it started holds the pipe) and reports it.
STOP_GRACE_SECONDS = 10.0
READ_SECONDS = 0.2  # how often the parent looks at cancel and the limit while the child is quiet


def limit_seconds(level: str, settings: SdcSettings, scale: float) -> float:
    if level == "deep":
        return 2.0 * settings.deep_seconds * scale + DEEP_MARGIN_SECONDS
    return LIMIT_SECONDS.get(level, LIMIT_SECONDS["standard"])


class _Child:
    """A check process the daemon started, with the power limits to put back if it dies."""

    def __init__(self, proc: subprocess.Popen[bytes], limits: Mapping[int, float]):
        self.proc = proc
        self.limits = dict(limits)  # GPU -> watts before the check (deep checks with enforce_power)


class ChildValidator:
    """``Validator``'s interface for the SDC service, each run in a child process.

    ``handles`` are the GPUs that answered when the service built its checks; ``locks`` are the
    service's (this process takes only their in-process side; the child takes their files);
    ``probe`` is the service's busy rule, told the pids of the check processes started here.
    """

    def __init__(self, settings: SdcSettings, handles: Mapping[int, Any], locks: GpuLocks,
                 probe: BusyProbe, backend: Mapping[str, Any], python: str = sys.executable):
        self.settings = settings
        self.handles = dict(handles)
        self.locks = locks
        self.probe = probe
        self.backend = dict(backend)  # {"kind": "nvml"} or {"kind": "fake", "scenario": ...}
        self.python = python
        self._gpus = sorted(handles)
        self._guard = threading.Lock()
        self._live: dict[int, _Child] = {}  # pid -> a child not yet reaped
        self._closed = False
        self.failures = 0  # checks whose process ended without an answer, or ran past its limit
        self._failing = 0  # such failures in a row (the first is logged, the rest counted)
        # told each time a child answers with an outcome (the checks run) or could build no engine
        # (reason, permanent): the service's LazyChecks keeps, logs and counts availability
        self.on_outcome: Callable[[], None] | None = None
        self.on_unavailable: Callable[[str, bool], None] | None = None
        # told as a child is to start; raises ChecksUnavailable to refuse it (LazyChecks.claim_try:
        # while the checks are unavailable the child is the try)
        self.on_start: Callable[[], None] | None = None

    @property
    def gpus(self) -> list[int]:
        return list(self._gpus)

    def busy_pids(self, gpu: int) -> list[int]:
        return self.probe.busy_pids(gpu)

    @property
    def process_list_failures(self) -> dict[tuple[int, str], int]:
        return self.probe.process_list_failures

    def run(self, targets: Sequence[int], level: str, force: bool = False, seed: int | None = None,
            progress: Progress | None = None, cancel: threading.Event | None = None,
            wait_seconds: float = 0.0, scale: float = 1.0) -> Outcome:
        """``Validator.run`` with the check in a child process. A GPU in use (and not ``force``)
        or held by another check of this process is reported inconclusive and no child checks
        it. Raises Cancelled when ``cancel`` is set first, ChecksUnavailable when the child could
        build no engine; a child that dies or runs past its limit makes every GPU it was given
        inconclusive, one round, saying so."""
        unknown = [g for g in targets if g not in self._gpus]
        if unknown:
            raise ValueError(f"no GPU {unknown[0]} on this node; choose one of {self._gpus} or all")
        if self._closed:
            raise Cancelled("the daemon is stopping")
        self._reap()
        plan = plan_for(level, self.settings, scale)
        seed = self.settings.seed if seed is None else seed
        started_wall, started = time.time(), time.monotonic()
        held, skipped = admit(targets, force, self.busy_pids,
                              lambda g: self.locks.try_acquire(g, across_processes=False), self.locks.release,
                              wait_seconds, cancel)
        deadline = started + wait_seconds
        try:
            checked = list(held)
            witnesses: list[int] = []
            if checked and (plan.vote or plan.throughput):
                for g in self._gpus:
                    if (g not in targets and not self.busy_pids(g)
                            and self.locks.try_acquire(g, across_processes=False)):
                        witnesses.append(g)
                        held.append(g)
            if checked:
                left = max(0.0, deadline - time.monotonic())
                child = self._in_child(checked, witnesses, level, force, seed, progress, cancel, left, scale,
                                       bool(plan.power_limits_watts))
            else:
                child = Outcome(RunReport(plan.name, seed, started_wall, time.monotonic() - started, ()), {})
        finally:
            for g in held:
                self.locks.release(g)
        by_gpu = {r.gpu: r for r in child.report.gpus}
        gpus = tuple(by_gpu[g] if g in by_gpu else GpuReport(g, (skipped[g],)) for g in targets)
        r = child.report
        return Outcome(RunReport(r.level, r.seed, r.started_wall, r.seconds, gpus, r.notes), child.rounds)

    def _in_child(self, targets: list[int], witnesses: list[int], level: str, force: bool, seed: int,
                  progress: Progress | None, cancel: threading.Event | None, wait_seconds: float, scale: float,
                  sets_power: bool) -> Outcome:
        request = {
            "backend": self.backend, "settings": dataclasses.asdict(self.settings),
            "lock_dir": self.locks.directory if self.locks.directory_usable() else None,
            "targets": targets, "witnesses": witnesses, "level": level, "force": force, "seed": seed,
            "wait_seconds": wait_seconds, "scale": scale, "parent": os.getpid(),
            "log_level": logging.getLogger("rasd").getEffectiveLevel(),
        }
        limit = limit_seconds(level, self.settings, scale) + wait_seconds
        started_wall, started = time.time(), time.monotonic()
        # a deep check with enforce_power lowers the limits: put back here if the child cannot
        if self.on_start is not None:
            self.on_start()
        limits = self._power_limits(targets) if sets_power else {}
        proc = subprocess.Popen(
            [self.python, "-m", "rasd.sdc.child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd="/",  # `-m` puts the working directory first on sys.path: no checkout there may shadow rasd
            env=child_env(), start_new_session=True,  # a terminal's Ctrl-C reaches the daemon, which stops it
        )
        entry = _Child(proc, limits)
        with self._guard:
            self._live[proc.pid] = entry
            if self._closed:  # closed while it started: close() did not see it
                proc.kill()
        self.probe.own(proc.pid)  # its CUDA contexts are not a job's
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(request).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it ended at once; its exit says why below
            answer, stopped = _converse(proc, progress, cancel, started + limit)
        finally:
            self._end(entry)
        if self._closed and (answer is None or "outcome" not in answer):
            self._restore(entry)
            raise Cancelled("the daemon is stopping")  # close() stopped it: not a failure of the check
        if answer is not None and "outcome" in answer:
            self._answered()
            if self.on_outcome is not None:
                self.on_outcome()
            return outcome_from_wire(answer["outcome"])
        self._restore(entry)
        if stopped == "cancelled" or (not stopped and answer is not None and answer.get("cancelled")):
            raise Cancelled("the daemon is stopping")
        if not stopped and answer is not None and "unavailable" in answer:
            self._answered()
            reason, permanent = str(answer["unavailable"]), bool(answer.get("permanent", False))
            if self.on_unavailable is not None:
                self.on_unavailable(reason, permanent)
            raise ChecksUnavailable(reason, permanent)
        if not stopped and answer is not None and "error" in answer:
            self._answered()
            error = str(answer["error"])
            if error.startswith("ValueError: "):
                raise ValueError(error.removeprefix("ValueError: "))
            raise RuntimeError(f"the check's process failed: {error}")
        if stopped:
            why = (f"the check's process did not finish within {limit:.0f} s and was stopped; the GPU "
                   "may have stopped answering")
        else:
            why = f"the check's process ended with status {proc.poll()} before reporting (see the log)"
        self._failed(level, targets, why)
        seconds = time.monotonic() - started
        rows = tuple(GpuReport(g, (CheckResult(g, "process", Result.INCONCLUSIVE, seconds, None, {"why": why}),))
                     for g in targets)
        # one inconclusive round each: an accusation decides on it rather than waiting for the
        # GPU as if it were busy and starting the same failing check again
        return Outcome(RunReport(level, seed, started_wall, seconds, rows),
                       {g: (Result.INCONCLUSIVE,) for g in targets})

    # -- bookkeeping ---------------------------------------------------------------------------

    def _answered(self) -> None:
        with self._guard:
            failed, self._failing = self._failing, 0
        if failed:
            log.info("event=sdc_check_process_answers_again failures=%d", failed)

    def _failed(self, level: str, gpus: Sequence[int], why: str) -> None:
        with self._guard:
            self.failures += 1
            self._failing += 1
            first = self._failing == 1
        if first:
            log.warning("event=sdc_check_process_failed level=%s gpus=%s why=%r (logged once; counted as the "
                        "check 'process' until a check's process answers again)", level, list(gpus), why)

    def _power_limits(self, gpus: Sequence[int]) -> dict[int, float]:
        out = {}
        for g in gpus:
            try:
                out[g] = float(self.handles[g].power_limits().limit_watts)
            except Exception as e:  # noqa: BLE001 - unreadable: nothing known to put back
                log.warning("event=sdc_power_limit_unread gpu=%s error=%r", g, str(e))
        return out

    def _restore(self, entry: _Child) -> None:
        """Put back the power limits a child may have lowered and ended without restoring."""
        with self._guard:
            limits, entry.limits = entry.limits, {}
        for g, watts in limits.items():
            try:
                self.handles[g].set_power_limit(watts)
            except Exception as e:  # noqa: BLE001 - logged; the ladder and power service go on
                log.warning("event=sdc_power_limit_not_restored gpu=%s watts=%s error=%r", g, watts, str(e))

    def _end(self, entry: _Child) -> None:
        """The parent is done with the child: killed if still running; forgotten once reaped
        (one stuck in the driver stays listed, so the busy rule still leaves it out)."""
        proc = entry.proc
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                log.warning("event=sdc_check_process_unreaped pid=%s (it does not end; killed, and looked at "
                            "again before the next check)", proc.pid)
                return
        with self._guard:
            self._live.pop(proc.pid, None)
        self.probe.disown(proc.pid)

    def _reap(self) -> None:
        with self._guard:
            ended = [c for c in self._live.values() if c.proc.poll() is not None]
        for c in ended:
            self._end(c)

    def close(self) -> None:
        """Kill every check process still running (the daemon stops) and put back what they
        changed; no check starts after this."""
        self._closed = True
        with self._guard:
            live = list(self._live.values())
        for c in live:
            if c.proc.poll() is None:
                c.proc.kill()
            self._restore(c)
        for c in live:
            self._end(c)


def child_env() -> dict[str, str]:
    """The daemon's environment, with CuPy's kernel cache in the service's cache directory
    (systemd's CacheDirectory=): the default under the home directory is read-only there."""
    env = dict(os.environ)
    cache = env.get("CACHE_DIRECTORY")
    if cache and "CUPY_CACHE_DIR" not in env:
        env["CUPY_CACHE_DIR"] = os.path.join(cache.split(":")[0], "cupy")
    return env


def _converse(proc: subprocess.Popen[bytes], progress: Progress | None, cancel: threading.Event | None,
              deadline: float) -> tuple[dict[str, Any] | None, str]:
    """Read the child's lines until it ends (or is given up on); progress is passed on as it
    comes. Stops the child when ``cancel`` is set or it runs past ``deadline``: SIGTERM (it stops
    between steps), SIGKILL after STOP_GRACE_SECONDS, and after as long again the child is left
    unread. Returns the last answer (None: none) and why it was stopped ("": it was not)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    answer: dict[str, Any] | None = None
    buf = b""
    eof = False
    stopped, stop_at, exited_at, killed = "", 0.0, 0.0, False
    answered_at = 0.0
    try:
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                # its last lines are in the pipe already; a process it left behind may hold the
                # pipe open, so EOF is waited for a little only
                if eof or answer is not None or now >= exited_at + STOP_GRACE_SECONDS:
                    break
            elif not stopped:
                if cancel is not None and cancel.is_set():
                    stopped = "cancelled"
                elif now >= deadline:
                    stopped = "limit"
                elif answer is not None and now >= answered_at + STOP_GRACE_SECONDS:
                    stopped = "answered"  # it answered but does not exit (stuck in CUDA's teardown)
                if stopped:
                    stop_at = now
                    proc.terminate()
            elif not killed and now >= stop_at + STOP_GRACE_SECONDS:
                killed = True
                proc.kill()
            if stopped and now >= stop_at + 2 * STOP_GRACE_SECONDS:
                break  # neither ends nor closes its output: given up on, reported below
            if eof:
                time.sleep(0.05)
                continue
            ready, _, _ = select.select([fd], [], [], READ_SECONDS)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                eof = True
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = _message(line)
                if msg is None:
                    continue
                if "progress" in msg:
                    if progress is not None:
                        done, total, label = msg["progress"]
                        progress(int(done), int(total), str(label))
                else:
                    answer, answered_at = msg, now
    finally:
        proc.stdout.close()
    return answer, "" if stopped == "answered" else stopped


def _message(line: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None  # not the protocol's (a library printing to stdout): ignored
    return msg if isinstance(msg, dict) else None
