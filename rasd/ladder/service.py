"""The ladder as a daemon service: ingest fault events, persist, decide, act, expose state.

History is event-sourced: every fault event (remedies included) is stored with the step it caused
(decisions opened and ended) in one transaction, so after a restart the escalator is rebuilt by
replaying the stored events of the escalation horizon (or since the oldest still-open decision),
without re-storing or re-acting. An open decision whose plan never ran (it waited, was cancelled
at shutdown, or rasd died first) is planned again on the first pass after the restart, through
the same actuator path as a new one. The actuator never calls back into the ladder: its results
wait in a queue that ``tick`` (and every ``ingest``) drains.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from rasd.control import root_only
from rasd.ladder import closing
from rasd.ladder.actions import RAN, RUNG_ACTIONS, ActionResult, Actuator
from rasd.ladder.classify import LOST_FAULT
from rasd.ladder.decision import Decision
from rasd.ladder.escalate import OPERATOR_CLOSE, Closure, Escalator
from rasd.ladder.findings import BadEvent
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.ladder.xidtext import architecture
from rasd.ladder.state import LadderState, build_state
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import ActionRecord, DecisionEnd, Store
from rasd.telemetry.kmsg import LoggedXid, backlog

log = logging.getLogger("rasd.ladder")

CATCH_UP_SLACK_SECONDS = 2.0
UNREAD_UUID = "unknown-"  # the NVML adapter's identity where the UUID could not be read

GpuInfo = Callable[[int], "Mapping[str, Any] | None"]


class LadderService:
    def __init__(
        self,
        settings: LadderSettings,
        actions: ActionSettings,
        store: Store,
        hostname: str,
        gpu_info: GpuInfo | None = None,
        actuator: Actuator | None = None,
        *,
        now_wall: float | None = None,
        booted_wall: float | None = None,
    ):
        """``booted_wall``: when the node last booted (Unix s; default the kernel's boot time):
        an open reboot decision older than the boot is not planned again, the node rebooted
        since (a reboot that ended rasd before its result was stored must not loop)."""
        self.settings = settings
        self.store = store
        self.hostname = hostname
        self._gpu_info = gpu_info
        self._lock = threading.RLock()
        self._esc = Escalator(settings)
        self._faults: Counter[tuple[int, str, str]] = Counter()
        self._actions: Counter[tuple[int, str, str]] = Counter()
        self._decisions_total = 0
        self.bad_events = 0
        self._bad_logged: set[str] = set()
        self._not_done_logged: set[tuple[str, str]] = set()
        self._results: queue.SimpleQueue[ActionResult] = queue.SimpleQueue()
        self.lost_now: frozenset[int] = frozenset()  # GPUs the daemon's last tick found lost
        self._actuator = actuator or Actuator(actions)
        if self._actuator.on_result is None:
            self._actuator.on_result = self._on_action
        self._booted_wall = booted_wall  # (read when a reboot decision asks)
        # replaced boards (closing.close_replaced): the GPUs whose board was compared with their
        # open decisions' since the start or their last loss, and whether one is still to be
        # compared
        self._boards_seen: set[int] = set()
        self._boards_due = gpu_info is not None
        self._unplanned: list[Decision] = []  # open at the restart, plan never run: on 1st pass
        self._held_lost: list[tuple[int, int | None]] = []  # see _restore
        self.restored_events = self._restore(time.time() if now_wall is None else now_wall)

    # ------------------------------------------------------------------ restart

    def _restore(self, now_wall: float) -> int:
        """Rebuild the ladder after a restart. The stored events of the escalation horizon (or
        since the oldest still-open decision) are replayed for the history the next decisions
        weigh; the open decisions are then those the store holds open, at their stored rung:
        a replay that reaches back less far than the events that decided them (the five Xids
        of an RMA) must not lower or end them. Nothing of the replay itself is written; only
        what expired while rasd was down is news to the store."""
        since = now_wall - self.settings.horizon_seconds
        oldest = self.store.oldest_open_decision()
        if oldest is not None:
            since = min(since, oldest)
        n = 0
        with self._lock:
            for row in self.store.faults(since=since):
                try:
                    self._esc.feed(row.event)  # its step was stored when it arrived
                except BadEvent:
                    continue  # it was counted when it first arrived
                n += 1
            for replayed, stored in self._esc.restore(self._stored_open(now_wall)):
                d = stored or replayed
                if d is not None:  # (a difference has at least one side)
                    log.info("ladder_restore_kept_stored gpu=%s link=%s fault=%s stored=%s "
                             "replayed=%s", d.gpu, d.link, d.fault,
                             stored.rung.label if stored else "none",
                             replayed.rung.label if replayed else "none")
            # a lost GPU's decision is kept open by the ticks that find it still lost, which are
            # not stored: it waits for the first tick that says whether it still is
            self._held_lost = [(d.gpu, None) for d in self._esc.open_decisions()
                               if d.fault == LOST_FAULT and d.link is None]
            for comp in self._held_lost:
                self._esc.hold(comp, LOST_FAULT)
            self._advance(now_wall)
            open_now = self._esc.open_decisions()
            self._unplanned = self._not_run(open_now, now_wall)
        log.info("ladder_restored events=%d since=%.0f open=%d not_run=%d", n, since,
                 len(open_now), len(self._unplanned))
        return n

    def _not_run(self, decisions: Sequence[Decision], now: float) -> list[Decision]:
        """The open decisions whose plan did not run since they were decided: no run (ok or
        failed) of the plan's last command, nor a failed one of any of its commands, on the
        decision's component (a reboot's on any GPU) at or after its time. Skips (busy, rate
        limited) are not runs. The rate limits are fed the stored runs, so a plan planned
        again waits as it would have."""
        oldest = min((d.time_wall for d in decisions), default=None)
        reach = max(3600.0, self._actuator.s.min_interval_seconds)
        since = now - reach if oldest is None else min(oldest, now - reach)
        runs = [a for a in self.store.actions(since=since) if a.result in RAN]
        self._actuator.remember_runs((a.time_wall, a.gpu, a.link, a.kind) for a in runs)
        out = []
        for d in decisions:
            kinds = self._actuator.kinds(d)
            if not kinds:
                continue  # nothing of its own to run (the scheduler retries its deferrals)
            if any(_ran_for(a, d, kinds) for a in runs):
                continue
            if d.rung is Rung.REBOOT_NODE:
                if self._booted_wall is None:
                    self._booted_wall = _boot_time()
                booted = self._booted_wall
                if booted is None or booted > d.time_wall:
                    # the node rebooted since (or it cannot be told): a reboot that ended rasd
                    # before its result was stored must not run again at every start
                    log.warning("event=ladder_not_resubmitted gpu=%s link=%s rung=%s fault=%s "
                                "decided=%.0f why=%s detail=%r", d.gpu, d.link, d.rung.label,
                                d.fault, d.time_wall,
                                "boot_time_unknown" if booted is None else "booted_since",
                                "the decision stays open for the operator")
                    continue
            out.append(d)
        return out

    def _stored_open(self, now_wall: float) -> list[Decision]:
        """The decisions the store holds open, one per component and fault (an SDC all-clear
        aside: stored open as a record, never held by the ladder). Where an older store holds
        two, the higher rung (then the later) stays and the other is closed as superseded, so
        that the store and the ladder agree."""
        kept: dict[tuple[int, int | None, str], Decision] = {}
        extra: list[Decision] = []
        for row in self.store.decisions(open_only=True):
            try:
                d = Decision.from_dict(row.body)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("event=stored_decision_unreadable id=%d problem=%r (left open in "
                            "the store, not in the ladder)", row.id, str(e))
                continue
            if _is_all_clear(d):
                continue  # a record of the GPU's return, never a decision the ladder holds open
            key = (d.gpu, d.link, d.fault)
            other = kept.get(key)
            if other is not None and (other.rung, other.time_wall) > (d.rung, d.time_wall):
                d, other = other, d
            if other is not None:
                extra.append(other)
            kept[key] = d
        if extra:
            log.warning("event=stored_decisions_duplicate count=%d (the lower closed as "
                        "superseded)", len(extra))
            self.store.record_step(None, (), [
                (d.time_wall, d.gpu, d.link, d.fault, "superseded", now_wall, d.rung.label)
                for d in extra])
        return list(kept.values())

    # ------------------------------------------------------------------ input

    def ingest(self, events: Sequence[FaultEvent], now_wall: float) -> list[Decision]:
        """Persist and classify events (time order), act on the new decisions, then take in
        the results of remedies that finished meanwhile; returns the new decisions.
        Thread-safe. Called with no events, it only drains the remedy results (the tick)."""
        out: list[Decision] = []
        if self._boards_due:  # before the pass's events: they are the board's in the slot now
            closing.close_replaced(self, now_wall)
        batch: Sequence[FaultEvent] = [
            x for x in map(self._with_architecture, events) if not self._judged_before_start(x)
        ]
        unplanned = self._take_unplanned() if self._unplanned else []
        while True:
            new = self._feed(batch)
            out.extend(new)
            if unplanned:  # once, after this pass's events (which may have closed some)
                new, unplanned = [*new, *self._still_open(unplanned)], []
            for d in new:  # outside the lock: a synchronous actuator runs the plan here
                self._actuator.submit(d, self._info(d.gpu))
            batch = self._take_results()
            if not batch:
                break
        with self._lock:  # time moved on: decisions whose fault stayed away expire
            self._advance(now_wall)
            # plans the actuator skipped (busy, rate limited) are tried again while open
            held = self._actuator.held
            still = self._esc.open_decisions() if held else []
        if held:
            self._actuator.retry_waiting(still)
        return out

    def _advance(self, now_wall: float) -> None:
        """Time moved on: close (and store) what expired by ``now_wall``. Under the lock."""
        ended = self._esc.advance(now_wall).closed
        if ended:
            self.store.record_step(None, (), [_end(c) for c in ended])

    def _take_unplanned(self) -> list[Decision]:
        with self._lock:
            unplanned, self._unplanned = self._unplanned, []
        return unplanned

    def _still_open(self, unplanned: list[Decision]) -> list[Decision]:
        """The decisions open at the restart whose plan never ran, still open now: planned
        again as new decisions are (the same gates, limits and advisory mode), each said once."""
        with self._lock:
            still = set(self._esc.open_decisions())
        out = [d for d in unplanned if d in still]
        for d in out:
            log.info("event=ladder_resubmitted gpu=%s link=%s rung=%s fault=%s decided=%.0f "
                     "detail=%r", d.gpu, d.link, d.rung.label, d.fault, d.time_wall,
                     "open at the restart, its plan never ran: planned again")
        return out

    def _judged_before_start(self, e: FaultEvent) -> bool:
        """A fault found already present at a GPU's first poll (``at_start``) that an earlier
        run stored with the same details was judged then: a restart does not judge it again.
        Unless a remedy that covers it worked since (a reboot covers the node, any other the
        GPU, or only its link): the fault still there after the cure is news, the cure did not
        hold."""
        if not e.details.get("at_start"):
            return False
        want = json.loads(json.dumps(dict(e.details), sort_keys=True, default=str))
        judged = max((f.event.time_wall for f in self.store.faults(gpu=e.gpu)
                      if f.event.kind is e.kind and f.event.link == e.link
                      and dict(f.event.details) == want), default=None)
        if judged is None:
            return False
        return not any(_covers(f.event, e) for f in self.store.faults(since=judged))

    def tick(self, now_wall: float) -> list[Decision]:
        """Take in the remedy results the actuator queued since the last tick (and act on the
        decisions they cause)."""
        return self.ingest((), now_wall)

    def _feed(self, events: Sequence[FaultEvent]) -> list[Decision]:
        out: list[Decision] = []
        with self._lock:
            for e in events:
                try:
                    step = self._esc.feed(e)
                except BadEvent as ex:
                    self.store.record_step(e, (), ())  # kept in the history, counted
                    self.bad_events += 1
                    key = f"{e.kind.value}:{ex}"
                    if key not in self._bad_logged:
                        self._bad_logged.add(key)
                        log.warning("bad_fault_event kind=%s gpu=%s problem=%r (logged once, "
                                    "then counted)", e.kind.value, e.gpu, str(ex))
                    continue
                self.store.record_step(e, [self._body(d) for d in step.opened],
                                       [_end(c) for c in step.ended])
                if e.kind is not FaultKind.REMEDY:
                    top = max((d.rung for d in step.opened), default=None)
                    self._faults[(e.gpu, e.kind.value, top.label if top else "none")] += 1
                for d in step.opened:
                    self._decisions_total += 1
                    log.info("decision gpu=%s link=%s rung=%s scope=%s fault=%s reason=%r",
                             d.gpu, d.link, d.rung.label, d.scope.value, d.fault, d.reason)
                out.extend(step.opened)
        return out

    def _body(self, d: Decision) -> dict[str, Any]:
        """The decision as stored, with the UUID of the board it was made on where the daemon
        knows it: a later start tells a replaced board by it (closing.close_replaced)."""
        body = d.to_dict()
        uuid = self.uuid_of(d.gpu) if self._gpu_info is not None else None
        if uuid is not None:
            body["uuid"] = uuid
        return body

    def uuid_of(self, gpu: int) -> str | None:
        """The UUID of the board in slot ``gpu`` as the daemon last read it (NVML's
        nvmlDeviceGetUUID, read at its first poll and again when it comes back from lost);
        None offline, before it was read, or where it cannot be."""
        if self._gpu_info is None:
            return None
        try:
            uuid = (self._gpu_info(gpu) or {}).get("uuid")
        except Exception:  # noqa: BLE001 - identity is optional: no UUID, no comparison
            return None
        if not isinstance(uuid, str) or not uuid or uuid.startswith(UNREAD_UUID):
            return None  # (the adapter's stand-in where nvmlDeviceGetUUID failed: no board's)
        return uuid

    def _with_architecture(self, e: FaultEvent) -> FaultEvent:
        """Xid register decodes differ by GPU architecture: name it from the GPU's product."""
        if e.kind is not FaultKind.XID or "architecture" in e.details or self._gpu_info is None:
            return e
        try:
            info = self._gpu_info(e.gpu) or {}
        except Exception:  # noqa: BLE001 - identity is optional; the decode then assumes Hopper
            return e
        arch = architecture(info.get("name"))
        if arch is None:
            return e
        return replace(e, details={**e.details, "architecture": arch})

    def _take_results(self) -> list[FaultEvent]:
        """Record the queued action results; the remedies among them as events for the ladder."""
        remedies: list[FaultEvent] = []
        while True:
            try:
                res = self._results.get_nowait()
            except queue.Empty:
                return remedies
            self.store.add_action(res.time_wall, res.gpu, res.link, res.kind, res.argv,
                                  res.result, res.exit_code, res.seconds, res.output_tail)
            with self._lock:
                self._actions[(res.gpu, res.kind, res.result)] += 1
            if res.rung is not None and res.result in ("ok", "failed", "timeout", "error"):
                outcome = "ok" if res.result == "ok" else "failed"
                if outcome == "failed" and res.rung >= Rung.REBOOT_NODE:
                    # the ladder moves nothing for it (escalate.py): the operator must know
                    # that the open decisions wait for them (counted in the actions counter)
                    if (res.kind, res.result) not in self._not_done_logged:
                        self._not_done_logged.add((res.kind, res.result))
                        log.warning("event=remedy_not_done kind=%s gpu=%s result=%s detail=%r "
                                    "(logged once, then counted)", res.kind, res.gpu, res.result,
                                    "nothing escalates: the open decisions stay; run it by hand "
                                    f"or fix [actions] {res.kind}")
                remedies.append(FaultEvent(res.time_wall, res.gpu, FaultKind.REMEDY, res.link,
                                           {"action": res.rung.label, "result": outcome}))

    def catch_up_from(self, kernel_log: str, gpu_of: Mapping[tuple[int, int, int], int],
                      now_wall: float) -> int:
        """On start: read the kernel log rasd can reach (the /dev/kmsg ring, or the journal)
        for the Xids of the time it was down, and judge the unseen ones."""
        since = self.store.last_fault_time()
        if since is None or not kernel_log:
            return 0
        try:
            logged, source = backlog(kernel_log, since, now_wall)
        except OSError as e:
            log.warning("event=kernel_log_backlog_unreadable path=%s error=%r", kernel_log,
                        e.strerror)
            return 0
        n = self.catch_up(logged, gpu_of, now_wall, since)
        log.info("event=kernel_log_catch_up source=%s logged=%d new=%d since=%.0f", source,
                 len(logged), n, since)
        return n

    def catch_up(self, logged: Sequence[LoggedXid], gpu_of: Mapping[tuple[int, int, int], int],
                 now_wall: float, since_wall: float | None = None) -> int:
        """Judge the Xids the kernel logged while rasd was down: those after the newest stored
        event (``since_wall``), except any the store already holds (the same GPU and code within
        ``CATCH_UP_SLACK_SECONDS``: the live path stamps when NVML signalled, the kernel when it
        printed). Returns how many were new."""
        since = self.store.last_fault_time() if since_wall is None else since_wall
        if since is None:
            return 0  # a first start: the history begins now, older lines are not ours to judge
        recent = self.store.faults(since=since - CATCH_UP_SLACK_SECONDS)
        stored = {(f.event.gpu, f.event.details.get("xid"), f.event.time_wall)
                  for f in recent if f.event.kind is FaultKind.XID}
        # a GPU a person closed while rasd was down (the board replaced): what the kernel logged
        # of it before the close is the old board's
        closed = {f.event.gpu: f.event.time_wall for f in recent
                  if f.event.kind is FaultKind.REMEDY and f.event.link is None
                  and f.event.details.get("action") == OPERATOR_CLOSE}
        events = []
        for x in logged:
            if not since < x.time_wall <= now_wall:
                continue
            gpu = gpu_of.get(x.line.pci)
            if gpu is None or x.time_wall <= closed.get(gpu, since):
                continue  # not one of this node's GPUs as NVML enumerates them now, or closed
            if any(g == gpu and c == x.line.xid and abs(t - x.time_wall) <= CATCH_UP_SLACK_SECONDS
                   for g, c, t in stored):
                continue
            events.append(FaultEvent(x.time_wall, gpu, FaultKind.XID, None, {
                "xid": x.line.xid, "message": x.line.message, "source": "kernel_log_backlog"}))
        if events:
            log.info("xids_while_down count=%d since=%.0f", len(events), since)
            self.ingest(events, now_wall)
        return len(events)

    def _info(self, gpu: int) -> dict[str, Any]:
        info: dict[str, Any] = {"hostname": self.hostname}
        if self._gpu_info is not None:
            try:
                info.update(self._gpu_info(gpu) or {})
            except Exception as e:  # noqa: BLE001 - identity is optional for placeholders
                log.warning("gpu_info_failed gpu=%s error=%r", gpu, str(e))
        return info

    def _on_action(self, res: ActionResult) -> None:
        """The actuator's sink (any thread): queue the result for the next tick, never re-enter
        the ladder from the action thread."""
        self._results.put(res)

    # ------------------------------------------------------------------ reading

    def state(self, now_wall: float | None = None) -> LadderState:
        now = time.time() if now_wall is None else now_wall
        with self._lock:
            esc = self._esc
            h = esc.history
            cut = now - self.settings.node_remedy_window_seconds
            return build_state(
                esc.open_decisions(), now, h.gpus_seen, h.links_seen,
                node_remedies=h.node_remedies_since(cut),
                node_remedy_limit=self.settings.node_remedy_count,
                fault_times={g: list(ts) for g, ts in h.fault_times.items()},
                gpus_per_node=self.settings.gpus_per_node,
                nvlinks_per_gpu=self.settings.nvlinks_per_gpu,
                faults=self._faults, actions=self._actions,
                decisions_total=self._decisions_total,
                plans=self._actuator.counts, plans_waiting=self._actuator.held,
                plans_waiting_oldest_seconds=self._actuator.oldest_wait())

    def still_lost(self, gpus: Sequence[int], now_wall: float,
                   unknown: Sequence[int] = ()) -> None:
        """The GPUs lost at ``now_wall``, every tick (the aggregator reports a loss once, when it
        happens): their lost-GPU decisions stay open while they stay lost, however long a remedy
        waits (advisory mode, a full budget, a tripped breaker). ``unknown``: GPUs not polled
        yet (lost or not, nobody knows): a lost-GPU decision restored at the start waits for a
        tick that knows. A GPU back from lost may be another board: its UUID is compared with
        its open decisions' again."""
        with self._lock:
            lost = frozenset(gpus)
            if self.lost_now - lost and self._gpu_info is not None:
                self._boards_due = True
            # asked by a close: a lost GPU's decisions cannot close
            self.lost_now = lost
            self._boards_seen -= lost
            for g in gpus:
                self._esc.still_present((g, None), LOST_FAULT, now_wall)
            if self._held_lost:
                waiting = set(unknown)
                for comp in [c for c in self._held_lost if c[0] not in waiting]:
                    self._esc.release(comp, LOST_FAULT)
                    self._held_lost.remove(comp)
                self._advance(now_wall)  # back since: it expires now if it would have
            if self._boards_due:
                closing.close_replaced(self, now_wall)

    def decisions_for(self, gpu: int) -> list[Decision]:
        """Open decisions of one GPU and its links, oldest first."""
        with self._lock:
            return [d for d in self._esc.open_decisions() if d.gpu == gpu]

    def is_excluded(self, gpu: int) -> bool:
        with self._lock:
            return any("exclude_gpu" in d.degradations for d in self.decisions_for(gpu))

    def rung(self, gpu: int) -> Rung:
        return max((d.rung for d in self.decisions_for(gpu)), default=Rung.NONE)

    def close_by_operator(self, gpu: int, link: int | None, reason: str, by: str = "",
                          now_wall: float | None = None) -> list[Decision]:
        """A person handled the open decisions of GPU ``gpu`` (or of its link ``link``): see
        ``rasd.ladder.closing.close_by_operator``."""
        return closing.close_by_operator(self, gpu, link, reason, by, now_wall)

    def handlers(self) -> dict[str, Callable[[dict], dict]]:
        """Control-socket operations: ``ladder.state``, ``ladder.history`` and
        ``ladder.close`` (gpu, optional link, reason, by: see ``close_by_operator``)."""
        def _state(_: dict) -> dict:
            return self.state().to_dict()

        def _history(req: dict) -> dict:
            gpu = req.get("gpu")
            rows = self.store.decisions(gpu=gpu, limit=req.get("limit", 1000))
            return {"decisions": [dict(r.body, state=r.state, closed=r.closed_wall)
                                  for r in rows]}

        return {"ladder.state": _state, "ladder.history": _history,
                "ladder.close": root_only(lambda req: closing.handle(self, req))}

    def reconfigure(self, settings: LadderSettings) -> None:
        """A reload does not change the ladder: its windows and counts shape the history it has
        already built, so new [ladder] settings take effect on restart (said in the log)."""
        if settings != self.settings:
            log.warning("event=reload_partial detail=%r", "[ladder] settings change on restart")

    def close(self) -> None:
        """Wait for running actions, then record their results (nothing run goes unrecorded)."""
        self._actuator.close()
        self._feed(self._take_results())


