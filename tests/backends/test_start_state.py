"""Faults already present when rasd starts are judged once, and not again after a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rasd import config
from rasd.daemon import Daemon
from rasd.store import Store

ALREADY_BAD = """
    [[event]]
    kind = "ecc"
    at = 0
    gpu = 3
    type = "uncorrected"
    count = 2

    [[event]]
    kind = "row_remap"
    at = 0
    gpu = 5
    pending = true
    """


def _cfg(tmp: Path) -> config.Config:
    cfg = config.Config.default()
    return replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp / "rasd.db"), control_socket=str(tmp / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
        # as if the restart came long after: the ladder's own repeat window has passed
        ladder=replace(cfg.ladder, decision_window_seconds=0.001),
    )


def _run_once(fake, tmp: Path) -> None:
    d = Daemon(_cfg(tmp), fake(ALREADY_BAD), hostname="node-a")
    try:
        for _ in range(2):
            for p in d.pollers:
                p.poll_once()
            d.tick()
    finally:
        d.stop()


def _decisions(tmp: Path) -> list[tuple[int, str]]:
    store = Store(str(tmp / "rasd.db"))
    try:
        return sorted((int(d.body["gpu"]), str(d.body["fault"])) for d in store.decisions())
    finally:
        store.close()


def _close_all(tmp: Path) -> None:
    """As if the operator handled them (or they expired) before rasd restarted."""
    store = Store(str(tmp / "rasd.db"))
    try:
        for d in store.decisions(open_only=True):
            b = d.body
            store.close_decision(b["time"], b["gpu"], b.get("link"), b["fault"], "cleared", b["time"] + 1)
    finally:
        store.close()


def test_faults_present_at_start_are_judged_once_across_restarts(fake, tmp_path: Path) -> None:
    _run_once(fake, tmp_path)
    first = _decisions(tmp_path)
    assert (3, "ecc_uncorrected") in first  # the counter was already 2 at the first poll
    assert any(gpu == 5 for gpu, _ in first)  # remap pending at the first poll
    _close_all(tmp_path)
    _run_once(fake, tmp_path)  # a restart sees the same state: judged already, no new decision
    assert _decisions(tmp_path) == first
