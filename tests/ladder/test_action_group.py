"""An enforced action that times out is ended with its whole process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rasd.ladder.runner import subprocess_runner


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent, the shell, was killed and init reaps it)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_timeout_ends_the_children_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the action starts a long child and waits on it, like a drain script calling scontrol
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    t0 = time.monotonic()
    out = subprocess_runner(["sh", "-c", script], timeout=0.5, tail_bytes=200)
    took = time.monotonic() - t0
    assert out.result == "timeout"
    assert "started" in out.output_tail
    assert took < 5.0  # not held until the orphan closes the output pipe (60 s)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3.0
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the action's child outlived its timeout"


def test_a_quick_action_reports_its_exit_code_and_output() -> None:
    out = subprocess_runner(["sh", "-c", "echo drained; exit 3"], timeout=5.0, tail_bytes=100)
    assert (out.result, out.exit_code) == ("failed", 3)
    assert out.output_tail.strip() == "drained"


def test_a_missing_program_is_an_error_line() -> None:
    out = subprocess_runner(["/nonexistent/rasd-drain"], timeout=5.0, tail_bytes=100)
    assert out.result == "error" and "cannot run" in out.output_tail
