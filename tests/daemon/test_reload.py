"""Daemon.reload (SIGHUP): each service gets its own section of the new config; one that fails
does not keep the others on the old one."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from rasd import config
from rasd.daemon import Daemon, with_listen

BASE = """
[daemon]
state_path = "{tmp}/rasd.db"
control_socket = "{tmp}/c.sock"

[telemetry]
kernel_log = ""
"""


@pytest.fixture
def daemon(fake, tmp_path: Path):
    path = tmp_path / "rasd.toml"
    path.write_text(BASE.format(tmp=tmp_path))
    d = Daemon(config.load(path), fake(), config_path=str(path), hostname="node-r")
    yield d, path
    d.stop()


def test_each_service_gets_its_section(daemon):
    d, path = daemon
    path.write_text(path.read_text() + "\n[power]\nwindow_seconds = 12.0\n\n[sdc]\nperiodic = false\n")
    d.reload()
    assert d.power.settings.window_seconds == 12.0 and d.cfg.power.window_seconds == 12.0
    assert d.sdc.settings.periodic is False


def test_a_failing_service_does_not_stop_the_others(daemon, monkeypatch, caplog):
    d, path = daemon

    def broken(settings):
        raise RuntimeError("cannot apply")

    monkeypatch.setattr(d.ladder, "reconfigure", broken)
    path.write_text(path.read_text() + "\n[power]\nwindow_seconds = 12.0\n")
    with caplog.at_level(logging.ERROR, logger="rasd.daemon"):
        d.reload()
    assert d.power.settings.window_seconds == 12.0  # reloaded after the ladder failed
    assert any("event=reload_failed service=ladder" in r.getMessage() for r in caplog.records)


def test_an_invalid_file_keeps_every_service_as_it_was(daemon):
    d, path = daemon
    before = d.power.settings
    path.write_text(path.read_text() + "\n[power]\nwindow_seconds = \"long\"\n")
    d.reload()
    assert d.power.settings is before


def test_settings_a_reload_cannot_apply_are_named_once(daemon, caplog):
    # [actions] is read at start (the actuator's enforce must stay the scheduler gate's): a
    # reload that changes it, or the listen address, says which keys wait for a restart
    d, path = daemon
    path.write_text(path.read_text().replace("[daemon]\n", '[daemon]\nlisten = "127.0.0.1:19999"\n')
                    + "\n[actions]\nenforce = true\n\n[power]\nwindow_seconds = 12.0\n")
    with caplog.at_level(logging.WARNING, logger="rasd.daemon"):
        d.reload()
    lines = [r.getMessage() for r in caplog.records if "event=reload_partial" in r.getMessage()]
    assert len(lines) == 1 and "changed=daemon.listen,actions.enforce " in lines[0], lines
    assert d.power.settings.window_seconds == 12.0  # the rest applied
    assert d.cfg.actions.enforce is False and d.cfg.power.window_seconds == 12.0  # what runs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rasd.daemon"):
        d.reload()  # still not what runs: said again
    lines = [r.getMessage() for r in caplog.records if "event=reload_partial" in r.getMessage()]
    assert len(lines) == 1 and "changed=daemon.listen,actions.enforce " in lines[0], lines


def test_what_the_command_line_set_stays_over_reloads(fake, tmp_path: Path, caplog):
    # `rasd run --listen X --log-level debug --config f`: an unchanged file names nothing, and
    # the log level stays the command line's
    path = tmp_path / "rasd.toml"
    path.write_text(BASE.format(tmp=tmp_path))
    cfg = with_listen(config.load(path), "127.0.0.1:19998")
    cfg = replace(cfg, daemon=replace(cfg.daemon, log_level="debug"))
    d = Daemon(cfg, fake(), config_path=str(path), hostname="node-r")
    try:
        with caplog.at_level(logging.WARNING, logger="rasd.daemon"):
            d.reload()
            d.reload()
        assert not [r for r in caplog.records if "event=reload_partial" in r.getMessage()]
        assert d.cfg.daemon.listen == "127.0.0.1:19998" and d.cfg.daemon.log_level == "debug"
        assert logging.getLogger().level == logging.DEBUG
    finally:
        d.stop()


def test_the_ladder_and_the_schedulers_kind_wait_for_a_restart(daemon, caplog):
    d, path = daemon
    before = d.cfg.ladder
    path.write_text(path.read_text() + "\n[ladder]\ncure_window_seconds = 7200.0\n\n"
                    '[scheduler]\nkind = "slurm"\n')
    with caplog.at_level(logging.WARNING):
        d.reload()
    lines = [r.getMessage() for r in caplog.records if "event=reload_partial" in r.getMessage()]
    assert len(lines) == 1 and "ladder.cure_window_seconds" in lines[0] and "scheduler.kind" in lines[0], lines
    assert d.cfg.ladder == before == d.ladder.settings  # what runs
    assert d.cfg.scheduler.kind == "none"
