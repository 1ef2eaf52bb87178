"""Whether the daemon's polls are fresh: the answer behind ``/healthz``.

Fresh means the main loop published a snapshot within a few health intervals and not every GPU's
poll is hung. A liveness probe (Kubernetes, a load balancer) restarts or routes around a daemon
that answers 503; the body says why, in one line.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from rasd.model import Health
from rasd.snapshot import Snapshot

STALE_AFTER_INTERVALS = 3.0
MIN_STALE_SECONDS = 5.0  # short intervals still get a margin for a slow tick


class Freshness:
    def __init__(self, interval: Callable[[], float], clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._at: float | None = None

    def mark(self, snap: Snapshot) -> None:
        """The main loop published ``snap`` now."""
        with self._lock:
            self._snapshot, self._at = snap, self._clock()

    def check(self) -> tuple[bool, str]:
        """(healthy, one line saying why)."""
        with self._lock:
            snap, at = self._snapshot, self._at
        if snap is None or at is None:
            return False, "no health poll yet: rasd is starting"
        interval = self._interval()
        age = self._clock() - at
        limit = max(STALE_AFTER_INTERVALS * interval, MIN_STALE_SECONDS)
        if age > limit:
            return False, (f"last health poll {age:.1f} s ago (expected every {interval:g} s): "
                           "the main loop is stalled")
        n = len(snap.gpus)
        stale = sum(1 for g in snap.gpus if g.health is Health.STALE)
        if n and stale == n:
            return False, f"all {n} GPUs' polls overran their deadline: NVML calls hang"
        up = sum(1 for g in snap.gpus if g.health is Health.UP)
        return True, f"ok: last health poll {age:.1f} s ago, {up}/{n} GPUs up"
