"""Which jobs each fault hit: a small worker that keeps, per GPU, the jobs of its processes.

The processes come from NVML (``nvmlDeviceGetComputeRunningProcesses`` through the backend's
handles), read on this worker's thread so a hung driver never stalls the main loop. The list
is refreshed every ``REFRESH_SECONDS`` and when a decision arrives; a GPU that no longer answers
(fallen off the bus: Xid 79) is named by the jobs last seen on it, with their age.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from rasd.ladder.decision import Decision
from rasd.scheduler.jobs import jobs_on
from rasd.scheduler.ledger import Ledger
from rasd.scheduler.state import JobRef

log = logging.getLogger("rasd.scheduler.jobs")

REFRESH_SECONDS = 10.0

Processes = Callable[[int], "list[int]"]  # GPU index -> PIDs (raises when the GPU is lost)
PodNames = Callable[[], "dict[str, str]"]  # GPU UUID or index -> namespace/name of its pod
GpuUuid = Callable[[int], "str | None"]


class JobWatch:
    def __init__(self, gpus: Iterable[int], processes: Processes, ledger: Ledger, *,
                 proc_root: str = "/proc", pod_names: PodNames | None = None,
                 gpu_uuid: GpuUuid | None = None, wall: Callable[[], float] = time.time):
        self.gpus = sorted(gpus)
        self._processes = processes
        self._ledger = ledger
        self._proc_root = proc_root
        self._pod_names = pod_names
        self._gpu_uuid = gpu_uuid
        self._wall = wall
        self._lock = threading.Lock()
        self._now: dict[int, tuple[JobRef, ...]] = {}
        self._seen_wall: dict[int, float] = {}
        self._last_refresh = float("-inf")
        self._failed_logged: set[int] = set()
        self._pool = ThreadPoolExecutor(1, "rasd-jobs")

    def current(self) -> dict[int, tuple[JobRef, ...]]:
        with self._lock:
            return {g: js for g, js in self._now.items() if js}

    def tick(self, now: float) -> None:
        if now - self._last_refresh >= REFRESH_SECONDS:
            self._last_refresh = now
            self._pool.submit(self._guard, self.refresh)

    def on_decisions(self, decisions: list[Decision]) -> None:
        """Record the jobs each decision's GPU had (on the worker thread)."""
        if decisions:
            self._pool.submit(self._guard, self._record, list(decisions))

    def _guard(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - attribution is best effort; the worker stays
            log.exception("event=jobs_attribution_failed")

    def refresh(self, only: Iterable[int] | None = None) -> None:
        names = self._pods()
        for gpu in (self.gpus if only is None else only):
            try:
                pids = self._processes(gpu)
            except Exception as e:  # noqa: BLE001 - a lost GPU keeps its last jobs
                if gpu not in self._failed_logged:
                    self._failed_logged.add(gpu)
                    log.info("event=jobs_processes_unavailable gpu=%s error=%r (logged once)",
                             gpu, str(e))
                continue
            self._failed_logged.discard(gpu)
            uuid = self._gpu_uuid(gpu) if self._gpu_uuid else None
            # the device plugin names GPUs by UUID (its default) or by index
            pod = names.get(uuid or "", "") or names.get(str(gpu), "")
            refs = jobs_on(pids, self._proc_root, pod)
            with self._lock:
                self._now[gpu] = refs
                self._seen_wall[gpu] = self._wall()

    def _pods(self) -> dict[str, str]:
        if self._pod_names is None:
            return {}
        try:
            return self._pod_names()
        except Exception as e:  # noqa: BLE001 - names are a nicety; UIDs still say which pod
            log.debug("event=pod_resources_unavailable error=%r", str(e))
            return {}

    def _record(self, decisions: list[Decision]) -> None:
        self.refresh({d.gpu for d in decisions})
        for d in decisions:
            with self._lock:
                refs = self._now.get(d.gpu, ())
                seen = self._seen_wall.get(d.gpu)
            jobs = [dict(r.to_dict(), seen=seen) for r in refs]
            self._ledger.add_jobs(d.time_wall, d.gpu, d.link, d.fault, jobs)
            log.info("event=jobs_hit gpu=%s fault=%s rung=%s jobs=%s", d.gpu, d.fault,
                     d.rung.label, ",".join(f"{r.kind}:{r.id or r.pid}" for r in refs) or "none")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
