"""A GPU whose processes cannot be listed (lost) is logged once, then counted."""

from __future__ import annotations

import logging

from rasd.backends.errors import GpuLost
from rasd.sdc.locks import GpuLocks
from rasd.sdc.validation import Validator


class LostHandle:
    def __init__(self, index: int):
        self.index = index
        self.lost = True

    def running_pids(self) -> list[int]:
        if self.lost:
            raise GpuLost(f"GPU {self.index} is lost")
        return []


def test_a_lost_gpu_is_logged_once_then_counted(make_engine, fast, tmp_path, caplog) -> None:
    h = LostHandle(0)
    v = Validator(fast, {0: h}, {0: make_engine(0)}, GpuLocks(str(tmp_path)))
    with caplog.at_level(logging.INFO, logger="rasd.sdc.validation"):
        for _ in range(30):  # every poll that asks whether the GPU is busy
            assert v.busy_pids(0) == [-1]  # unreadable: treated as busy, never checked
        assert v.process_list_failures[0] == 30
        h.lost = False
        assert v.busy_pids(0) == []
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot_list_processes" in m for m in lines) == 1, lines
    assert any("listed_again" in m and "failures=30" in m for m in lines)
