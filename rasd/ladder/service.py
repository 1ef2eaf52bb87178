"""The ladder as a daemon service: ingest fault events, persist, decide, act, expose state.

History is event-sourced: every fault event (remedies included) is stored with the step it caused
(decisions opened and ended) in one transaction, so after a restart the escalator is rebuilt from
the store (restore.py) without re-storing or re-acting; an open decision whose plan never ran is
planned again on the first pass after the restart, through the same actuator path as a new one.
On start the Xids the kernel logged while rasd was down are judged too (catchup.py). The actuator
never calls back into the ladder: its results wait in a queue that ``tick`` (and every
``ingest``) drains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, Sequence

from rasd.control import root_only
from rasd.ladder import catchup, closing, restore
from rasd.ladder.actions import ActionResult, Actuator
from rasd.ladder.classify import LOST_FAULT
from rasd.ladder.decision import Decision
from rasd.ladder.escalate import Closure, Escalator
from rasd.ladder.findings import BadEvent
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.ladder.xidtext import architecture
from rasd.ladder.state import LadderState, build_state
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import DecisionEnd, Store
from rasd.telemetry.kmsg import LoggedXid

log = logging.getLogger("rasd.ladder")

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
        # replaced boards (closing.close_replaced): the GPUs whose board was compared with their
        # open decisions' since the start or their last loss, and whether one is still to be
        # compared
        self.boards = closing.Boards(due=gpu_info is not None)
        with self._lock:
            restored = restore.rebuild(self._esc, self.store, self._actuator,
                                       settings.horizon_seconds,
                                       time.time() if now_wall is None else now_wall,
                                       booted_wall, self._advance)
        self.restored_events = restored.events
        # open at the restart, plan never run: planned again on the first pass
        self._unplanned: list[Decision] = restored.unplanned
        self._held_lost = restored.held_lost  # see restore.rebuild

    # ------------------------------------------------------------------ input

    def ingest(self, events: Sequence[FaultEvent], now_wall: float) -> list[Decision]:
        """Persist and classify events (time order), act on the new decisions, then take in
        the results of remedies that finished meanwhile; returns the new decisions.
        Thread-safe. Called with no events, it only drains the remedy results (the tick)."""
        out: list[Decision] = []
        if self.boards.due:  # before the pass's events: they are the board's in the slot now
            closing.close_replaced(self, now_wall)
        batch: Sequence[FaultEvent] = [
            x for x in map(self._with_architecture, events)
            if not restore.judged_before_start(self.store, x)
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
        """The decisions open at the restart whose plan never ran, still open now."""
        with self._lock:
            open_now = self._esc.open_decisions()
        return restore.still_open(unplanned, open_now)

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
        """On start: judge the Xids the kernel logged while rasd was down, read from the kernel
        log rasd can reach (see ``rasd.ladder.catchup.catch_up_from``)."""
        return catchup.catch_up_from(self.store, self.ingest, kernel_log, gpu_of, now_wall)

    def catch_up(self, logged: Sequence[LoggedXid], gpu_of: Mapping[tuple[int, int, int], int],
                 now_wall: float, since_wall: float | None = None) -> int:
        """Judge the Xids the kernel logged while rasd was down, those not stored already (see
        ``rasd.ladder.catchup.catch_up``). Returns how many were new."""
        return catchup.catch_up(self.store, self.ingest, logged, gpu_of, now_wall, since_wall)

    def identity(self, gpu: int) -> dict[str, Any]:
        """The GPU's identity as the daemon polls it (uuid, pci_bus_id, name); empty offline or
        for a GPU it does not poll."""
        if self._gpu_info is None:
            return {}
        return {k: v for k, v in self._info(gpu).items() if k != "hostname"}

    @property
    def polls_gpus(self) -> bool:
        """Whether the daemon polls the GPUs (their identity can be read); False offline."""
        return self._gpu_info is not None

    @contextmanager
    def locked(self) -> Iterator[Escalator]:
        """The escalator, with the service's (reentrant) lock held for the ``with`` block: the
        closes (closing.py) read it, feed it and store the step as one move."""
        with self._lock:
            yield self._esc

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
                self.boards.due = True
            # asked by a close: a lost GPU's decisions cannot close
            self.lost_now = lost
            self.boards.seen -= lost
            for g in gpus:
                self._esc.still_present((g, None), LOST_FAULT, now_wall)
            if self._held_lost:
                waiting = set(unknown)
                for comp in [c for c in self._held_lost if c[0] not in waiting]:
                    self._esc.release(comp, LOST_FAULT)
                    self._held_lost.remove(comp)
                self._advance(now_wall)  # back since: it expires now if it would have
            if self.boards.due:
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


def _end(c: Closure) -> DecisionEnd:
    d = c.decision
    return (d.time_wall, d.gpu, d.link, d.fault, c.outcome, c.time_wall, d.rung.label)