def _covers(remedy: FaultEvent, e: FaultEvent) -> bool:
    """Whether ``remedy`` is a remedy that worked on ``e``'s component (or a person closed
    what was open on it: a fault there after it is news)."""
    if remedy.kind is not FaultKind.REMEDY:
        return False
    if remedy.details.get("action") == OPERATOR_CLOSE:
        return remedy.gpu == e.gpu and remedy.link in (None, e.link)
    if remedy.details.get("result") != "ok":
        return False
    if remedy.details.get("action") == Rung.REBOOT_NODE.label:
        return True
    return remedy.gpu == e.gpu and remedy.link in (None, e.link)


def _ran_for(a: ActionRecord, d: Decision, kinds: Sequence[str]) -> bool:
    """Whether the stored run ``a`` (a command that ran) was ``d``'s plan, run through or
    stopped by a failure: its last command, or a failed one, on its component since it was
    decided. A reboot is the node's, whichever GPU's decision ran it."""
    if a.time_wall < d.time_wall or a.kind not in kinds:
        return False
    if a.kind != kinds[-1] and a.result == "ok":
        return False  # an earlier step (a drain) that went on to the next
    if a.kind == RUNG_ACTIONS[Rung.REBOOT_NODE]:
        return True
    return a.gpu == d.gpu and a.link == d.link


def _boot_time(path: str = "/proc/stat") -> float | None:
    """When the node booted (Unix s: the kernel's ``btime``); None where it cannot be read.
    (Read here rather than through psutil: a daemon at its defaults does not load psutil.)"""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_all_clear(d: Decision) -> bool:
    """The decision a clean SDC deep check leaves (rung none, asking nothing): the ladder emits
    it so the GPU's return is on record, and holds it open nowhere (a suspicion of the same fault
    always asks for its deep check and excludes the GPU)."""
    return d.fault == "sdc" and d.rung is Rung.NONE and not d.investigate and not d.degradations


def _end(c: Closure) -> DecisionEnd:
    d = c.decision
    return (d.time_wall, d.gpu, d.link, d.fault, c.outcome, c.time_wall, d.rung.label)
