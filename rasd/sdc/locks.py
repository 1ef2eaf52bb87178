"""One check at a time per GPU: a lock per GPU, in this process and across processes.

The in-process lock serialises the daemon's own threads; an ``flock`` on a per-GPU file in
the runtime directory keeps a standalone ``rasd validate`` from running beside the daemon's
checks when the control socket cannot be used.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from typing import Callable, Iterator, Sequence

from rasd.sdc.results import Cancelled, CheckResult, Result


log = logging.getLogger(__name__)


class GpuBusy(RuntimeError):
    """Another check holds the GPU; the message names it."""


class GpuLocks:
    def __init__(self, directory: str | None = None):
        self._dir = directory or None  # a str, not pathlib's: see rasd.paths
        self._locks: dict[int, threading.Lock] = {}
        self._files: dict[int, int] = {}
        self._guard = threading.Lock()
        self.unusable_directory = 0  # lock files that could not be opened (logged once, then counted)

    @property
    def directory(self) -> str | None:
        """Where the per-GPU lock files are (None: this process's locks only)."""
        return self._dir

    def _lock(self, gpu: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(gpu, threading.Lock())

    def try_acquire(self, gpu: int, across_processes: bool = True) -> bool:
        """Take the GPU's lock in this process and (``across_processes``) its lock file. The
        daemon takes only the first for a check it runs in a child process: the child takes the
        file, as a standalone ``rasd validate`` does."""
        lock = self._lock(gpu)
        if not lock.acquire(blocking=False):
            return False
        if self._dir is None or not across_processes:
            return True
        try:
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(os.path.join(self._dir, f"sdc-gpu{gpu}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as e:
            # no lock directory (read-only /run): the in-process lock still holds, but a
            # standalone check beside this process is not kept off the GPU
            self._unusable(e)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            lock.release()
            return False
        self._files[gpu] = fd
        return True

    def _unusable(self, e: OSError) -> None:
        with self._guard:
            self.unusable_directory += 1
            first = self.unusable_directory == 1
        if first:
            log.warning("event=sdc_lock_directory_unusable dir=%r error=%r (logged once, then counted): checks "
                        "in other processes are not kept off this one's GPUs", self._dir, str(e))

    def directory_usable(self) -> bool:
        """Whether lock files can be made in the directory (None: there is none to use); an
        unusable one is logged once."""
        if self._dir is None:
            return False
        try:
            os.makedirs(self._dir, exist_ok=True)
        except OSError as e:
            self._unusable(e)
            return False
        if not os.access(self._dir, os.W_OK | os.X_OK):
            self._unusable(PermissionError(f"{self._dir} is not writable"))
            return False
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


def admit(targets: Sequence[int], force: bool, busy_pids: Callable[[int], list[int]],
          acquire: Callable[[int], bool], release: Callable[[int], None], wait_seconds: float,
          cancel: threading.Event | None) -> tuple[list[int], dict[int, CheckResult]]:
    """Which of ``targets`` a check may run on now: those no job uses (unless ``force``) whose lock
    ``acquire`` takes within ``wait_seconds``, held in order, and for each other an INCONCLUSIVE
    ``available`` row saying why. Raises Cancelled (releasing what it took) when ``cancel`` is
    set while it waits."""
    skipped: dict[int, CheckResult] = {}
    runnable: list[int] = []
    for g in targets:
        pids = [] if force else busy_pids(g)
        if pids:
            skipped[g] = CheckResult(g, "available", Result.INCONCLUSIVE, 0.0, None, {
                "why": f"GPU {g} is in use by pids {pids}; rerun when idle or with --force"})
        else:
            runnable.append(g)
    held: list[int] = []
    deadline = time.monotonic() + wait_seconds
    try:
        for g in runnable:
            while not acquire(g):
                if time.monotonic() >= deadline:
                    skipped[g] = CheckResult(g, "available", Result.INCONCLUSIVE, 0.0, None, {
                        "why": f"GPU {g} is being checked already; retry when that check ends"})
                    break
                if cancel is not None and cancel.wait(0.05):
                    raise Cancelled("the check was cancelled while waiting for its GPU")
                if cancel is None:
                    time.sleep(0.05)
            else:
                held.append(g)
    except BaseException:
        for g in held:
            release(g)
        raise
    return held, skipped
