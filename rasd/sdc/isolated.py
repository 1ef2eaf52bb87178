"""SDC checks in a process of their own, for the daemon on real GPUs.

A check on a real GPU loads CuPy and creates a CUDA context per device: on an H200 that left the
daemon at 700 MB of RSS for the rest of its life (from 45), holding device memory and listed
among the GPU's processes, where a job's launcher or a scheduler's GPU check sees it. So the
daemon runs each check (``ChildValidator.run``) in a child process, ``python -m
rasd.sdc.isolated``, that builds the engines, runs the one check and exits: everything CUDA
gave it goes with it, and a check that crashes the process (a segfault in the driver) or hangs
(a GPU that stopped answering) takes the daemon with it no more.

The parent sends one JSON request on the child's stdin and reads JSON lines from its stdout:
``{"progress": [done, total, label]}`` as the check goes, then one of ``{"outcome": ...}``,
``{"unavailable": reason}`` (no engine could be built), ``{"cancelled": true}`` or ``{"error":
"Type: message"}``. The child's log lines go to stderr, which it shares with the daemon. The
per-GPU check locks are files (``GpuLocks``), so the child takes them as the standalone CLI does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Mapping, Sequence

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
STOP_GRACE_SECONDS = 10.0  # after SIGTERM (cancelled, or over its limit) before SIGKILL


def limit_seconds(level: str, settings: SdcSettings, scale: float) -> float:
    if level == "deep":
        return 2.0 * settings.deep_seconds * scale + DEEP_MARGIN_SECONDS
    return LIMIT_SECONDS.get(level, LIMIT_SECONDS["standard"])


class ChildValidator:
    """``Validator``'s interface for the SDC service, each run in a child process.

    ``gpus`` are the GPUs that answered when the service built its checks; the child builds one
    engine for each GPU it is asked to check.
    """

    def __init__(self, settings: SdcSettings, handles: Mapping[int, Any], lock_dir: str | None,
                 probe: BusyProbe, backend: Mapping[str, Any], python: str = sys.executable):
        self.settings = settings
        self.handles = dict(handles)
        self.lock_dir = lock_dir
        self.probe = probe
        self.backend = dict(backend)  # {"kind": "nvml"} or {"kind": "fake", "scenario": ...}
        self.python = python
        self._gpus = sorted(handles)
        self.failures = 0  # checks whose process ended without an answer, or ran past its limit
        self._unavailable_logged: set[str] = set()

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
        """``Validator.run`` in a child process. Raises Cancelled when ``cancel`` is set first,
        ChecksUnavailable when the child could build no engine; a child that dies or runs past
        its limit makes every target inconclusive, saying so."""
        unknown = [g for g in targets if g not in self._gpus]
        if unknown:
            raise ValueError(f"no GPU {unknown[0]} on this node; choose one of {self._gpus} or all")
        request = {
            "backend": self.backend, "settings": dataclasses.asdict(self.settings), "lock_dir": self.lock_dir,
            "targets": list(targets), "level": level, "force": force, "seed": seed,
            "wait_seconds": wait_seconds, "scale": scale,
        }
        limit = limit_seconds(level, self.settings, scale) + wait_seconds
        started_wall, started = time.time(), time.monotonic()
        proc = subprocess.Popen(
            [self.python, "-m", "rasd.sdc.isolated"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, start_new_session=True,  # a terminal's Ctrl-C reaches the daemon, which stops it
        )
        stopped: list[str] = []  # why the parent stopped the child, if it did
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(proc, cancel, started + limit, done, stopped),
                                   name="rasd-sdc-watch", daemon=True)
        watcher.start()
        answer: dict[str, Any] | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it ended at once; its exit says why below
            answer = _read(proc.stdout, progress)
            proc.wait()
        finally:
            done.set()
            watcher.join()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if answer is not None and "outcome" in answer:
            o = answer["outcome"]
            rounds = {int(g): tuple(Result(r) for r in rs) for g, rs in o["rounds"].items()}
            return Outcome(RunReport.from_dict(o["report"]), rounds)
        if stopped[:1] == ["cancelled"] or (not stopped and answer is not None and answer.get("cancelled")):
            raise Cancelled("the daemon is stopping")
        if not stopped and answer is not None and "unavailable" in answer:
            reason = str(answer["unavailable"])
            if reason not in self._unavailable_logged:
                self._unavailable_logged.add(reason)
                log.warning("event=sdc_checks_unavailable reason=%r (logged once)", reason)
            raise ChecksUnavailable(reason)
        if not stopped and answer is not None and "error" in answer:
            error = str(answer["error"])
            if error.startswith("ValueError: "):
                raise ValueError(error.removeprefix("ValueError: "))
            raise RuntimeError(f"the check's process failed: {error}")
        self.failures += 1
        if stopped:
            why = (f"the check did not finish within {limit:.0f} s and its process was stopped; the GPU "
                   "may have stopped answering")
        else:
            why = f"the check's process ended with status {proc.returncode} before reporting (see the log)"
        log.warning("event=sdc_check_process_failed level=%s gpus=%s why=%r", level, list(targets), why)
        rows = tuple(GpuReport(g, (CheckResult(g, "process", Result.INCONCLUSIVE, time.monotonic() - started,
                                               None, {"why": why}),)) for g in targets)
        report = RunReport(level, self.settings.seed if seed is None else seed, started_wall,
                           time.monotonic() - started, rows)
        return Outcome(report, {})


def _read(stdout: IO[str], progress: Progress | None) -> dict[str, Any] | None:
    """The child's lines: progress passed on as it comes, the last answer returned (None: none)."""
    answer = None
    for line in stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # not the protocol's (a library printing to stdout): ignored
        if not isinstance(msg, dict):
            continue
        if "progress" in msg:
            if progress is not None:
                done, total, label = msg["progress"]
                progress(int(done), int(total), str(label))
        else:
            answer = msg
    return answer


