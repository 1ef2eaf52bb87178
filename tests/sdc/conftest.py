"""Small settings and engine factories shared by the SDC tests."""

from __future__ import annotations

from typing import Any, Callable

import pytest

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
