"""For tests that build a whole daemon: its configuration with the state and the control socket
in the test's own directory, and no kernel log (the fake node brings its own)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rasd import config


def daemon_config(tmp_path: Path) -> config.Config:
    cfg = config.Config.default()
    return replace(
        cfg,
        daemon=replace(cfg.daemon, state_path=str(tmp_path / "rasd.db"), control_socket=str(tmp_path / "c.sock")),
        telemetry=replace(cfg.telemetry, kernel_log=""),
    )
