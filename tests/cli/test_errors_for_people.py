"""Bad input gets one line and exit 2, never "internal error": configs, state paths, scenarios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port


def _rasd(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "xs"), XDG_RUNTIME_DIR=str(tmp / "xr"))
    return subprocess.run([sys.executable, "-m", "rasd", *args], capture_output=True, text=True, timeout=60, env=env)


def _one_line(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return _rasd("run", "--backend", "fake", "--listen", f"127.0.0.1:{free_port()}", *args, tmp=tmp)


def test_config_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "rasd.toml"
    cfg.write_bytes(b"[daemon]\n# caf\xe9\n")
    _one_line(_rasd("status", "--backend", "fake", "--config", str(cfg), tmp=tmp_path), "UTF-8", str(cfg))
    _one_line(_run(tmp_path, "--config", str(cfg)), "UTF-8")


def _state_config(tmp: Path, state: str) -> str:
    p = tmp / "state.toml"
    p.write_text(f'[daemon]\nstate_path = "{state}"\ncontrol_socket = "{tmp}/c.sock"\n')
    return str(p)


def test_state_path_that_is_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "statedir"
    d.mkdir()
    _one_line(_run(tmp_path, "--config", _state_config(tmp_path, str(d))), "directory", str(d))


def test_state_path_that_is_not_a_database(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("these are my notes, not a database\n" * 100)
    _one_line(_run(tmp_path, "--config", _state_config(tmp_path, str(f))), str(f))
    assert f.read_text().startswith("these are my notes")  # nothing stored was lost


def test_state_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line(_run(tmp_path, "--config", _state_config(tmp_path, str(blocker / "sub" / "rasd.db"))), "state_path")


def test_unknown_control_group_stops_the_daemon_start(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[daemon]\ncontrol_group = "no-such-rasd-group"\n')
    _one_line(_run(tmp_path, "--config", str(cfg)), "no-such-rasd-group")


def test_socket_path_too_long(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[daemon]\ncontrol_socket = "{tmp_path}/{"s" * 120}.sock"\n')
    _one_line(_run(tmp_path, "--config", str(cfg)), "shorter path")


SCENARIOS = {
    "gpu_lacking": ('[[event]]\nkind = "xid"\nat = 1\ngpu = 12\nxid = 79\n', "GPU 12"),
    "link_lacking": ('[[event]]\nkind = "nvlink_down"\nat = 1\ngpu = 0\nlink = 40\n', "link"),
    "unknown_error_function": ('[[event]]\nkind = "nvml_error"\nat = 1\ngpu = 0\nfunction = "nvmlDeviceGetBogus"\n'
                               'error = "unknown"\n', "nvmlDeviceGetBogus"),
    "unknown_hang_function": ('[[event]]\nkind = "nvml_hang"\nat = 1\ngpu = 0\nfunction = "nvmlNope"\nseconds = 3\n',
                              "nvmlNope"),
}


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_bad_scenarios(tmp_path: Path, case: str) -> None:
    text, word = SCENARIOS[case]
    p = tmp_path / f"{case}.toml"
    p.write_text(text)
    _one_line(_rasd("status", "--backend", "fake", "--scenario", str(p), tmp=tmp_path), word, str(p))


def test_scenario_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'description = "caf\xe9"\n')
    _one_line(_rasd("status", "--backend", "fake", "--scenario", str(p), tmp=tmp_path), "UTF-8", str(p))


def test_scenario_with_the_nvml_backend(tmp_path: Path) -> None:
    _one_line(_rasd("status", "--backend", "nvml", "--scenario", "healthy", tmp=tmp_path), "--backend fake")
