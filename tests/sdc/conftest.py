"""Small settings and engine factories shared by the SDC tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from rasd.sdc import isolated
from rasd.sdc.engines import NumpyEngine
from rasd.sdc.faults import InjectedFault
from rasd.sdc.gemm import Workspace
from rasd.sdc.settings import SdcSettings

FAST = SdcSettings(
    quick_gemm_size=64,
    standard_gemm_size=128,
    deep_gemm_sizes=(64, 96),
    deep_seconds=0.2,
    deep_rounds=3,
    deep_min_rounds=3,
    quick_memory_bytes=64 << 10,
    numpy_memory_bytes=1 << 20,
    throughput_repeats=2,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def child_imports_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check's child process (it starts in /) imports this checkout's rasd."""
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[Any]]:
    """Every check process ChildValidator starts (rasd.sdc.isolated)."""
    seen: list[subprocess.Popen[Any]] = []
    real = subprocess.Popen

    def popen(*a: Any, **k: Any) -> subprocess.Popen[Any]:
        p = real(*a, **k)
        seen.append(p)
        return p

    monkeypatch.setattr(isolated.subprocess, "Popen", popen)
    return seen


class TolerantEngine(NumpyEngine):
    """A NumPy engine that claims no bitwise reference: only the gamma bound can judge it."""

    def bitwise_reference(self) -> bool:
        return False


@pytest.fixture
def fast() -> SdcSettings:
    return FAST


@pytest.fixture
def make_engine() -> Callable[..., NumpyEngine]:
    def make(gpu: int = 0, *faults: InjectedFault, seed: int = 0, conditions: Any = None,
             cls: type = NumpyEngine) -> NumpyEngine:
        fs = list(faults)
        return cls(gpu, faults=lambda: fs, seed=seed, conditions=conditions, memory_bytes=FAST.numpy_memory_bytes)

    return make


@pytest.fixture
def make_ws(make_engine: Callable[..., NumpyEngine]) -> Callable[..., Workspace]:
    def make(gpu: int = 0, *faults: InjectedFault, **kw: Any) -> Workspace:
        return Workspace(make_engine(gpu, *faults, **kw))

    return make


@pytest.fixture
def tolerant_engine() -> type:
    return TolerantEngine
