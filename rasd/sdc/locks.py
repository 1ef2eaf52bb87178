"""One check at a time per GPU: a lock per GPU, in this process and across processes.

The in-process lock serialises the daemon's own threads; an ``flock`` on a per-GPU file in
the runtime directory keeps a standalone ``rasd validate`` from running beside the daemon's
checks when the control socket cannot be used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import Iterator, Sequence


class GpuBusy(RuntimeError):
    """Another check holds the GPU; the message names it."""


class GpuLocks:
    def __init__(self, directory: str | None = None):
        self._dir = directory or None  # a str, not pathlib's: see rasd.paths
        self._locks: dict[int, threading.Lock] = {}
        self._files: dict[int, int] = {}
        self._guard = threading.Lock()

    @property
    def directory(self) -> str | None:
        """Where the per-GPU lock files are (None: this process's locks only)."""
        return self._dir

    def _lock(self, gpu: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(gpu, threading.Lock())

    def try_acquire(self, gpu: int) -> bool:
        lock = self._lock(gpu)
        if not lock.acquire(blocking=False):
            return False
        if self._dir is None:
            return True
        try:
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(os.path.join(self._dir, f"sdc-gpu{gpu}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            return True  # no lock directory (read-only /run): the in-process lock still holds
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            lock.release()
            return False
        self._files[gpu] = fd
        return True

    def release(self, gpu: int) -> None:
        fd = self._files.pop(gpu, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._lock(gpu).release()

    def held(self) -> frozenset[int]:
        with self._guard:
            return frozenset(g for g, lock in self._locks.items() if lock.locked())

    @contextlib.contextmanager
    def hold(self, gpus: Sequence[int], wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold every GPU of ``gpus`` (in index order, so two holders cannot deadlock)."""
        taken: list[int] = []
        deadline = time.monotonic() + wait_seconds
        try:
            for g in sorted(set(gpus)):
                while not self.try_acquire(g):
                    if time.monotonic() >= deadline:
                        raise GpuBusy(f"GPU {g} is being checked already; wait for that check to finish")
                    time.sleep(0.05)
                taken.append(g)
            yield
        finally:
            for g in reversed(taken):
                self.release(g)
