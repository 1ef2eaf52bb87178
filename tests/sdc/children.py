"""Helpers for the tests of checks in a child process (rasd.sdc.isolated)."""

from __future__ import annotations

import sys
from pathlib import Path

from rasd.backends import open_backend
from rasd.sdc.isolated import ChildValidator
from rasd.sdc.locks import GpuLocks
from rasd.sdc.probe import BusyProbe
from rasd.sdc.settings import SdcSettings
from tests.sdc.conftest import FAST
# a deep check that runs until stopped (about a minute), to look at the daemon while it runs
SLOW = SdcSettings(deep_gemm_sizes=(256,), deep_seconds=60.0, deep_rounds=10_000, numpy_memory_bytes=1 << 20,
                   quick_gemm_size=64, quick_memory_bytes=64 << 10)


def alive(pid: int) -> bool:
    """The process runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def child_validator(tmp_path: Path, scenario: str | None = None, settings: SdcSettings = FAST,
                    python: str = sys.executable, workload: str = "idle",
                    locks: GpuLocks | None = None) -> ChildValidator:
    """Checks in a child, for a daemon whose node is ``scenario`` running ``workload`` (the child
    checks an idle node of its own of the scenario)."""
    be = open_backend("fake", scenario, workload=workload)
    handles = {g.index: g for g in be.adapter.gpus()}
    return ChildValidator(settings, handles, locks or GpuLocks(str(tmp_path / "locks")), BusyProbe(handles),
                          {"kind": "fake", "scenario": scenario}, python=python)


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable shell script standing in for the child's Python."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)
