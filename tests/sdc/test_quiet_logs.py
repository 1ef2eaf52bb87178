"""A GPU whose processes cannot be listed (lost) is logged once per failure kind, then counted."""

from __future__ import annotations

import logging

import pytest

from rasd.backends.errors import ControlError, GpuLost
from rasd.sdc.locks import GpuLocks
from rasd.sdc.validation import Validator


class FailingHandle:
    """A GPU handle whose process list fails with ``error`` (None: it answers, idle)."""

    def __init__(self, index: int):
        self.index = index
        self.error: Exception | None = GpuLost(index, "running_processes: GPU is lost")

    def running_pids(self) -> list[int]:
        if self.error is not None:
            raise self.error
        return []


def _cannot_list(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "sdc_cannot_list_processes" in r.getMessage()]


def test_a_lost_gpu_is_logged_once_then_counted(make_engine, fast, tmp_path, caplog) -> None:
    h = FailingHandle(0)
    v = Validator(fast, {0: h}, {0: make_engine(0)}, GpuLocks(str(tmp_path)))
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        for _ in range(30):  # every poll that asks whether the GPU is busy
            assert v.busy_pids(0) == [-1]  # unreadable: treated as busy, never checked
        assert v.process_list_failures[(0, "lost")] == 30
        h.error = None
        assert v.busy_pids(0) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(_cannot_list(caplog)) == 1, lines
    assert "kind=lost" in _cannot_list(caplog)[0] and "GPU is lost" in _cannot_list(caplog)[0]
    assert any("listed_again" in m and "kind=lost" in m and "failures=30" in m for m in lines)
    assert v.process_list_failures == {}


def test_each_failure_kind_is_logged_once_per_gpu(make_engine, fast, tmp_path, caplog) -> None:
    """Two GPUs, two kinds: one line for each (GPU, kind), however many passes fail."""
    handles = {0: FailingHandle(0), 1: FailingHandle(1)}
    handles[1].error = ControlError("GPU 1: cannot list processes: Insufficient Permissions", "no_permission")
    v = Validator(fast, handles, {g: make_engine(g) for g in handles}, GpuLocks(str(tmp_path)))
    with caplog.at_level(logging.INFO, logger="rasd.sdc"):
        for _ in range(20):
            assert v.busy_pids(0) == [-1] and v.busy_pids(1) == [-1]
        handles[0].error = ControlError("GPU 0: cannot list processes: Timeout", "timeout")
        for _ in range(20):
            assert v.busy_pids(0) == [-1]
    assert v.process_list_failures == {(0, "lost"): 20, (0, "timeout"): 20, (1, "no_permission"): 20}
    said = sorted((m.split()[1], m.split()[2]) for m in _cannot_list(caplog))
    assert said == [("gpu=0", "kind=lost"), ("gpu=0", "kind=timeout"), ("gpu=1", "kind=no_permission")]


def test_the_nvml_handle_names_the_kind_of_a_refused_process_list(fake) -> None:
    be = fake("""
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetComputeRunningProcesses"
        error = "no_permission"
        """)
    from rasd.sdc.probe import failure_kind

    gpus = be.adapter.gpus()
    with pytest.raises(ControlError) as refused:
        gpus[1].running_pids()
    assert failure_kind(refused.value) == "no_permission"
    assert isinstance(gpus[0].running_pids(), list)
