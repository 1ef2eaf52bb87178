"""The Xid event thread: blocks in nvmlEventSetWait and queues XidEvents with driver messages."""

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
                try:
                    got = es.wait(self.wait_ms)
                except EventsFailed as e:
                    self.failures += 1
                    if self.failures == 1:
                        log.warning("event=xid_wait_failed error=%r", str(e))
                    self._stop.wait(self.wait_ms / 1000.0)
                    continue
                self._read_log()
                if got is None:
                    continue
                gpu, code = got
                self.total += 1
                msg = self._message(gpu, code)
                log.warning("event=xid gpu=%d xid=%d message=%r", gpu, code, msg)
                self.events.put(XidEvent(self.wall(), gpu, code, msg))
        finally:
            es.close()

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