def _watch(proc: subprocess.Popen[str], cancel: threading.Event | None, deadline: float, done: threading.Event,
           stopped: list[str]) -> None:
    """Stop the child when the daemon stops (``cancel``) or it runs past ``deadline``: SIGTERM
    (it stops between steps), then SIGKILL after STOP_GRACE_SECONDS."""
    while not done.wait(0.2):
        if proc.poll() is not None:
            return
        why = "cancelled" if cancel is not None and cancel.is_set() else "limit" if time.monotonic() >= deadline else ""
        if why:
            stopped.append(why)
            proc.terminate()
            try:
                proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
            return


# -- the child ---------------------------------------------------------------------------------

def _settings(d: Mapping[str, Any]) -> SdcSettings:
    fields = {f.name for f in dataclasses.fields(SdcSettings)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    return SdcSettings(**values)


def _reason(e: Exception) -> str:
    # rasd's own refusals are written for people; others are named by their class
    return str(e) if type(e).__name__ in ("EngineUnavailable", "BackendUnavailable") else f"{type(e).__name__}: {e}"


def _say(msg: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def child(request: Mapping[str, Any]) -> dict[str, Any]:
    """Build the engines and run the one check ``request`` asks for; the answer to print."""
    from rasd.backends import open_backend
    from rasd.sdc.engines import engines_for_backend
    from rasd.sdc.locks import GpuLocks
    from rasd.sdc.validation import Validator

    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    settings = _settings(request["settings"])
    b = request["backend"]
    idle = "idle" if b.get("kind") == "fake" else None  # the fake's checks want idle GPUs (tests)
    try:
        backend = open_backend(b.get("kind"), b.get("scenario"), workload=idle)
    except Exception as e:  # noqa: BLE001 - no backend, no engine: the reason is given
        return {"unavailable": _reason(e)}
    try:
        try:
            engines = engines_for_backend(backend, settings.seed, settings.numpy_memory_bytes)
        except Exception as e:  # noqa: BLE001 - whatever stops the build is the reason given
            return {"unavailable": _reason(e)}
        handles = {g.index: g for g in backend.adapter.gpus()}
        validator = Validator(settings, handles, engines, GpuLocks(request.get("lock_dir")))
        outcome = validator.run(
            request["targets"], request["level"], force=bool(request.get("force")), seed=request.get("seed"),
            progress=lambda done, total, label: _say({"progress": [done, total, label]}), cancel=cancel,
            wait_seconds=float(request.get("wait_seconds", 0.0)), scale=float(request.get("scale", 1.0)),
        )
    except Cancelled:
        return {"cancelled": True}
    except Exception as e:  # noqa: BLE001 - reported to the daemon, which logs it
        log.exception("event=sdc_check_failed")
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        backend.close()
    return {"outcome": {"report": outcome.report.to_dict(),
                        "rounds": {str(g): [r.value for r in rs] for g, rs in outcome.rounds.items()}}}


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="level=%(levelname)s logger=%(name)s %(message)s")
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise ValueError("the request is not a JSON object")
    except ValueError as e:
        _say({"error": f"ValueError: bad request on stdin: {e}"})
        sys.exit(2)
    _say(child(request))


if __name__ == "__main__":
    main()
