"""The scheduler integration as a daemon service: the gate in front of the actuator, the
disruption budget and circuit breaker, bringing the node back once the cure held.

Flow: the actuator asks ``gate(decision, info)`` on its action thread before running an
enforced plan. A decision that takes capacity away is checked against the breaker and the
budget (read from the scheduler, the fleet's shared state) and, when allowed, the node is taken
out with a reason; otherwise the decision is deferred (stored, exported) and resubmitted from
``tick`` until it passes or is no longer open. ``tick`` also brings the node back once no open
decision needs it out and none came for ``resume_hold_seconds`` -- only a node rasd took out,
and only while the scheduler still shows rasd's reason.

Times: what is stored and shown (out since, clear since, deferred since, the breaker) is wall
time; the intervals (retry, the look at the scheduler, the hold) run on the monotonic clock, so a
step of the wall clock neither stalls nor hurries them. The hold counts only what this process
saw: a restart starts it again, from the first pass with every GPU polled and no open decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rasd.control import root_only
from rasd.ladder.decision import Decision
from rasd.model import GpuState, Health, Rung
from rasd.scheduler.attribution import JobWatch
from rasd.scheduler.cluster import Cluster, NodeOut, NodeView, SchedulerError
from rasd.scheduler.ledger import Ledger, decision_key
from rasd.scheduler.policy import needs_node_out, reason_for
from rasd.scheduler.settings import SchedulerSettings, parse_budget
from rasd.scheduler.state import SchedulerState

log = logging.getLogger("rasd.scheduler")
# Decisions the gate let through, kept (the newest) so a restart does not take the node out for
# them again: far more than a node has open at once (open decisions are per GPU and link).
GATED_KEPT = 512

Submit = Callable[[Decision, Mapping[str, Any]], object]


class SchedulerService:
    def __init__(self, settings: SchedulerSettings, enforce: bool, cluster: Cluster | None,
                 ledger: Ledger, *, node: str, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, synchronous: bool = False):
        """``wall``: seconds since the epoch, stored and shown. ``clock``: monotonic seconds,
        for the intervals. ``synchronous``: scheduler calls run on the caller's thread (tests);
        otherwise on one worker thread, so a slow slurmctld or API server never stalls the main
        loop."""
        self.s = settings
        self.enforce = enforce
        self.cluster = cluster
        self.ledger = ledger
        self.node = node
        self._wall = wall
        self._clock = clock
        self._lock = threading.RLock()
        self.submit: Submit | None = None  # the actuator's submit, bound by the daemon
        self.jobs: JobWatch | None = None  # which jobs each fault hit (when attribution is on)
        self._pool: ThreadPoolExecutor | None = None  # scheduler calls off the main loop
        self._sync = synchronous
        self._pending: Future[None] | None = None  # the pass in flight on the worker
        self.counts: Counter[str] = Counter()  # drains, resumes, deferrals, breaker_trips, errors
        self._errors_logged: set[str] = set()
        self._last_retry = float("-inf")  # monotonic seconds, as _last_sync
        self._last_sync = float("-inf")
        # when this process began to see the node clear (every GPU polled, no open decision that
        # needs it out); None: not clear, or not seen yet since the start
        self._clear_mono: float | None = None
        self._scope: tuple[int, int] | None = None  # (nodes, out for rasd) at the last look
        self._ledger_version: tuple[int, int] | None = None  # as of _ledger_read
        self._ledger_read: tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]] = ({}, {}, ())
        self._advised: set[str] = set()
        if synchronous:
            self._reconcile()
        elif cluster is not None:
            self._pending = self._worker().submit(self._guarded, self._reconcile)

    # ------------------------------------------------------------------ ledger

    @property
    def _node(self) -> dict[str, Any]:
        return self.ledger.get("node") or {"out": False}

    @property
    def breaker(self) -> dict[str, Any]:
        return self.ledger.get("breaker") or {"tripped": False}

    def _reconcile(self) -> None:
        """The store and the scheduler must agree on a node rasd took out; where they do not,
        the scheduler wins (a person resumed it, or relabelled the drain as their own)."""
        if self.cluster is None:
            return
        try:
            view = self.cluster.node()
        except SchedulerError as e:
            self._error("node", e)
            return
        self._last_sync = self._clock()
        self._reconcile_with(view)

    def _reconcile_with(self, view: NodeView) -> None:
        mine = self._node
        if mine.get("out") and not view.out:
            log.warning("event=scheduler_node_back_by_other node=%s reason=%r detail=%r",
                        self.node, mine.get("reason"), "someone else returned the node")
            self.ledger.put("node", None)
        elif mine.get("out") and not view.by_rasd:
            log.warning("event=scheduler_node_taken_over node=%s reason=%r detail=%r",
                        self.node, view.reason, "the drain is no longer rasd's: never resumed")
            self.ledger.put("node", None)
        elif view.by_rasd and not mine.get("out"):
            # rasd's words but not in this store (a store moved aside): leave it to a person
            log.warning("event=scheduler_unknown_rasd_drain node=%s reason=%r detail=%r",
                        self.node, view.reason, "not in this store: not resumed by rasd")

    # ------------------------------------------------------------------ the gate

    def gate(self, d: Decision, info: Mapping[str, Any]) -> bool:
        """True: the actuator may run the decision's plan now. False: deferred, resubmitted."""
        if self.cluster is None or not needs_node_out(d, self.s) or not self.enforce:
            return True
        with self._lock:
            return self._gate(d, dict(info))

    def _gate(self, d: Decision, info: dict[str, Any]) -> bool:
        now = self._wall()
        body = d.to_dict()
        reason = reason_for(d)
        mine = self._node
        try:
            assert self.cluster is not None
            self._clear_mono = None  # a decision that needs the node out: the hold starts again
            # Asked afresh even where the store says rasd holds the node out: since the last
            # look a person may have resumed it (jobs run there again) or relabelled the drain
            # as theirs (their reason must stay, and rasd must never resume it).
            view = self.cluster.node()
            if mine.get("out") and view.out and view.by_rasd:
                if d.rung.value > int(mine.get("rung", 0)):  # say the worst reason
                    self.cluster.take_out(reason)
                    self.ledger.put("node", dict(mine, reason=reason, rung=d.rung.value,
                                                 clear_since=None))
                else:
                    self.ledger.put("node", dict(mine, clear_since=None))
                self._passed(body, now)
                return True
            if mine.get("out"):  # the store and the scheduler disagree: the scheduler wins
                self._reconcile_with(view)
            if view.out and not view.by_rasd:
                # out for someone else's reason: no capacity left to take, and the reason and
                # the return to service stay theirs
                log.info("event=scheduler_already_out node=%s reason=%r decision=%r",
                         self.node, view.reason, reason)
                # not kept as passed: rasd took nothing out, and once that person returns the
                # node with the decision still open, a restart must take it out for rasd
                self.ledger.undefer(decision_key(body))
                return True
            if self.breaker.get("tripped"):
                return self._defer(body, info, "breaker", now)
            scope = self.cluster.scope()
            others = scope.rasd_out(exclude=self.node)
            self._scope = (scope.nodes, len(others) + (1 if view.by_rasd else 0))
            recent = self._recent(others, now)
            if scope.nodes and (len(recent) + 1) / scope.nodes > self.s.breaker_share:
                self._trip(now, f"{len(recent) + 1} of {scope.nodes} nodes out for rasd's "
                           f"reasons within {self.s.breaker_window_seconds:g} s")
                return self._defer(body, info, "breaker", now)
            limit = parse_budget(self.s.max_nodes_out).limit(scope.nodes)
            if len(others) >= limit:
                return self._defer(body, info, "budget", now)
            self.cluster.take_out(reason)
        except SchedulerError as e:
            self._error("gate", e)
            return self._defer(body, info, "scheduler_error", now)
        self.counts["drains"] += 1
        self.ledger.put("node", {"out": True, "reason": reason, "rung": d.rung.value,
                                 "since": now, "clear_since": None})
        self._passed(body, now)
        self._report(body, reason, True)
        self._check_after(now)
        return True

    def _check_after(self, now: float) -> None:
        """Nodes that checked at the same moment all saw room: look again once out, so a
        fleet-wide fault trips the breaker here instead of draining the next node too."""
        try:
            scope = self.cluster.scope()  # type: ignore[union-attr]
        except SchedulerError as e:
            self._error("scope", e)
            return
        recent = self._recent(scope.rasd_out(), now)
        self._scope = (scope.nodes, len(scope.rasd_out()))
        if scope.nodes and len(recent) / scope.nodes > self.s.breaker_share:
            self._trip(now, f"{len(recent)} of {scope.nodes} nodes out for rasd's reasons "
                       f"within {self.s.breaker_window_seconds:g} s")

    def _recent(self, nodes: list[NodeOut], now: float) -> list[NodeOut]:
        """Nodes that went out within the breaker's window -- and after the last reset: the
        person who reset it has seen those."""
        since = now - self.s.breaker_window_seconds
        reset = self.breaker.get("reset")
        if reset is not None:
            since = max(since, float(reset))
        return [n for n in nodes if n.since_wall is not None and n.since_wall >= since]

    def _passed(self, body: dict[str, Any], now: float) -> None:
        """The gate let this decision through with the node out for rasd: no longer deferred,
        and kept as passed (the last GATED_KEPT, until rasd brings the node back), so a restart
        does not take the node out for it again (``gated``)."""
        key = decision_key(body)
        self.ledger.undefer(key)
        passed = dict(self.ledger.get("gated") or {})
        passed.pop(key, None)
        passed[key] = now
        for old in sorted(passed, key=passed.__getitem__)[: max(0, len(passed) - GATED_KEPT)]:
            del passed[old]
        self.ledger.put("gated", passed)

    def gated(self, d: Decision) -> bool:
        """Whether the gate let ``d`` through before, in this run or an earlier one."""
        with self._lock:
            return decision_key(d.to_dict()) in (self.ledger.get("gated") or {})

    def _defer(self, body: dict[str, Any], info: dict[str, Any], why: str, now: float) -> bool:
        entry = self.ledger.defer(body, info, why, now)
        self.counts[f"deferrals:{why}"] += 1
        if entry.tries == 1:
            log.warning("event=scheduler_deferred node=%s why=%s reason=%r", self.node, why,
                        reason_for(Decision.from_dict(body)))
        return False

    def _trip(self, now: float, why: str) -> None:
        if self.breaker.get("tripped"):
            return
        self.ledger.put("breaker", {"tripped": True, "since": now, "why": why})
        self.counts["breaker_trips"] += 1
        log.error("event=scheduler_breaker_tripped node=%s why=%r fix=%r", self.node, why,
                  "find the common cause, then run: rasd scheduler reset-breaker")

    def reset_breaker(self, who: str = "") -> dict[str, Any]:
        with self._lock:
            was = self.breaker
            self.ledger.put("breaker", {"tripped": False, "reset": self._wall(), "by": who,
                                        "was": was.get("why", "")})
            self._last_retry = float("-inf")  # deferred decisions get their chance next tick
        log.warning("event=scheduler_breaker_reset node=%s by=%r was_tripped=%s", self.node, who,
                    bool(was.get("tripped")))
        return {"was_tripped": bool(was.get("tripped")), "why": was.get("why", "")}

    def _report(self, body: dict[str, Any], reason: str, out: bool) -> None:
        try:
            self.cluster.report(body, reason, out)  # type: ignore[union-attr]
        except SchedulerError as e:
            self._error("report", e)

    def _error(self, where: str, e: Exception) -> None:
        self.counts["errors"] += 1
        key = f"{where}:{e}"
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            log.warning("event=scheduler_error node=%s during=%s error=%r (logged once, then "
                        "counted)", self.node, where, str(e))

    # ------------------------------------------------------------------ the loop

    def tick(self, now: float, open_decisions: Iterable[Decision], *, watched: bool = True) -> None:
        """From the main loop: retry deferred decisions, bring the node back once the cure held.

        ``now``: wall seconds. ``watched``: every GPU's health was polled by this process and
        is current; a pass without it does not count towards the hold (and restarts it)."""
        if self.jobs is not None:
            self.jobs.tick(now)
        if self.cluster is None:
            return
        decisions = list(open_decisions)
        mono = self._clock()  # read here: a pass that waited on the worker still says when
        if self._sync:
            self._tick_body(now, mono, decisions, watched)
        elif self._pending is None or self._pending.done():  # else the scheduler is slow: skip
            self._pending = self._worker().submit(self._guarded, self._tick_body, now, mono,
                                                  decisions, watched)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - the worker must survive one bad pass
            self.counts["errors"] += 1
            log.exception("event=scheduler_pass_failed")

    def _tick_body(self, now: float, mono: float, decisions: list[Decision],
                   watched: bool) -> None:
        need = [d for d in decisions if needs_node_out(d, self.s)]
        with self._lock:
            heartbeat = mono - self._last_sync >= self.s.retry_seconds
            self._publish(decisions, heartbeat)
            if heartbeat:
                self._reconcile()
            self._maybe_bring_back(now, mono, need, watched)
            if mono - self._last_retry >= self.s.retry_seconds:
                self._last_retry = mono
                self._retry(decisions)

    def _publish(self, decisions: list[Decision], heartbeat: bool) -> None:
        """Node conditions (Kubernetes): GPU health with the rung and reason, SDC suspicion.
        They inform and steer nothing, so they are published in advisory mode too."""
        publish = getattr(self.cluster, "set_conditions", None)
        if publish is None:
            return
        top = max(decisions, key=lambda d: (d.rung, d.time_wall), default=None)
        if top is None or top.rung is Rung.NONE:
            health = ("True", "Healthy", "rasd: no open decision on this node's GPUs")
        else:
            health = ("False", "".join(w.capitalize() for w in top.rung.label.split("_")),
                      reason_for(top))
        sdc = sorted({d.gpu for d in decisions if d.fault == "sdc" and d.rung < Rung.RMA})
        suspect = (("True", "Suspected", f"rasd: silent data corruption suspected on GPU "
                    f"{', '.join(map(str, sdc))}; deep checks pending") if sdc else
                   ("False", "NotSuspected", "rasd: no GPU suspected of silent data corruption"))
        try:
            publish({"RasdGpuHealthy": health, "RasdSdcSuspect": suspect}, force=heartbeat)
        except SchedulerError as e:
            self._error("conditions", e)

    def _maybe_bring_back(self, now: float, mono: float, need: list[Decision],
                          watched: bool) -> None:
        mine = self._node
        if not mine.get("out"):
            self._clear_mono = None
            return
        if need or not watched:
            self._clear_mono = None
            if mine.get("clear_since") is not None:
                self.ledger.put("node", dict(mine, clear_since=None))
            return
        if self._clear_mono is None:
            # the hold starts with what this process saw: a stored clear_since is from before a
            # restart, and the time rasd was down (a reboot's POST) proves nothing about the cure
            self._clear_mono = mono
            self.ledger.put("node", dict(mine, clear_since=now))
            return
        if mono - self._clear_mono < self.s.resume_hold_seconds or not self.enforce:
            return
        assert self.cluster is not None
        try:
            view = self.cluster.node()
            if view.by_rasd:
                self.cluster.bring_back()
                self.counts["resumes"] += 1
                self._report({"gpu": None, "rung": "none"}, "", False)
                # nothing rasd holds the node out for is open now: what passed before is over
                self.ledger.put("gated", None)
            else:
                log.warning("event=scheduler_not_resumed node=%s reason=%r detail=%r", self.node,
                            view.reason, "the drain is no longer rasd's")
        except SchedulerError as e:
            self._error("resume", e)
            return
        self._clear_mono = None
        self.ledger.put("node", None)

    def _retry(self, open_decisions: list[Decision]) -> None:
        open_keys = {decision_key(d.to_dict()): d for d in open_decisions}
        for entry in self.ledger.deferred():
            d = open_keys.get(entry.key)
            if d is None:  # closed or superseded meanwhile: the new decision has its own turn
                self.ledger.undefer(entry.key)
                continue
            if self.submit is not None:
                self.submit(d, entry.info)

    # ------------------------------------------------------------------ reading

    def state(self) -> SchedulerState:
        with self._lock:
            # three queries and their JSON every tick, for a ledger that changes only when the
            # node is taken out, a decision deferred or the breaker moved: read when it changed
            version = self.ledger.version()
            if version != self._ledger_version:
                self._ledger_read = (self._node, self.breaker, tuple(
                    (e.why, e.first_wall, e.tries, e.decision) for e in self.ledger.deferred()))
                self._ledger_version = version
            mine, br, deferred = self._ledger_read
        limit = None
        if self._scope is not None:
            limit = parse_budget(self.s.max_nodes_out).limit(self._scope[0])
        return SchedulerState(
            kind=self.s.kind, node=self.node, enforced=self.enforce,
            out_by_rasd=bool(mine.get("out")), reason=str(mine.get("reason", "")),
            out_since_wall=mine.get("since"), breaker_tripped=bool(br.get("tripped")),
            breaker_since_wall=br.get("since"), breaker_why=str(br.get("why", "")),
            deferred=deferred,
            scope_nodes=self._scope[0] if self._scope else None,
            scope_out=self._scope[1] if self._scope else None, budget_limit=limit,
            counts=dict(self.counts),
            jobs=self.jobs.current() if self.jobs is not None else {},
            jobs_metric=self.s.jobs_info_metric)

    def on_decisions(self, decisions: list[Decision]) -> None:
        """New decisions of the ladder: remember which jobs their GPUs had; in advisory mode
        say what taking the node out would have been (the gate runs only when enforced)."""
        if self.jobs is not None:
            self.jobs.on_decisions(decisions)
        announce = getattr(self.cluster, "decision_event", None)
        if announce is not None and decisions:  # Events inform only: advisory runs post them too
            if self._sync:
                self._announce(announce, list(decisions))
            else:
                self._worker().submit(self._guarded, self._announce, announce, list(decisions))
        if self.cluster is None or self.enforce:
            return
        for d in decisions:
            key = decision_key(d.to_dict())
            if needs_node_out(d, self.s) and key not in self._advised:
                if len(self._advised) >= 4096:  # bounded: at worst a decision is said twice
                    self._advised.clear()
                self._advised.add(key)
                log.info("event=scheduler_advisory node=%s would=take_out reason=%r",
                         self.node, reason_for(d))

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        def _state(_: dict[str, Any]) -> dict[str, Any]:
            return self.state().to_dict()

        def _reset(req: dict[str, Any]) -> dict[str, Any]:
            return self.reset_breaker(str(req.get("by", "")))

        def _jobs(req: dict[str, Any]) -> dict[str, Any]:
            return {"jobs": self.ledger.jobs(req.get("gpu"), int(req.get("limit", 100)))}

        return {"scheduler.state": _state, "scheduler.reset_breaker": root_only(_reset),
                "scheduler.jobs": _jobs}

    def _worker(self) -> ThreadPoolExecutor:
        """One thread for scheduler calls (passes, Events), started on first use."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, "rasd-scheduler")
        return self._pool

    def _announce(self, announce: Callable[[dict[str, Any], str], None],
                  decisions: list[Decision]) -> None:
        for d in decisions:
            if d.rung is Rung.NONE:
                continue
            try:
                announce(d.to_dict(), reason_for(d))
            except SchedulerError as e:
                self._error("event", e)

    def reconfigure(self, settings: SchedulerSettings) -> None:
        """SIGHUP: the budget, breaker, retry and hold times, cordon, Events and the jobs metric
        apply at once; a different kind or node name needs a restart (said in the log)."""
        if (settings.kind, settings.node_name) != (self.s.kind, self.s.node_name):
            log.warning("event=reload_partial detail=%r",
                        "[scheduler] kind and node_name change on restart")
            settings = replace(settings, kind=self.s.kind, node_name=self.s.node_name)
        with self._lock:
            self.s = settings
            if self.cluster is not None and hasattr(self.cluster, "s"):
                self.cluster.s = settings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.jobs is not None:
            self.jobs.close()
        self.ledger.close()


def health_watched(gpus: Iterable[GpuState]) -> bool:
    """True when this process has polled every GPU and each answered its last poll in time
    (Health.UP): only then does a node without open decisions count as clear for the hold.
    Before the first poll after a start, with a poll hung past its deadline (STALE) or a GPU
    lost, rasd does not know the node is clear."""
    states = list(gpus)
    return bool(states) and all(g.health is Health.UP and g.last_update_wall is not None
                                for g in states)


def open_decisions(ladder: Any) -> list[Decision]:
    """Every open decision of a LadderState (GPUs and links)."""
    if ladder is None:
        return []
    comps = [*ladder.gpus.values(), *ladder.links.values()]
    return [d for c in comps for d in c.open]
