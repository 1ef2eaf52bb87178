"""``rasd ladder close``: through a running daemon (its ladder and store change together), on the
store itself when none runs, and one-line refusals that change nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.instance import InstanceLock
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from tests.e2e.helpers import rasd_daemon

H = 3600.0
REASON = "board replaced (serial 1654922006551)"


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    run = Path(tempfile.mkdtemp(prefix="rasd-close-"))  # short: a socket path has 107 bytes
    return {"control_socket": str(run / "c.sock"), "state_path": str(tmp_path / "state" / "rasd.db")}


def _config(tmp: Path, paths: dict[str, str]) -> str:
    p = tmp / "rasd.toml"
    p.write_text("[daemon]\n" + "".join(f'{k} = "{v}"\n' for k, v in paths.items())
                 + "[sdc]\nperiodic = false\n")
    return str(p)


def _with_rma(state: str, gpu: int = 3) -> float:
    """A store whose ladder holds an RMA on ``gpu`` (Xid 79 five times within the last day) and
    a GPU reset on GPU 1; returns the time of the last Xid."""
    os.makedirs(os.path.dirname(state), exist_ok=True)
    base = time.time() - 17 * H
    svc = LadderService(LadderSettings(), ActionSettings(), Store(state), "n", now_wall=base)
    t = base
    for k in range(5):
        t = base + k * 4 * H
        svc.ingest([FaultEvent(t, gpu, FaultKind.XID, None, {"xid": 79})], t)
    svc.ingest([FaultEvent(t, 1, FaultKind.XID, None, {"xid": 62})], t)
    assert [d.rung for d in svc.decisions_for(gpu)] == [Rung.RMA]
    svc.close()
    svc.store.close()
    return t


def _rows(state: str) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    with sqlite3.connect(state) as c:
        return (c.execute("select * from faults order by id").fetchall(),
                c.execute("select * from decisions order by id").fetchall())


def _rasd(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "rasd", *args], capture_output=True, text=True,
                          timeout=120)


def _states(state: str, gpu: int) -> list[tuple[str, str]]:
    store = Store(state)
    try:
        return [(r.body["rung"], r.state) for r in store.decisions(gpu=gpu)]
    finally:
        store.close()


def test_close_through_a_running_daemon(tmp_path: Path, paths: dict[str, str]) -> None:
    cfg = _config(tmp_path, paths)
    _with_rma(paths["state_path"])
    with rasd_daemon(tmp_path, config=cfg):
        r = _rasd("ladder", "close", "--backend", "fake", "--config", cfg, "--gpu", "3",
                  "--reason", REASON, "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["via"] == "daemon" and [d["rung"] for d in out["closed"]] == ["rma"]
        assert _states(paths["state_path"], 3)[-1] == ("rma", "closed_by_operator")
        # the daemon's own ladder changed with the store: nothing is open on GPU 3 there
        r = _rasd("ladder", "close", "--backend", "fake", "--config", cfg, "--gpu", "3",
                  "--reason", REASON)
        assert r.returncode == 2 and "nothing open for GPU 3" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        # a GPU the daemon does not poll
        r = _rasd("ladder", "close", "--backend", "fake", "--config", cfg, "--gpu", "12",
                  "--reason", REASON)
        assert r.returncode == 2 and "no GPU 12" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        r = _rasd("history", "--backend", "fake", "--config", cfg, "--gpu", "3", "--json")
        assert r.returncode == 0, r.stderr
        rma = [d for d in json.loads(r.stdout)["decisions"] if d["rung"] == "rma"]
        assert [(d["state"], d["close_reason"]) for d in rma] == [("closed_by_operator", REASON)]
        assert rma[0]["closed_by"]
    # rebuilt as the daemon rebuilds it at start: not restored, GPU 3 no longer excluded, the
    # GPU reset on GPU 1 still open
    r = _rasd("ladder", "--backend", "fake", "--config", cfg, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["excluded"] == [] and st["rma_queue"] == []
    assert _states(paths["state_path"], 1) == [("reset_gpu", "open")]
    with sqlite3.connect(paths["state_path"]) as c:  # the close came from the daemon's ladder:
        (details,) = c.execute("select details from faults where kind='remedy'").fetchone()
    assert json.loads(details)["uuid"]  # the board in the slot, as the daemon polls it


def test_close_without_a_daemon_changes_the_store_and_history_shows_it(
        tmp_path: Path, paths: dict[str, str]) -> None:
    cfg = _config(tmp_path, paths)
    _with_rma(paths["state_path"])
    r = CliRunner().invoke(main, ["ladder", "close", "--backend", "fake", "--config", cfg,
                                  "--gpu", "3", "--reason", REASON])
    assert r.exit_code == 0, r.output
    assert "closed 1 decision on GPU 3" in r.output and "no daemon answered" in r.output
    assert _states(paths["state_path"], 3)[-1] == ("rma", "closed_by_operator")
    r = CliRunner().invoke(main, ["history", "--backend", "fake", "--config", cfg, "--gpu", "3"])
    assert r.exit_code == 0, r.output
    line = [x for x in r.output.splitlines() if "rma" in x and "closed_by_operator" in x]
    assert len(line) == 1 and REASON in line[0] and "(by " in line[0]
    # the lock is free again: a daemon may start
    InstanceLock(paths["state_path"]).acquire().release()


@pytest.mark.parametrize("args, words", [
    (["--gpu", "3", "--reason", " "], "--reason is empty"),
    (["--gpu", "-1", "--reason", REASON], "--gpu -1 is negative"),
    (["--gpu", "3", "--link", "-2", "--reason", REASON], "--link -2 is negative"),
    (["--gpu", "5", "--reason", REASON], "nothing open for GPU 5"),
    (["--gpu", "3", "--link", "4", "--reason", REASON], "nothing open on link 4"),
    (["--gpu", "9", "--reason", REASON], "no GPU 9 on this node"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
        tmp_path: Path, paths: dict[str, str], args: list[str], words: str) -> None:
    cfg = _config(tmp_path, paths)
    _with_rma(paths["state_path"])
    before = _rows(paths["state_path"])
    r = CliRunner().invoke(main, ["ladder", "close", "--backend", "fake", "--config", cfg, *args])
    assert r.exit_code == 2, r.output
    assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert _rows(paths["state_path"]) == before


def test_a_daemon_that_does_not_answer_is_never_bypassed(tmp_path: Path,
                                                        paths: dict[str, str]) -> None:
    """A daemon holds the store (its lock) but its socket is not where the config says: the
    close is refused, naming it, and the store is left to it."""
    cfg = _config(tmp_path, paths)
    _with_rma(paths["state_path"])
    before = _rows(paths["state_path"])
    lock = InstanceLock(paths["state_path"]).acquire()
    try:
        r = CliRunner().invoke(main, ["ladder", "close", "--backend", "fake", "--config", cfg,
                                      "--gpu", "3", "--reason", REASON])
    finally:
        lock.release()
    assert r.exit_code == 2 and f"pid {os.getpid()}" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert _rows(paths["state_path"]) == before


def test_no_store_at_all_is_one_line(tmp_path: Path, paths: dict[str, str]) -> None:
    cfg = _config(tmp_path, paths)
    r = CliRunner().invoke(main, ["ladder", "close", "--backend", "fake", "--config", cfg,
                                  "--gpu", "3", "--reason", REASON])
    assert r.exit_code == 2 and "no rasd history at" in r.output, r.output
    assert not os.path.exists(paths["state_path"])
