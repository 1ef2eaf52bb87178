"""The actuator: turns decisions into configured commands, or only logs them (advisory).

Enforced mode runs argument lists without a shell, with a timeout, and records every run (exit
code, output tail). Never two runs at once on one component; each (component, kind) at most once
per ``min_interval_seconds``; at most ``max_actions_per_hour`` on the node. Degradations run
first (drain before a reset), then the rung's own command; the first failure stops the sequence,
and a failed rung command is reported back so the ladder climbs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.settings import ActionSettings
from rasd.model import Rung

log = logging.getLogger("rasd.ladder.actions")

RUNG_ACTIONS = {Rung.RESTART_PROCESS: "restart_process", Rung.RESET_GPU: "reset_gpu",
                Rung.REBOOT_NODE: "reboot_node", Rung.RMA: "rma"}
DEGRADATION_ORDER = ("drain", "stop_p2p", "disable_link", "exclude_gpu")


@dataclass(frozen=True, slots=True)
class RunOutcome:
    result: str  # ok, failed, timeout, error
    exit_code: int | None
    output_tail: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ActionResult:
    time_wall: float
    gpu: int
    link: int | None
    kind: str  # an ACTION_KINDS name
    argv: tuple[str, ...]
    result: str  # ok, failed, timeout, error, busy, rate_limited
    exit_code: int | None
    seconds: float | None
    output_tail: str
    rung: Rung | None  # set when this was the rung's own command (a remedy)


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome: ...


KILL_GRACE_SECONDS = 2.0  # after SIGTERM to a timed-out action's group, before SIGKILL


def subprocess_runner(argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome:
    """Run without a shell; stdout and stderr together, last ``tail_bytes`` kept.

    The command runs in its own session (so its own process group): a timeout ends the whole
    group, children included (SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``), not only the
    direct child whose orphans would keep running and keep the output pipe open."""
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        return RunOutcome("error", None, f"cannot run {argv[0]!r}: {e.strerror}",
                          time.monotonic() - t0)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        partial = e.output or b""
        _end_group(p)
        try:
            rest, _ = p.communicate(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            rest = b""
        return RunOutcome("timeout", None, _tail(partial + (rest or b""), tail_bytes), time.monotonic() - t0)
    return RunOutcome("ok" if p.returncode == 0 else "failed", p.returncode,
                      _tail(out, tail_bytes), time.monotonic() - t0)


def _end_group(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM the action's process group, SIGKILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(p.pid, sig)  # the session leader's pid is the group id
        except ProcessLookupError:
            return
        except PermissionError:
            p.kill()
            return
        if wait is None:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if p.poll() is not None and not _group_alive(p.pid):
                return
            time.sleep(0.05)
    p.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(data: bytes, n: int) -> str:
    return data[-n:].decode("utf-8", "replace") if n else ""


class RecordingRunner:
    """A runner for tests: records every argv, answers with a scripted exit code per program."""

    def __init__(self, exit_codes: Mapping[str, int] | None = None, seconds: float = 0.0):
        self.calls: list[tuple[str, ...]] = []
        self.exit_codes = dict(exit_codes or {})
        self.seconds = seconds
        self._lock = threading.Lock()

    def __call__(self, argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome:
        with self._lock:
            self.calls.append(tuple(argv))
        if self.seconds:
            time.sleep(self.seconds)
        code = self.exit_codes.get(argv[0], 0)
        return RunOutcome("ok" if code == 0 else "failed", code, f"{argv[0]} exit {code}",
                          self.seconds)


class Actuator:
    """Plans and runs the commands for decisions. ``on_result`` gets every ActionResult."""

    def __init__(
        self,
        settings: ActionSettings | None = None,
        runner: Runner | None = None,
        *,
        on_result: Callable[[ActionResult], None] | None = None,
        synchronous: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.s = settings or ActionSettings()
        self.runner = runner or subprocess_runner
        self.on_result = on_result
        self._sync = synchronous
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._busy: set[tuple[int, int | None]] = set()
        self._last: dict[tuple[tuple[int, int | None], str], float] = {}
        self._hour: deque[float] = deque()
        self._pool = None if synchronous else ThreadPoolExecutor(4, "rasd-action")
        # Asked on the action thread before an enforced plan runs; False defers the decision
        # (its owner resubmits it). The scheduler integration takes the node out here.
        self.gate: Callable[[Decision, Mapping[str, object]], bool] | None = None

    @property
    def enforced(self) -> bool:
        return self.s.enforce

    def plan(self, d: Decision, info: Mapping[str, object]) -> list[tuple[str, tuple[str, ...]]]:
        """(kind, argv) in order: configured degradations, then the rung's command."""
        kinds = [k for k in DEGRADATION_ORDER if k in d.degradations]
        if d.rung in RUNG_ACTIONS:
            kinds.append(RUNG_ACTIONS[d.rung])
        values = {"gpu_index": d.gpu, "link": "" if d.link is None else d.link,
                  "gpu_uuid": info.get("uuid") or "", "pci_bus_id": info.get("pci_bus_id") or "",
                  "hostname": info.get("hostname") or ""}
        out = []
        for k in kinds:
            argv = self.s.commands.get(k)
            if argv:
                out.append((k, tuple(str(a).format(**values) for a in argv)))
        return out

    def submit(self, d: Decision, info: Mapping[str, object]) -> list[ActionResult]:
        """Advisory: log only. Enforced: run the plan (in the background unless synchronous);
        returns the results when synchronous, else []."""
        plan = self.plan(d, info)
        if not self.s.enforce:
            if plan:
                log.info("advisory gpu=%s link=%s rung=%s would_run=%s", d.gpu, d.link,
                         d.rung.label, ",".join(k for k, _ in plan))
            return []
        if not plan and self.gate is None:
            return []
        if self._sync:
            return self._run_plan(d, plan, info)
        assert self._pool is not None
        self._pool.submit(self._run_plan, d, plan, info)
        return []

    def _run_plan(self, d: Decision, plan: list[tuple[str, tuple[str, ...]]],
                  info: Mapping[str, object]) -> list[ActionResult]:
        if self.gate is not None and not self.gate(d, info):
            return []  # deferred by the gate, which resubmits it
        if not plan:
            return []
        comp = (d.gpu, d.link)
        rung_kind = RUNG_ACTIONS.get(d.rung)
        results: list[ActionResult] = []
        with self._lock:
            if comp in self._busy:
                results.append(self._skip(d, plan[0], "busy"))
                self._emit(results[-1])
                return results
            self._busy.add(comp)
        try:
            for kind, argv in plan:
                why = self._rate_limited(comp, kind)
                if why:
                    res = self._skip(d, (kind, argv), why)
                else:
                    out = self.runner(argv, self.s.timeout_seconds, self.s.output_tail_bytes)
                    res = ActionResult(self._wall(), d.gpu, d.link, kind, argv, out.result,
                                       out.exit_code, out.seconds, out.output_tail,
                                       d.rung if kind == rung_kind else None)
                    log.info("action gpu=%s link=%s kind=%s result=%s exit_code=%s seconds=%.1f",
                             d.gpu, d.link, kind, res.result, res.exit_code, out.seconds)
                results.append(res)
                if res.result in ("failed", "timeout", "error"):
                    break
        finally:
            with self._lock:
                self._busy.discard(comp)
        # after the component is free: a failed remedy's escalation must be able to act on it
        for res in results:
            self._emit(res)
        return results

    def _rate_limited(self, comp: tuple[int, int | None], kind: str) -> str | None:
        now = self._clock()
        with self._lock:
            while self._hour and self._hour[0] <= now - 3600:
                self._hour.popleft()
            last = self._last.get((comp, kind))
            if last is not None and now - last < self.s.min_interval_seconds:
                return "rate_limited"
            if len(self._hour) >= self.s.max_actions_per_hour:
                return "rate_limited"
            self._last[(comp, kind)] = now
            self._hour.append(now)
        return None

    def _skip(self, d: Decision, step: tuple[str, tuple[str, ...]], why: str) -> ActionResult:
        log.warning("action_skipped gpu=%s link=%s kind=%s why=%s", d.gpu, d.link, step[0], why)
        return ActionResult(self._wall(), d.gpu, d.link, step[0], step[1], why, None, None, "",
                            None)

    def _emit(self, res: ActionResult) -> None:
        if self.on_result is not None:
            try:
                self.on_result(res)
            except Exception:  # noqa: BLE001 - a broken sink must not kill the action thread
                log.exception("action_result_sink_failed kind=%s", res.kind)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
