"""Health pollers: one thread per GPU, so a hung NVML call stalls only its own GPU.

A wedged driver call cannot be cancelled from Python. Instead of waiting on it, each GPU polls on
its own thread and publishes its latest outcome by plain reference assignment; the daemon reads
``view()`` at its own pace and marks a GPU stale when its poll runs past the deadline. The
stalled thread rejoins by itself if the call ever returns.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from rasd.backends.errors import GpuLost
from rasd.backends.nvml import GpuHandle
from rasd.model import GpuIdentity, GpuSample
from rasd.telemetry.aggregate import PollView

log = logging.getLogger("rasd.poller")


class GpuPoller:
    def __init__(
        self,
        handle: GpuHandle,
        interval: float,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.handle = handle
        self.index = handle.index
        self.interval = interval
        self.deadline = deadline
        self._clock = clock
        self._wall = wall
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # published state: each attribute is replaced whole, never mutated in place
        self.identity: GpuIdentity | None = None
        self.sample: GpuSample | None = None
        self.seq = 0
        self.lost: str | None = None
        self.last_update_wall: float | None = None
        self.busy_since: float | None = None
        self.overruns = 0
        self._stall_counted = False
        self.internal_errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rasd-poll-gpu{self.index}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def poll_once(self) -> None:
        """One poll on the calling thread (the loop's body; also used by one-shot commands)."""
        start = self._clock()
        self.busy_since = start
        try:
            if self.identity is None:
                self.identity = self.handle.identity()
            sample = self.handle.poll(self._wall)
            self.sample = sample
            self.lost = None
            self.last_update_wall = sample.time_wall
        except GpuLost as e:
            if self.lost is None:
                log.error("event=gpu_lost gpu=%d detail=%r", self.index, e.detail)
            self.lost = e.detail
        except Exception as e:  # noqa: BLE001 - a poller never dies; the fault is counted
            self.internal_errors += 1
            if self.internal_errors == 1:
                log.exception("event=poll_failed gpu=%d error=%r", self.index, str(e))
        finally:
            took = self._clock() - start
            if took > self.deadline and not self._stall_counted:
                self.overruns += 1
            self._stall_counted = False
            self.busy_since = None
            self.seq += 1

    def _run(self) -> None:
        next_at = self._clock()
        while not self._stop.is_set():
            self.poll_once()
            next_at += self.interval
            now = self._clock()
            if next_at < now:  # overran: skip the missed ticks instead of bursting
                next_at = now + self.interval
            self._stop.wait(max(0.0, next_at - now))

    def view(self) -> PollView:
        now = self._clock()
        busy = self.busy_since
        stalled = busy is not None and now - busy > self.deadline
        if stalled and not self._stall_counted:
            self._stall_counted = True
            self.overruns += 1
            log.warning("event=poll_overrun gpu=%d deadline_seconds=%.2f", self.index, self.deadline)
        return PollView(
            index=self.index,
            identity=self.identity,
            sample=self.sample,
            seq=self.seq,
            lost=self.lost,
            stalled=stalled,
            last_update_wall=self.last_update_wall,
            overruns=self.overruns,
            errors=self.handle.error_counts(),
            unsupported=self.handle.unsupported(),
        )
