"""`rasd status` and `rasd run`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from rasd.cli import main


def test_status_table_and_json():
    r = CliRunner().invoke(main, ["status", "--backend", "fake"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1].split()[:3] == ["GPU", "NAME", "HEALTH"]
    assert len(lines) == 2 + 8 and all(" up " in ln for ln in lines[2:])
    r = CliRunner().invoke(main, ["status", "--backend", "fake", "--json"])
    data = json.loads(r.output)
    assert [g["gpu"] for g in data["gpus"]] == list(range(8))
    g = data["gpus"][0]
    assert g["nvlinks_total"] == 18 and g["health"] == "up" and 0 < g["power_watts"] <= 700


def test_no_backend_without_a_gpu_is_one_line():
    r = subprocess.run([sys.executable, "-m", "rasd", "status"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--backend fake" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_bad_scenario_is_one_line_exit_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[[event]]\nkind = "xid"\nat = 1\ngpu = 0\n')
    r = CliRunner().invoke(main, ["status", "--backend", "fake", "--scenario", str(p)])
    assert r.exit_code == 2
    assert str(p) in r.output and "xid" in r.output and len(r.output.strip().splitlines()) == 1


def test_run_rejects_bad_config_listing_every_problem(tmp_path):
    p = tmp_path / "rasd.toml"
    p.write_text('[daemon]\nlisten = "x"\ncolour = "red"\n')
    r = CliRunner().invoke(main, ["run", "--backend", "fake", "--config", str(p)])
    assert r.exit_code == 2
    assert "daemon.listen" in r.output and "daemon.colour" in r.output
    r = CliRunner().invoke(main, ["run", "--backend", "fake", "--listen", "nohost"])
    assert r.exit_code == 2 and "HOST:PORT" in r.output


def test_run_on_a_taken_port_is_one_line(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        env = {"XDG_STATE_HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
        import os

        r = subprocess.run(
            [sys.executable, "-m", "rasd", "run", "--backend", "fake", "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )
    finally:
        s.close()
    assert r.returncode == 2
    assert "--listen" in r.stderr and "Traceback" not in r.stderr
