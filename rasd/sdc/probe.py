"""What the SDC service knows before it loads the checks: which GPUs are in use, and whether
checks can run on this node at all.

The daemon asks which GPUs are busy every time a periodic check falls due; the checks themselves
(engines, GEMM, memory patterns, NumPy or CuPy with its CUDA context) load only when a check is
to run, so a node whose GPUs always run jobs never loads them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from typing import Any, Mapping

from rasd.backends.errors import ControlError, GpuLost

log = logging.getLogger(__name__)

CUPY_MISSING = "CuPy is not installed, so SDC checks cannot run on real GPUs; install rasd[gpu] (cupy-cuda12x)"


def engines_missing(backend: Any) -> str | None:
    """Why no engine can run on ``backend``, as far as is known without loading one: the fake
    node checks with NumPy (always there); real GPUs need CuPy installed. Other reasons (a GPU
    CUDA does not see) show when the engines are built, at the first check."""
    if getattr(backend, "fake_node", None) is not None:
        return None
    return CUPY_MISSING if importlib.util.find_spec("cupy") is None else None


def failure_kind(e: BaseException) -> str:
    """How a process list failed: lost (NVML's GPU_IS_LOST, or a GPU that could not be opened),
    the NVML error kind of a refused query, else the exception's class."""
    if isinstance(e, GpuLost):
        return "lost"
    if isinstance(e, ControlError) and e.kind:
        return e.kind
    return type(e).__name__


class BusyProbe:
    """Processes other than rasd on each GPU (NVML running processes, ``nvmlDeviceGetComputeRunningProcesses``):
    neither this process nor the check processes it started (``own``) count as a job."""

    def __init__(self, handles: Mapping[int, Any]):
        self.handles = dict(handles)
        self._own: set[int] = set()
        self._own_guard = threading.Lock()
        # (GPU, failure kind) -> failed process lists in a row: each kind is logged at its first
        # failure, then only counted until the GPU answers again
        self.process_list_failures: dict[tuple[int, str], int] = {}

    def busy_pids(self, gpu: int) -> list[int]:
        """Processes other than rasd using the GPU; ``[-1]`` when the list cannot be read."""
        handle = self.handles.get(gpu)
        if handle is None:
            return []
        try:
            pids = handle.running_pids()
        except Exception as e:  # noqa: BLE001 - an unreadable list is treated as busy, to be safe
            key = (gpu, failure_kind(e))
            n = self.process_list_failures[key] = self.process_list_failures.get(key, 0) + 1
            if n == 1:  # a lost GPU fails every time: once in the log, then counted
                log.warning("event=sdc_cannot_list_processes gpu=%s kind=%s error=%r (logged once; counted "
                            "until it answers again)", gpu, key[1], str(e))
            return [-1]
        for key in [k for k in self.process_list_failures if k[0] == gpu]:
            failed = self.process_list_failures.pop(key)
            log.info("event=sdc_processes_listed_again gpu=%s kind=%s failures=%d", gpu, key[1], failed)
        with self._own_guard:
            own = self._own | {os.getpid()}
        return [p for p in pids if p not in own]

    def own(self, pid: int) -> None:
        """A check process of rasd's: its CUDA contexts are not a job's."""
        with self._own_guard:
            self._own.add(pid)

    def disown(self, pid: int) -> None:
        with self._own_guard:
            self._own.discard(pid)

    @property
    def own_pids(self) -> frozenset[int]:
        with self._own_guard:
            return frozenset(self._own)
