"""The Xid event thread: polls nvmlEventSetWait and queues XidEvents with driver messages.

The wait is asked with a zero timeout, every ``wait_ms`` and whenever the main loop is about to
read the queue (``sync``), instead of blocking inside the library: a thread parked in the
library's wait makes its runtime work on every other thread's call (NVIDIA's mock NVML, a Go
library, then spends 0.6-0.8% of a core beside a 20 Hz power sampler on 8 GPUs, against 0.1%
with either alone). Because the main loop has the events polled just before it reads them, an
Xid is still seen at the next main-loop pass, together with the GPU state it came with.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Any, Callable

from rasd.backends.errors import EventsFailed
from rasd.backends.nvml import NvmlAdapter
from rasd.model import XidEvent
from rasd.telemetry.kmsg import XidLine, parse_xid_line, pci_key

log = logging.getLogger("rasd.xid")

MESSAGE_WAIT_SECONDS = 0.2  # the driver logs the line about when it signals the event
SYNC_SECONDS = 0.3  # longest the main loop waits for a poll (one Xid's message wait, and some)


class XidWatcher:
    def __init__(
        self,
        adapter: NvmlAdapter,
        kernel_log: Any | None,
        wait_ms: int = 500,
        wall: Callable[[], float] = time.time,
    ):
        self.adapter = adapter
        self.kernel_log = kernel_log
        self.wait_ms = wait_ms
        self.wall = wall
        self.events: queue.SimpleQueue[XidEvent] = queue.SimpleQueue()
        self._lines: collections.deque[XidLine] = collections.deque(maxlen=256)
        self._stop = threading.Event()
        self._poke = threading.Event()  # poll now
        self._polls = threading.Condition()
        self._started = 0  # polls begun, and the last one finished (guarded by _polls)
        self._done = 0
        self._thread: threading.Thread | None = None
        self._pci = {}
        for g in adapter.gpus():
            try:
                key = pci_key(g.identity().pci_bus_id)
            except Exception:  # noqa: BLE001 - a lost GPU has no identity to read
                key = None
            if key is not None:
                self._pci[g.index] = key
        self.failures = 0
        self.total = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rasd-xid", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()

    def sync(self, timeout: float = SYNC_SECONDS) -> bool:
        """Have the thread poll now and wait until that poll has queued what it found (at most
        ``timeout`` seconds); then every Xid NVML reported before this call is in ``drain()``.
        False where the poll did not finish in time (or the thread is not running)."""
        t = self._thread
        if t is None or not t.is_alive():
            return False
        with self._polls:
            need = self._started + 1  # a poll already under way may have asked before this call
            self._poke.set()
            return self._polls.wait_for(lambda: self._done >= need, timeout)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self) -> list[XidEvent]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        try:
            es = self.adapter.xid_event_set()
        except EventsFailed as e:
            log.error("event=xid_events_unavailable error=%r", str(e))
            return
        try:
            while not self._stop.is_set():
                self._poke.clear()  # a poke from here on asks for another poll
                with self._polls:
                    self._started += 1
                    n = self._started
                try:
                    self._poll(es)
                except EventsFailed as e:
                    self.failures += 1
                    if self.failures == 1:
                        log.warning("event=xid_wait_failed error=%r", str(e))
                with self._polls:
                    self._done = n
                    self._polls.notify_all()
                self._poke.wait(self.wait_ms / 1000.0)
        finally:
            es.close()

    def _poll(self, es: Any) -> None:
        """Every event pending now, without blocking in the library. Raises EventsFailed."""
        while not self._stop.is_set():
            got = es.wait(0)
            self._read_log()
            if got is None:
                return
            gpu, code = got
            self.total += 1
            msg = self._message(gpu, code)
            log.warning("event=xid gpu=%d xid=%d message=%r", gpu, code, msg)
            self.events.put(XidEvent(self.wall(), gpu, code, msg))

    def _read_log(self) -> None:
        if self.kernel_log is None:
            return
        for line in self.kernel_log.read_new():
            x = parse_xid_line(line)
            if x is not None:
                self._lines.append(x)

    def _message(self, gpu: int, code: int) -> str | None:
        if self.kernel_log is None:
            return None
        key = self._pci.get(gpu)
        deadline = time.monotonic() + MESSAGE_WAIT_SECONDS
        while True:
            for i, x in enumerate(self._lines):
                if x.xid == code and (key is None or x.pci == key):
                    del self._lines[i]
                    return x.message
            if time.monotonic() >= deadline or self._stop.is_set():
                return None
            time.sleep(0.02)
            self._read_log()
