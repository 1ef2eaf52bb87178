"""One daemon per state: an exclusive lock beside the SQLite store, held for the daemon's life.

Two daemons on one store would both poll, both decide and both act on the same GPUs, and their
histories would interleave. ``flock`` is released by the kernel when the holder dies (kill -9
included), so a stale lock never blocks a restart. The file also says who holds it (the pid),
for the refusal message.
"""

from __future__ import annotations

import errno
import fcntl
import os

from rasd.paths import parent_dir


class AlreadyRunning(RuntimeError):
    """Another daemon holds the lock; ``str()`` names it and says what to do."""


class LockUnavailable(RuntimeError):
    """The lock file cannot be created (a configuration problem); ``str()`` says which."""


def lock_path(state_path: str) -> str:
    return state_path + ".lock"


class InstanceLock:
    def __init__(self, state_path: str):
        self.state_path = state_path
        self.path = lock_path(state_path)
        self._fd: int | None = None

    def acquire(self) -> "InstanceLock":
        try:
            os.makedirs(parent_dir(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise LockUnavailable(f"cannot create the lock file {self.path} ({e.strerror}); "
                                  "set daemon.state_path to a writable place") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise LockUnavailable(f"cannot lock {self.path} ({e.strerror})") from None
            who = f"pid {holder}" if holder else "another process"
            raise AlreadyRunning(
                f"another rasd daemon ({who}) already runs on the state {self.state_path}; "
                "stop it first, or give this one its own daemon.state_path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing drops the flock


def holder_pid(state_path: str) -> int | None:
    """The pid of the daemon holding the lock on ``state_path``, or None when none does."""
    try:
        fd = os.open(lock_path(state_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
