"""How the actuator runs a command: without a shell, with a timeout that ends the command's whole
process group, keeping the tail of its output (``subprocess_runner``); and a recording runner for
tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class RunOutcome:
    result: str  # ok, failed, timeout, error
    exit_code: int | None
    output_tail: str
    seconds: float


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome: ...


KILL_GRACE_SECONDS = 2.0  # after SIGTERM to a timed-out action's group, before SIGKILL


def subprocess_runner(argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome:
    """Run without a shell; stdout and stderr together, last ``tail_bytes`` kept.

    The command runs in its own session (so its own process group): a timeout ends the whole
    group, children included (SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``), not only the
    direct child whose orphans would keep running and keep the output pipe open."""
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        return RunOutcome("error", None, f"cannot run {argv[0]!r}: {e.strerror}",
                          time.monotonic() - t0)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        partial = e.output or b""
        _end_group(p)
        try:
            rest, _ = p.communicate(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            rest = b""
        return RunOutcome("timeout", None, _tail(partial + (rest or b""), tail_bytes), time.monotonic() - t0)
    return RunOutcome("ok" if p.returncode == 0 else "failed", p.returncode,
                      _tail(out, tail_bytes), time.monotonic() - t0)


def _end_group(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM the action's process group, SIGKILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(p.pid, sig)  # the session leader's pid is the group id
        except ProcessLookupError:
            return
        except PermissionError:
            p.kill()
            return
        if wait is None:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if p.poll() is not None and not _group_alive(p.pid):
                return
            time.sleep(0.05)
    p.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(data: bytes, n: int) -> str:
    return data[-n:].decode("utf-8", "replace") if n else ""


class RecordingRunner:
    """A runner for tests: records every argv, answers with a scripted exit code per program."""

    def __init__(self, exit_codes: Mapping[str, int] | None = None, seconds: float = 0.0):
        self.calls: list[tuple[str, ...]] = []
        self.exit_codes = dict(exit_codes or {})
        self.seconds = seconds
        self._lock = threading.Lock()

    def __call__(self, argv: Sequence[str], timeout: float, tail_bytes: int) -> RunOutcome:
        with self._lock:
            self.calls.append(tuple(argv))
        if self.seconds:
            time.sleep(self.seconds)
        code = self.exit_codes.get(argv[0], 0)
        return RunOutcome("ok" if code == 0 else "failed", code, f"{argv[0]} exit {code}",
                          self.seconds)
