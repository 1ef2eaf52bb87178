"""The control surface under misuse: one daemon per state, the configured socket and state paths,
a user without the control group, the daemon's view in status/history/ladder, closed pipes."""

from __future__ import annotations

import fcntl  # noqa: F401 - see below: needed by the unprivileged child
import grp  # noqa: F401
import json
import os
import pwd
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import rasd.control  # noqa: F401 - imported before the unprivileged child cannot read the interpreter's files
import rasd.instance  # noqa: F401
from rasd.cli import main
from tests.e2e.helpers import free_port, rasd_daemon


def _config(tmp: Path, name: str = "rasd.toml", **daemon: str) -> str:
    lines = ["[daemon]"] + [f'{k} = "{v}"' for k, v in daemon.items()]
    lines += ["[sdc]", "periodic = false"]
    p = tmp / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def _rasd(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "rasd", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    # The socket's directory must be reachable by other users for the permission test.
    run = Path(tempfile.mkdtemp(prefix="rasd-ctl-"))
    run.chmod(0o755)
    return {"control_socket": str(run / "c.sock"), "state_path": str(tmp_path / "state" / "rasd.db")}


def test_second_daemon_on_the_same_state_is_refused_naming_the_first(tmp_path: Path, paths) -> None:
    cfg = _config(tmp_path, **paths)
    with rasd_daemon(tmp_path, config=cfg) as (proc, _url):
        other = dict(paths, control_socket=paths["control_socket"] + "2")
        r = _rasd("run", "--backend", "fake", "--listen", f"127.0.0.1:{free_port()}", "--config", _config(tmp_path, "b.toml", **other),
                  env={"XDG_RUNTIME_DIR": str(tmp_path / "run")}, timeout=60)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and paths["state_path"] in lines[0], r.stderr
        assert proc.poll() is None  # the first one runs on


def test_commands_use_the_configured_socket(tmp_path: Path, paths) -> None:
    cfg = _config(tmp_path, **paths)
    with rasd_daemon(tmp_path, config=cfg):
        r = _rasd("status", "--backend", "fake", "--config", cfg)
        assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: a GPU not polled yet reads stale
        assert "the daemon's last health poll" in r.stdout.splitlines()[0]
        assert len(r.stdout.splitlines()) == 2 + 8
        r = _rasd("validate", "--backend", "fake", "--config", cfg, "--gpu", "1", "--json")
        assert r.returncode in (0, 1, 3), r.stderr
        assert [g["gpu"] for g in json.loads(r.stdout)["gpus"]] == [1]
        with sqlite3.connect(paths["state_path"]) as db:  # the daemon ran it and stored its results
            assert db.execute("select count(*) from sdc_results where gpu = 1").fetchone()[0] > 0
        r = _rasd("accuse", "--backend", "fake", "--config", cfg, "--gpu", "0", "--reason", "loss spike")
        assert r.returncode == 0, r.stderr
        assert "the daemon is running a deep check" in r.stdout  # not a standalone "cleared"
        r = _rasd("history", "--backend", "fake", "--config", cfg)
        assert r.returncode == 0 and paths["state_path"] in r.stderr and "daemon" in r.stderr, r.stderr
        r = _rasd("ladder", "--backend", "fake", "--config", cfg, "--json")
        assert r.returncode == 0, r.stderr
        assert "suspect" in json.loads(r.stdout) and paths["state_path"] in r.stderr


def test_no_standalone_run_beside_a_daemon_that_does_not_answer(tmp_path: Path, paths) -> None:
    cfg = _config(tmp_path, **paths)
    with rasd_daemon(tmp_path, config=cfg) as (proc, _url):
        wrong = _config(tmp_path, "wrong.toml", state_path=paths["state_path"],
                        control_socket=paths["control_socket"] + ".elsewhere")
        for args in (["accuse", "--gpu", "0", "--reason", "x"], ["validate"]):
            r = _rasd(*args, "--backend", "fake", "--config", wrong)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert f"pid {proc.pid}" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with sqlite3.connect(paths["state_path"]) as db:
        assert db.execute("select count(*) from accusations").fetchone()[0] == 0


def _as_nobody(fn) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Run ``fn`` in a forked child as the unprivileged user nobody; (exit code, output)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code, out = 99, ""
        try:
            os.close(r)
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code, out = fn()
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            out = f"child failed: {e!r}"
        finally:
            os.write(w, json.dumps([code, out]).encode())
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    code, out = json.loads(data)
    return code, out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_accuse_without_the_control_group_names_it_and_runs_nothing(tmp_path: Path, paths) -> None:
    # the config where the unprivileged client can read it: beside the socket
    cfg = _config(Path(paths["control_socket"]).parent, control_group="daemon", **paths)
    os.chmod(cfg, 0o644)
    with rasd_daemon(tmp_path, config=cfg):
        def accuse() -> tuple[int, str]:
            res = CliRunner().invoke(main, ["accuse", "--backend", "fake", "--config", cfg, "--gpu", "0",
                                            "--reason", "nan"])
            return res.exit_code, res.output

        code, out = _as_nobody(accuse)
    assert code == 2, out
    assert "'daemon'" in out and "group" in out and len(out.strip().splitlines()) == 1, out
    with sqlite3.connect(paths["state_path"]) as db:
        assert db.execute("select count(*) from accusations").fetchone()[0] == 0


def test_a_closed_pipe_is_not_an_error() -> None:
    p = subprocess.Popen([sys.executable, "-m", "rasd", "status", "--backend", "fake", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head -1` that has already exited
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert err == b""


def test_status_without_a_daemon_says_it_polled(tmp_path: Path, paths) -> None:
    r = _rasd("status", "--backend", "fake", "--config", _config(tmp_path, **paths))
    assert r.returncode == 0, r.stderr
    assert "one-shot poll" in r.stdout.splitlines()[0]


def test_history_without_a_daemon_says_which_store(tmp_path: Path, paths) -> None:
    cfg = _config(tmp_path, **paths)
    Path(paths["state_path"]).parent.mkdir(parents=True)
    from rasd.store import Store

    Store(paths["state_path"]).close()
    r = _rasd("history", "--backend", "fake", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert paths["state_path"] in r.stderr and "no daemon" in r.stderr
