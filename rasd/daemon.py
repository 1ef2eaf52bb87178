"""Wiring: threads, the main loop, signals, systemd notify, the control socket.

The health-poll loops and the power sampler (one loop each over all GPUs, the power reads on a
native thread where rasd was built with it; each Python loop, and the main loop, gives up the
others' hung calls) publish readings; every health interval the main loop
runs its stages, each in its own guard (rasd.stages): aggregate (readings -> GpuState and fault
events), ladder, sdc, power, scheduler, snapshot, notify. It then swaps in a new immutable
Snapshot that the exporter, handed in by the CLI, formats on scrape. Every area service follows
rasd.service.Service.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import fields, replace
from typing import Any, Callable, Protocol, Sequence

from rasd import config as config_mod
from rasd import heap
from rasd.backends import Backend
from rasd.config import Config
from rasd.freshness import Freshness
from rasd.instance import InstanceLock
from rasd.ladder.decision import Decision
from rasd.ladder.state import LadderState
from rasd.model import FaultEvent, GpuState, Health
from rasd.notify import Notifier
from rasd.snapshot import SelfStats, Snapshot
from rasd.stages import StageGuards
from rasd.statusview import snapshot_json
from rasd.paths import default_control_socket, default_state_path
from rasd.scheduler.service import health_watched, open_decisions
from rasd.scheduler.state import SchedulerState
from rasd.service import Bound, Handler, tick_and_read
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.loops import Watchdog
from rasd.telemetry.poller import GpuPoller, health_loops
from rasd.telemetry.power import PowerSampler
from rasd.telemetry.xid import XidWatcher

log = logging.getLogger("rasd.daemon")

STOP_BUDGET_SECONDS = 4.0  # SIGTERM -> exit within 5 s
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these


def one_blas_thread() -> None:
    """OpenBLAS (NumPy's BLAS) starts a thread per core when NumPy loads, up to 63 more threads
    on a big node, for a daemon whose power analysis uses FFTs (no BLAS) and whose NumPy SDC
    engine limits itself to one core. One thread unless the operator chose otherwise; it must be
    set before NumPy loads (the services below load it). The actuator's commands inherit
    the variable; a command that wants more BLAS threads sets its own."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class MetricsServer(Protocol):
    def shutdown(self) -> None: ...


class ServeMetrics(Protocol):
    """Starts serving ``/metrics`` (and ``/healthz``) from the latest snapshot on its own threads.

    The CLI passes ``exporters.prometheus.serve``: rasd itself never imports the exporters."""

    def __call__(self, snapshot: Callable[[], Snapshot | None], host: str, port: int,
                 health: Callable[[], tuple[bool, str]] | None = None) -> MetricsServer: ...


class Daemon:
    def __init__(
        self,
        cfg: Config,
        backend: Backend,
        config_path: str | None = None,
        listen: str | None = None,
        hostname: str | None = None,
        wall: Callable[[], float] = time.time,
        serve_metrics: ServeMetrics | None = None,
    ):
        """``serve_metrics`` None: nothing is served (in-process use reads ``snapshot``)."""
        one_blas_thread()
        heap.lean_malloc()  # before the threads below: they take arenas as they start
        self.cfg = cfg
        self.serve_metrics = serve_metrics
        self.backend = backend
        self.config_path = config_path
        # What the command line set over the file ([daemon] keys: --listen, --log-level): kept
        # over every reload, which reads the file alone.
        self._overrides = _overrides(cfg, config_path)
        self.listen = listen or cfg.daemon.listen
        self.hostname = hostname or socket.gethostname()
        self.wall = wall
        self.started_wall = wall()
        self._snapshot: Snapshot | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._polls = 0
        self._power_distinct = 0
        self._loop_failures = 0
        self._stat_fd: int | None = None  # /proc/self/stat, kept open for the tick's self stats
        self.notifier = Notifier()
        self.node = backend.adapter.node_identity(self.hostname, backend.name)
        t = cfg.telemetry
        self.gpus = backend.adapter.gpus()
        self.pollers = [
            GpuPoller(g, t.health_interval_seconds, t.poll_deadline_seconds, wall=wall,
                      slow_interval=t.slow_interval_seconds)
            for g in self.gpus
        ]
        self.aggregator = Aggregator(recent_xids=t.recent_xids)
        self.health = health_loops(self.pollers, t.health_interval_seconds, t.poll_deadline_seconds)
        native = backend.adapter.native_power(self.gpus) if t.native_power_reads else None
        self.sampler = PowerSampler(self.gpus, t.power_sample_hz, self._on_power, wall=wall, native=native,
                                    pass_seconds=t.health_interval_seconds)
        self.watchdog = Watchdog([*self.health, self.sampler.loop])
        self.watchdog.attach()  # the loops check each other; the main loop checks every pass
        self.xids = XidWatcher(backend.adapter, backend.kernel_log(t.kernel_log), t.xid_wait_ms, wall=wall)
        self.state_path = cfg.daemon.state_path or default_state_path(backend.name)
        self.socket_path = cfg.daemon.control_socket or default_control_socket(backend.name)
        self.guards = StageGuards()
        # before the store opens: a second daemon on this state is refused, never shares it
        self.instance = InstanceLock(self.state_path).acquire()
        try:
            self._build_services()
        except BaseException:
            self.instance.release()
            raise
        self.http: Any = None
        self.freshness = Freshness(lambda: self.cfg.telemetry.health_interval_seconds)
        self.control: Any = None

    # -- services -------------------------------------------------------------------------------

    def _build_services(self) -> None:
        from rasd.ladder.actions import Actuator
        from rasd.ladder.service import LadderService
        from rasd.scheduler.build import build_service as build_scheduler
        from rasd.power.service import PowerService
        from rasd.sdc.service import SdcService
        from rasd.store import Store

        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        self.store = Store(self.state_path)
        handles = {g.index: g for g in self.gpus}
        self.scheduler = build_scheduler(
            self.cfg.scheduler, self.cfg.actions.enforce, self.state_path, hostname=self.hostname,
            gpus=list(handles), processes=lambda gpu: handles[gpu].running_pids(),
            gpu_uuid=lambda gpu: (self._gpu_info(gpu) or {}).get("uuid"),
        )
        actuator = Actuator(self.cfg.actions)
        actuator.gate = self.scheduler.gate  # capacity-taking plans pass the fleet's budget first
        actuator.gated = self.scheduler.gated  # and which it let through, kept across restarts
        self.scheduler.submit = actuator.submit  # deferred decisions come back this way
        self.ladder = LadderService(
            self.cfg.ladder, self.cfg.actions, self.store, self.hostname, gpu_info=self._gpu_info, actuator=actuator
        )
        self.power = PowerService(self.cfg.power, self.gpus)
        self.sdc = SdcService(
            self.cfg.sdc, self.backend, self.store, self._emit, lock_dir=os.path.dirname(self.socket_path),
            close_timeout=1.5,
        )
        # in tick order; closed in reverse, the scheduler last (close_order)
        self.services: tuple[Bound[Any], ...] = (
            Bound("ladder", self.ladder, lambda c: c.ladder),
            Bound("sdc", self.sdc, lambda c: c.sdc),
            Bound("power", self.power, lambda c: c.power),
            Bound("scheduler", self.scheduler, lambda c: c.scheduler),
        )

    def _gpu_info(self, gpu: int) -> dict[str, Any] | None:
        for p in self.pollers:
            if p.index == gpu and p.identity is not None:
                return {"uuid": p.identity.uuid, "pci_bus_id": p.identity.pci_bus_id, "name": p.identity.name}
        return None

    def _pci_to_gpu(self) -> dict[tuple[int, int, int], int]:
        from rasd.telemetry.kmsg import pci_key

        out = {}
        for g in self.gpus:
            try:
                key = pci_key(g.identity().pci_bus_id)
            except Exception:  # noqa: BLE001 - a lost GPU has no identity to read
                key = None
            if key is not None:
                out[key] = g.index
        return out

    def _emit(self, events: Sequence[FaultEvent]) -> None:
        """Verdicts from the SDC service (its own thread) go straight to the ladder."""
        self.scheduler.on_decisions(self.ladder.ingest(list(events), self.wall()))

    def _on_power(self, samples: Any) -> None:
        self._power_distinct += len(samples)
        self.power.add_samples(samples)

    def handlers(self) -> dict[str, Handler]:
        h: dict[str, Handler] = {
            "ping": lambda req: {"pid": os.getpid(), "backend": self.backend.name, "state": self.state_path},
            "status": lambda req: {"pid": os.getpid(), **snapshot_json(self._snapshot)},
        }
        for b in self.services:
            h.update(b.service.handlers())
        return h

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        from rasd import threadnames

        threadnames.install()  # the threads below carry their names into top -H and /proc
        if self.serve_metrics is not None:
            host, port = config_mod.parse_listen(self.listen)
            # before threads: a taken port fails fast
            self.http = self.serve_metrics(lambda: self._snapshot, host, port, health=self.freshness.check)
        from rasd.control import ControlServer

        # a socket that cannot be offered is a configuration error (ControlSocketError), never a
        # daemon that runs unreachable or unprotected
        self.control = ControlServer(self.socket_path, self.handlers(), self.cfg.daemon.control_group)
        self.control.start()
        for loop in self.health:
            loop.start()
        self.sampler.start()
        if self.sampler.loop not in self.watchdog.loops:  # the native reader did not start
            self.watchdog = Watchdog([*self.health, self.sampler.loop])
            self.watchdog.attach()
        if self.backend.fake_node is None:  # the fake node's log keeps no backlog
            self.ladder.catch_up_from(self.cfg.telemetry.kernel_log, self._pci_to_gpu(), self.wall())
        self.xids.start()
        from rasd.power import kernel as power_kernel  # loaded with the power service

        log.info(
            "event=started backend=%s gpus=%d listen=%s state=%s control=%s power_reads=%s power_analysis=%s",
            self.backend.name, len(self.gpus), self.listen, self.state_path, self.socket_path,
            "native" if self.sampler.native else "python", "native" if power_kernel.active is not None else "numpy",
        )

    def _take_loops(self) -> None:
        """Give up calls hung on the loops' threads, and judge the native reader's power reads
        since the last pass; a failure is logged once, then counted, and the tick goes on."""
        for what, fn in (("watchdog", self.watchdog.check), ("power_reads", self.sampler.drain)):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - the tick's stages still run
                self._loop_failures += 1
                if self._loop_failures == 1:
                    log.exception("event=loops_failed part=%s error=%r (logged once, then counted)", what, str(e))

    def tick(self) -> Snapshot:
        """One pass of the main loop: read pollers, detect, decide, publish. Never blocks on NVML.

        Each stage runs in its own guard (rasd.stages): a stage that fails keeps its previous
        part of the snapshot, and the others go on."""
        self._take_loops()
        now = self.wall()
        prev = self._snapshot
        g = self.guards
        no_events: list[FaultEvent] = []
        gpus, events = g.run("aggregate", lambda: self._aggregate(now), (prev.gpus if prev else (), no_events))
        no_decisions: list[Decision] = []
        ladder, decisions = g.run("ladder", lambda: self._ladder_tick(events, now, gpus),
                                  (prev.ladder if prev else None, no_decisions))
        sdc = g.run("sdc", lambda: tick_and_read(self.sdc, now), prev.sdc if prev else None)
        power = g.run("power", lambda: tick_and_read(self.power, now), prev.power if prev else None)
        scheduler = g.run("scheduler", lambda: self._scheduler_tick(now, ladder, decisions, gpus),
                          prev.scheduler if prev else None)
        self._polls += 1
        stats = g.run("snapshot", self._self_stats, None)
        snap = Snapshot(
            time_wall=now,
            node=self.node,
            gpus=gpus,
            health_polls=self._polls,
            power_rounds=self._power_distinct,
            self_stats=stats,
            ladder=ladder,
            sdc=sdc,
            power=power,
            scheduler=scheduler,
            stages=g.status(),
        )
        self._snapshot = snap
        self.freshness.mark(snap)
        g.run("notify", lambda: self.notifier.publish(snap, self.cfg.daemon.watchdog), None)
        return snap

    def _aggregate(self, now: float) -> tuple[tuple[GpuState, ...], list[FaultEvent]]:
        """Pollers' and the sampler's latest readings -> GPU states and fault events."""
        self.xids.sync()  # the Xids NVML has reported by now, with the readings they came with
        xids = self.xids.drain()
        events: list[FaultEvent] = self.aggregator.add_xids(xids)
        for x in xids:  # an Xid often comes with a counter that moved: read them next poll
            for p in self.pollers:
                if p.index == x.gpu:
                    p.want_slow()
        latest = self.sampler.latest()
        rates = self.sampler.rates()
        methods = self.sampler.methods()
        states = []
        for p in self.pollers:
            ps = latest.get(p.index)
            m = methods.get(p.index)
            power = (ps.watts if ps else None, rates.get(p.index), m.value if m else None)
            st, ev = self.aggregator.update(p.view(), now, power)
            states.append(st)
            events.extend(ev)
        return tuple(states), events

    def _ladder_tick(self, events: list[FaultEvent], now: float,
                     gpus: Sequence[GpuState] = ()) -> tuple[LadderState, list[Decision]]:
        decisions = self.ladder.ingest(events, now)  # with none it still takes in finished remedies
        # a loss is reported once: while the GPU stays lost its decision must not expire (nor,
        # after a start, before the GPU's first poll has said whether it still is)
        known = {s.index for s in gpus if s.health is Health.LOST or s.sample is not None}
        self.ladder.still_lost([s.index for s in gpus if s.health is Health.LOST], now,
                               unknown=[g.index for g in self.gpus if g.index not in known])
        return self.ladder.state(), decisions

    def _scheduler_tick(self, now: float, ladder: LadderState | None, decisions: list[Decision],
                        gpus: tuple[GpuState, ...]) -> SchedulerState:
        self.scheduler.on_decisions(decisions)
        self.scheduler.tick(now, open_decisions(ladder), watched=health_watched(gpus))
        return self.scheduler.state()

    def _self_stats(self) -> SelfStats:
        # One read of /proc/self/stat (proc(5)): the process's user and system CPU in clock ticks
        # (what times(2) returns), its threads and resident pages. Importing psutil would cost the
        # daemon 2.1 MB for these numbers, and three reads (times, statm, the task directory)
        # cost the tick three times the system calls, each a hand-off of the GIL. The file stays
        # open and is read again from its start (procfs makes it afresh on each read): one
        # system call a tick instead of five (open, fstat, ioctl, read, close).
        fd = self._stat_fd
        if fd is None:
            fd = self._stat_fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
        fields = os.pread(fd, 4096, 0).rsplit(b")", 1)[1].split()
        return SelfStats(
            cpu_seconds=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
            rss_bytes=int(fields[21]) * _PAGE_BYTES,
            threads=int(fields[17]),
            started_wall=self.started_wall,
        )

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._reload.set()

    def reload(self) -> None:
        """SIGHUP: re-read the config file; an invalid one is logged and the old one kept."""
        if not self.config_path:
            log.info("event=reload_skipped reason=no_config_file")
            return
        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as e:
            for problem in e.problems:
                log.error("event=reload_rejected path=%s problem=%r", self.config_path, problem)
            log.error("event=reload_rejected path=%s action=kept_previous_config", self.config_path)
            return
        new = replace(new, daemon=replace(new.daemon, **self._overrides))
        running = _as_running(self.cfg, new)  # the keys applied, the others as they were
        later = _differences(new, running)  # what waits for a restart
        new = running
        t = new.telemetry
        for p in self.pollers:
            p.interval = t.health_interval_seconds
            p.deadline = t.poll_deadline_seconds
            p.slow_interval = t.slow_interval_seconds
        for loop in self.health:
            loop.interval = t.health_interval_seconds
            loop.deadline = t.poll_deadline_seconds
        self.sampler.pass_seconds(t.health_interval_seconds)
        for b in self.services:
            try:
                b.reconfigure(new)
            except Exception:  # noqa: BLE001 - one service's reload must not stop the others'
                log.exception("event=reload_failed service=%s", b.name)
        if later:
            log.warning("event=reload_partial changed=%s detail=%r", ",".join(later),
                        "these settings change on restart; the others are applied")
        logging.getLogger().setLevel(new.daemon.log_level.upper())
        self.cfg = new
        log.info("event=reloaded path=%s", self.config_path)

    def run_forever(self) -> None:
        """Main loop until SIGTERM/SIGINT. Signal handlers only set flags; work happens here."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        interval = self.cfg.telemetry.health_interval_seconds
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
                interval = self.cfg.telemetry.health_interval_seconds
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the loop survives; systemd's watchdog catches a wedge
                log.exception("event=tick_failed")
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + interval
            self._stop.wait(max(0.0, next_at - now))
        self.stop()

    def stop(self) -> None:
        """Stop pollers, revert applied power changes, flush the store. Bounded time."""
        self.notifier.send("STOPPING=1")
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        for loop in self.health:
            loop.stop()
        self.sampler.stop()
        try:
            self.sampler.drain()  # the native reader's last reads, before power closes
        except Exception:  # noqa: BLE001 - keep shutting down
            log.exception("event=power_reads_failed at=stop")
        self.xids.stop()
        for b in close_order(self.services):
            try:
                b.service.close()
            except Exception:  # noqa: BLE001 - keep shutting down
                log.exception("event=close_failed service=%s", b.name)
        if self.control is not None:
            self.control.close()
        if self.http is not None:
            self.http.shutdown()
        for loop in self.health:  # hung threads are daemons: do not wait past the budget
            loop.join(max(0.0, min(0.2, deadline - time.monotonic())))
        self.sampler.join(max(0.0, min(0.5, deadline - time.monotonic())))
        self.xids.join(max(0.0, min(0.6, deadline - time.monotonic())))
        try:
            self.store.close()
        except Exception:  # noqa: BLE001
            log.exception("event=store_close_failed")
        self.instance.release()
        self.backend.close()
        if self._stat_fd is not None:
            os.close(self._stat_fd)
            self._stat_fd = None
        log.info("event=stopped")


def close_order(services: Sequence[Bound[Any]]) -> list[Bound[Any]]:
    """Reverse tick order -- power gives the GPUs their limits back first, SDC verdicts stop
    before the ladder that takes them, the ladder records what its actions did before the store
    closes -- except the scheduler, which closes last: the ladder's actuator asks its gate (and
    its ledger) until the actions still running end and the queued ones are cancelled."""
    order = list(reversed(services))
    return [b for b in order if b.name != "scheduler"] + [b for b in order if b.name == "scheduler"]


def with_listen(cfg: Config, listen: str | None) -> Config:
    if listen is None:
        return cfg
    return replace(cfg, daemon=replace(cfg.daemon, listen=listen))


_DAEMON_AT_START = ("listen", "state_path", "control_socket", "control_group", "watchdog")
_TELEMETRY_AT_START = ("power_sample_hz", "native_power_reads")


def _overrides(cfg: Config, config_path: str | None) -> dict[str, Any]:
    """The [daemon] keys in which ``cfg`` differs from the file at ``config_path`` (set on the
    command line)."""
    try:
        file = config_mod.load(config_path) if config_path else Config.default()
    except config_mod.ConfigError:
        return {}
    return {f.name: getattr(cfg.daemon, f.name) for f in fields(cfg.daemon)
            if getattr(cfg.daemon, f.name) != getattr(file.daemon, f.name)}


def _as_running(old: Config, new: Config) -> Config:
    """``new`` with the settings a reload cannot apply kept as the daemon runs on them (the
    daemon is built on them): the listen address, state and control socket, the power reads'
    rate and kind, every [actions] key (the actuator's enforce must stay the scheduler gate's,
    read at start), every [ladder] key (its windows shaped the history it holds), the
    scheduler's kind and node. The services are handed this, and a later reload compares with
    it (and says again what still waits for a restart)."""
    return replace(
        new,
        daemon=replace(new.daemon, **{k: getattr(old.daemon, k) for k in _DAEMON_AT_START}),
        telemetry=replace(new.telemetry, **{k: getattr(old.telemetry, k) for k in _TELEMETRY_AT_START}),
        actions=old.actions,
        ladder=old.ladder,
        scheduler=replace(new.scheduler, kind=old.scheduler.kind, node_name=old.scheduler.node_name),
    )


def _differences(new: Config, running: Config) -> list[str]:
    """``section.key`` for each setting of ``new`` that the daemon does not run on (``running``
    keeps those a reload cannot apply: ``_as_running``)."""
    out = []
    for section in fields(new):
        a, b = getattr(new, section.name), getattr(running, section.name)
        if a != b:
            out += [f"{section.name}.{f.name}" for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    return out
