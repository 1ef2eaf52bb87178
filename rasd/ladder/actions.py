"""The actuator: turns decisions into configured commands, or only logs them (advisory).

Enforced mode runs argument lists without a shell, with a timeout, and records every run (exit
code, output tail). Never two runs at once on one component; each (component, kind) at most once
per ``min_interval_seconds``; at most ``max_actions_per_hour`` on the node. Degradations run
first (drain before a reset), then the rung's own command; the first failure stops the sequence,
and a failed rung command is reported back so the ladder climbs (a reboot or RMA request that
failed changes nothing: it did not happen).

Busy and rate limits are asked before the gate (which may take the node out of the scheduler):
a plan that cannot run now leaves the node as it is, and waits. A waiting plan is skipped once
(logged and recorded once, then counted) and tried again from ``retry_waiting`` once it can run
(the component free, the limit's window passed) while its decision is still open: a node taken
out for a decision is never left out with nothing done for it.

The limits outlive a restart: the service hands ``remember_runs`` the runs the store holds, so a
plan submitted again after a restart (its decision open, its plan never run) waits as it would
have. One decision's plan runs once: a decision submitted again while its plan is queued or
running, or after it ran (ok or failed), is not run again. A plan with no command (none is
configured for its kinds) is its gate alone: the node taken out, the operator acts; once the gate
let it through it is done, and one that waited for commands a reload took away waits no more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.runner import Runner, subprocess_runner
from rasd.ladder.settings import ActionSettings
from rasd.model import Rung

log = logging.getLogger("rasd.ladder.actions")

RUNG_ACTIONS = {Rung.RESTART_PROCESS: "restart_process", Rung.RESET_GPU: "reset_gpu",
                Rung.REBOOT_NODE: "reboot_node", Rung.RMA: "rma"}
DEGRADATION_ORDER = ("drain", "stop_p2p", "disable_link", "exclude_gpu")
RAN = frozenset(("ok", "failed", "timeout", "error"))  # results of a command that was run
_DONE_KEPT = 4096  # plans remembered as run (decisions are rare; oldest forgotten first)


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


@dataclass(slots=True)
class _Waiting:
    """A plan skipped (busy, rate limited), to be tried again while its decision is open."""

    decision: Decision
    info: Mapping[str, object]
    why: str
    due: float  # actuator clock (monotonic seconds): when it can run
    since: float  # actuator clock: when it was first skipped
    skips: int = 1


def _decision_key(d: Decision) -> tuple[float, int, int | None, str, int]:
    return (d.time_wall, d.gpu, d.link, d.fault, d.rung.value)


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
        self._waiting: dict[tuple[float, int, int | None, str, int], _Waiting] = {}
        self.counts: Counter[str] = Counter()  # skipped:busy, skipped:rate_limited, retried
        self._pool = None if synchronous else ThreadPoolExecutor(4, "rasd-action")
        self._queued: dict[Future[list[ActionResult]], Decision] = {}  # submitted, not ended
        self._done: dict[tuple[float, int, int | None, str, int], None] = {}  # plans that ran
        self._running: set[tuple[float, int, int | None, str, int]] = set()
        self._closing = False
        # Asked on the action thread before an enforced plan runs; False defers the decision
        # (its owner resubmits it). The scheduler integration takes the node out here.
        self.gate: Callable[[Decision, Mapping[str, object]], bool] | None = None
        # Whether the gate let this decision through before, in this run or an earlier one
        # (the scheduler keeps it): a plan with no command stores no run, and after a restart
        # this is what tells it was done (None: not known, it is gated again).
        self.gated: Callable[[Decision], bool] | None = None

    @property
    def enforced(self) -> bool:
        return self.s.enforce

    def kinds(self, d: Decision) -> list[str]:
        """The action kinds the decision's plan runs, in order (those with a command)."""
        kinds = [k for k in DEGRADATION_ORDER if k in d.degradations]
        if d.rung in RUNG_ACTIONS:
            kinds.append(RUNG_ACTIONS[d.rung])
        return [k for k in kinds if self.s.commands.get(k)]

    def plan(self, d: Decision, info: Mapping[str, object]) -> list[tuple[str, tuple[str, ...]]]:
        """(kind, argv) in order: configured degradations, then the rung's command."""
        kinds = self.kinds(d)
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
        with self._lock:
            if self._closing:  # a deferred decision resubmitted while the daemon stops
                self._cancelled(d, "closing")
                return []
            fut = self._pool.submit(self._run_plan, d, plan, info)
            self._queued[fut] = d
        fut.add_done_callback(self._forget)
        return []

    def _forget(self, fut: Future[list[ActionResult]]) -> None:
        with self._lock:
            self._queued.pop(fut, None)

    def _cancelled(self, d: Decision, why: str) -> None:
        log.warning("action_cancelled gpu=%s link=%s rung=%s why=%s detail=%r", d.gpu, d.link,
                    d.rung.label, why, "not run; the decision stays open")

    def _run_plan(self, d: Decision, plan: list[tuple[str, tuple[str, ...]]],
                  info: Mapping[str, object]) -> list[ActionResult]:
        if not plan:
            return self._gate_only(d, info)
        comp = (d.gpu, d.link)
        key = _decision_key(d)
        # busy and the rate limits before the gate: a plan that cannot run must not take the
        # node out first (it would stay out with nothing done); the component is held from
        # here, so no other plan runs on it while the gate asks the scheduler
        with self._lock:
            # once per decision: the same one may come twice (a restart plans it again while
            # the scheduler retries it as deferred), and one that stays open after its plan ran
            # (a failed reboot, an RMA) must not run it again
            if key in self._done or key in self._running:
                self._waiting.pop(key, None)
                log.debug("action_not_repeated gpu=%s link=%s rung=%s", d.gpu, d.link,
                          d.rung.label)
                return []
            if comp in self._busy:
                why: str | None = "busy"
                due = self._clock()
            else:
                why, due = self._limit_ahead(comp, [k for k, _ in plan])
            if why is None:
                self._busy.add(comp)
                self._running.add(key)
                self._waiting.pop(key, None)
        if why is not None:
            return self._hold(d, plan[0], info, why, due)
        rung_kind = RUNG_ACTIONS.get(d.rung)
        results: list[ActionResult] = []
        try:
            if self.gate is not None and not self.gate(d, info):
                return []  # deferred by the gate, which resubmits it
            for kind, argv in plan:
                limited = self._rate_limited(comp, kind)
                if limited:  # (another plan took the slot since the look above)
                    with self._lock:
                        _, due = self._limit_ahead(comp, [kind])
                    results.extend(self._hold(d, (kind, argv), info, limited, due))
                    break
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
                self._running.discard(key)
                if results and results[-1].result in RAN:  # ran through, or stopped by a failure
                    self._remember_done(key)
        # after the component is free: a failed remedy's escalation must be able to act on it
        for res in results:
            if res.result not in ("busy", "rate_limited"):  # (a skip is emitted by _hold)
                self._emit(res)
        return results

    def _gate_only(self, d: Decision, info: Mapping[str, object]) -> list[ActionResult]:
        """A plan with no command of its own (none configured for its kinds): the gate's drain
        is all of it, and the operator acts. Once per decision, as a plan with commands: once
        the gate let it through, the same decision submitted again (a restart, a retry) is not
        gated again; a deferral is the gate's to resubmit. A plan that waited for commands a
        reload took away waits no more: it leaves the waiting set here, said once."""
        key = _decision_key(d)
        with self._lock:
            w = self._waiting.pop(key, None)
            if key in self._done or key in self._running:
                return []
            self._running.add(key)
        if w is not None:
            log.info("action_no_longer_waiting gpu=%s link=%s rung=%s why=%s skips=%d "
                     "detail=%r", d.gpu, d.link, d.rung.label, w.why, w.skips,
                     "no command left to run (reloaded): the gate's drain alone, the operator "
                     "acts")
        passed = False
        try:
            passed = self.gate is None or self.gate(d, info)
        finally:
            with self._lock:
                self._running.discard(key)
                if passed:
                    self._remember_done(key)
        return []

    def _remember_done(self, key: tuple[float, int, int | None, str, int]) -> None:
        """Under the lock: the decision's plan ran (through, stopped by a failure, or a plan
        of no command that the gate let through); it is not run again."""
        self._done[key] = None
        if len(self._done) > _DONE_KEPT:
            del self._done[next(iter(self._done))]

    def _limit_ahead(self, comp: tuple[int, int | None], kinds: Sequence[str],
                     now: float | None = None) -> tuple[str | None, float]:
        """Whether a plan of these kinds would be rate limited now, and when it no longer would
        be (actuator clock); asks only, records nothing. Called under the lock."""
        now = self._clock() if now is None else now
        due = now
        for kind in kinds:
            last = self._last.get((comp, kind))
            if last is not None and now - last < self.s.min_interval_seconds:
                due = max(due, last + self.s.min_interval_seconds)
        cap = self.s.max_actions_per_hour
        # the plan's commands count one each against the node's hour (a plan longer than the
        # cap waits for an empty hour, and runs as far as the cap lets it, as before)
        need = min(len(kinds), cap)
        recent = [t for t in self._hour if t > now - 3600]
        if cap <= 0:
            due = float("inf")  # never: held, and said so
        elif len(recent) + need > cap:
            due = max(due, recent[len(recent) + need - cap - 1] + 3600)
        return ("rate_limited", due) if due > now else (None, now)

    def _hold(self, d: Decision, step: tuple[str, tuple[str, ...]], info: Mapping[str, object],
              why: str, due: float) -> list[ActionResult]:
        """Keep a skipped plan for ``retry_waiting``; said and recorded on its first skip only."""
        key = _decision_key(d)
        with self._lock:
            w = self._waiting.get(key)
            first = w is None
            if w is None:
                self._waiting[key] = _Waiting(d, info, why, due, self._clock())
                self.counts[f"skipped:{why}"] += 1  # plans, not skips: a waiting plan counts once
            else:
                w.why, w.due, w.skips = why, due, w.skips + 1
        res = self._skip(d, step, why, due, log_it=first)
        if first:
            self._emit(res)
        return [res]

    def retry_waiting(self, open_decisions: Iterable[Decision]) -> int:
        """Try again the skipped plans that can run now and whose decisions are still open
        (from the ladder's every pass); forget those whose decisions closed. Returns how many."""
        if not self._waiting:
            return 0
        still = {_decision_key(d) for d in open_decisions}
        now = self._clock()
        ready: list[_Waiting] = []
        with self._lock:
            for key, w in list(self._waiting.items()):
                if key not in still:
                    del self._waiting[key]
                    log.info("action_dropped gpu=%s link=%s rung=%s why=%s skips=%d detail=%r",
                             w.decision.gpu, w.decision.link, w.decision.rung.label, w.why,
                             w.skips, "its decision closed before the plan could run")
                elif not self.kinds(w.decision) or (
                        w.due <= now and (w.decision.gpu, w.decision.link) not in self._busy):
                    # (no command left to wait for, a reload took them: it waits no more)
                    w.due = float("inf")  # in flight: not submitted twice before it starts
                    self.counts["retried"] += 1
                    ready.append(w)
        if not self.s.enforce:
            with self._lock:
                self._waiting.clear()
            return 0
        for w in ready:
            self.submit(w.decision, w.info)
        return len(ready)

    def remember_runs(self, runs: Iterable[tuple[float, int, int | None, str]]) -> int:
        """Count commands run before a restart against the rate limits: (wall time of the run,
        gpu, link, kind) each, as the store holds them. Wall times are placed on the actuator's
        clock by their age; one in the future (the wall clock stepped back) counts as now.
        Returns how many fell within the limits' reach."""
        now, wall = self._clock(), self._wall()
        reach = max(3600.0, self.s.min_interval_seconds)
        kept = 0
        with self._lock:
            for t_wall, gpu, link, kind in sorted(runs):
                age = max(0.0, wall - t_wall)
                if age >= reach:
                    continue
                t = now - age
                comp = (gpu, link)
                if t > self._last.get((comp, kind), float("-inf")):
                    self._last[(comp, kind)] = t
                if age < 3600.0:
                    self._hour.append(t)
                kept += 1
            self._hour = deque(sorted(self._hour))
        return kept

    @property
    def held(self) -> int:
        """How many skipped plans wait to be tried again (asked without the lock)."""
        return len(self._waiting)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting skipped plan has waited (0 when none waits)."""
        with self._lock:
            since = min((w.since for w in self._waiting.values()), default=None)
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def waiting(self) -> list[tuple[Decision, str]]:
        """The skipped plans waiting to be tried again, with why."""
        with self._lock:
            return [(w.decision, w.why) for w in self._waiting.values()]

    def _rate_limited(self, comp: tuple[int, int | None], kind: str) -> str | None:
        """``_limit_ahead`` for one command about to run; where it may, the run is recorded."""
        now = self._clock()
        with self._lock:
            while self._hour and self._hour[0] <= now - 3600:
                self._hour.popleft()
            why, _ = self._limit_ahead(comp, [kind], now)
            if why is None:
                self._last[(comp, kind)] = now
                self._hour.append(now)
        return why

    def _skip(self, d: Decision, step: tuple[str, tuple[str, ...]], why: str, due: float,
              log_it: bool = True) -> ActionResult:
        if log_it:
            wait = due - self._clock()
            log.warning("action_skipped gpu=%s link=%s kind=%s why=%s retry_in_seconds=%s "
                        "detail=%r", d.gpu, d.link, step[0], why,
                        "never" if wait == float("inf") else f"{max(wait, 0.0):.0f}",
                        "tried again while the decision is open (logged once, then counted)")
        return ActionResult(self._wall(), d.gpu, d.link, step[0], step[1], why, None, None, "",
                            None)

    def _emit(self, res: ActionResult) -> None:
        if self.on_result is not None:
            try:
                self.on_result(res)
            except Exception:  # noqa: BLE001 - a broken sink must not kill the action thread
                log.exception("action_result_sink_failed kind=%s", res.kind)

    def close(self) -> None:
        """Wait for the plans already running; plans still queued are cancelled, each logged: a
        stopping daemon starts no remedy, nor takes the node out for one."""
        if self._pool is None:
            return
        with self._lock:
            self._closing = True
            queued = list(self._queued.items())
        for fut, d in queued:
            if fut.cancel():
                self._cancelled(d, "shutdown")
        self._pool.shutdown(wait=True)
