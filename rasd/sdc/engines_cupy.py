"""The CuPy engine: checks on a real GPU (``pip install 'rasd[gpu]'`` brings cupy-cuda12x).

Importing this module imports CuPy; ``rasd.sdc.engines`` does so only for the NVML backend.
CuPy has no bfloat16 dtype, so this engine reports fp64, fp32 and fp16 only.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from rasd.sdc.engines import EngineUnavailable
from rasd.sdc.numerics import UNIT_ROUNDOFF
from rasd.sdc.probe import CUPY_MISSING
from rasd.sdc.retry import library_absent

try:
    import cupy as cp

    _IMPORT_ERROR: ImportError | None = None
except ImportError as e:  # pragma: no cover - depends on the node
    cp = None
    _IMPORT_ERROR = e


class CupyMemory:
    def __init__(self, device: int, words: int):
        with cp.cuda.Device(device):
            self._buf = cp.empty(words, dtype=cp.uint64)
        self._device = device
        self.words = words
        self.base_address = int(self._buf.data.ptr)

    def write(self, start: int, stop: int, values: Any) -> None:
        with cp.cuda.Device(self._device):
            self._buf[start:stop] = values

    def read(self, start: int, stop: int) -> Any:
        return self._buf[start:stop]


class CupyEngine:
    name = "cupy"

    def __init__(self, device: int, ordinal: int):
        self.device = device
        self.xp = cp
        self._ordinal = ordinal
        with cp.cuda.Device(ordinal):
            props = cp.cuda.runtime.getDeviceProperties(ordinal)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        # cuBLAS results are bitwise reproducible only for one architecture, SM count and library.
        self._key = "/".join(
            str(x)
            for x in (
                name,
                f"sm{props['major']}{props['minor']}",
                props["multiProcessorCount"],
                cp.cuda.runtime.runtimeGetVersion(),
                cp.cuda.runtime.driverGetVersion(),
                cp.__version__,
            )
        )

    def dtypes(self) -> tuple[str, ...]:
        return ("float64", "float32", "float16")

    def identity_key(self) -> str:
        return self._key

    def bitwise_reference(self) -> bool:
        return False  # the host reference differs in rounding; tolerance bound + vote instead

    def accumulate_roundoff(self, dtype: str) -> float:
        # cuBLAS accumulates fp16 GEMMs in fp32 unless told otherwise (CuPy's default).
        return UNIT_ROUNDOFF["float64" if dtype == "float64" else "float32"]

    def put(self, host: np.ndarray) -> Any:
        with cp.cuda.Device(self._ordinal):
            return cp.asarray(host)

    def matmul(self, a: Any, b: Any, dtype: str) -> Any:
        with cp.cuda.Device(self._ordinal):
            return cp.matmul(a, b)

    def to_host(self, x: Any) -> np.ndarray:
        return cp.asnumpy(x)

    def synchronize(self) -> None:
        with cp.cuda.Device(self._ordinal):
            cp.cuda.Stream.null.synchronize()

    def free_memory_bytes(self) -> int:
        with cp.cuda.Device(self._ordinal):
            free, _total = cp.cuda.runtime.memGetInfo()
        return int(free)

    def memory(self, words: int) -> CupyMemory:
        return CupyMemory(self._ordinal, words)


def cupy_engines(bus_ids: Mapping[int, str]) -> dict[int, CupyEngine]:
    """Engines keyed by NVML index; CUDA ordinals are matched by PCI bus id (CUDA's own order
    is fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID)."""
    if cp is None:
        assert _IMPORT_ERROR is not None
        if library_absent(_IMPORT_ERROR):
            raise EngineUnavailable(CUPY_MISSING, permanent=True)
        # installed, but a library it loads is not there now (libcuda while the driver is being
        # reinstalled, a container without the driver's mount): tried again after a back-off
        raise EngineUnavailable(f"CuPy could not be loaded: {_IMPORT_ERROR}")
    ordinals: dict[str, int] = {}
    for i in range(cp.cuda.runtime.getDeviceCount()):
        ordinals[_norm(cp.cuda.runtime.deviceGetPCIBusId(i))] = i
    out: dict[int, CupyEngine] = {}
    for index, bus in bus_ids.items():
        ordinal = ordinals.get(_norm(bus))
        if ordinal is None:
            raise EngineUnavailable(f"GPU {index} ({bus}) is not visible to CUDA; check CUDA_VISIBLE_DEVICES")
        out[index] = CupyEngine(index, ordinal)
    return out


def _norm(bus_id: str) -> str:
    # NVML prints an 8-digit domain (00000000:1B:00.0), CUDA a 4-digit one (0000:1b:00.0).
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}"
