"""systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=...) via the sdnotify package.

A no-op outside systemd (no NOTIFY_SOCKET)."""

from __future__ import annotations

import os
from typing import Any

from rasd.model import Health, Rung
from rasd.snapshot import Snapshot


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n: Any = None
        if self.enabled:
            import sdnotify

            self._n = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() else None
        self._last_status = ""
        self._ready_sent = False

    def send(self, text: str) -> None:
        if self._n is not None:
            self._n.notify(text)

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def publish(self, snap: Snapshot, watchdog: bool) -> None:
        """After each snapshot: READY once, the watchdog ping (``watchdog``: [daemon] watchdog),
        and a one-line STATUS for ``systemctl status``."""
        up = sum(1 for g in snap.gpus if g.health is Health.UP)
        lost = sum(1 for g in snap.gpus if g.health is Health.LOST)
        # ready once every GPU has answered or is known lost: a node of lost GPUs still serves
        if not self._ready_sent and (up > 0 or (snap.gpus and lost == len(snap.gpus))):
            self._ready_sent = True
            self.send("READY=1")
        if watchdog and self.watchdog_seconds:
            self.send("WATCHDOG=1")
        stale = sum(1 for g in snap.gpus if g.health is Health.STALE)
        watts = sum(g.power_watts or 0.0 for g in snap.gpus)
        text = f"{up}/{len(snap.gpus)} GPUs up, {lost} lost, {stale} stale; {watts / 1000:.2f} kW"
        if snap.ladder is not None and snap.ladder.node_rung > Rung.NONE:
            text += f"; ladder: {snap.ladder.node_rung.label}"
        self.status(text)
