"""Compute engines: where a check's GEMMs and memory patterns run.

``NumpyEngine`` stands in for the fake backend's devices: host NumPy, with the fake node's
scripted faults applied to GEMM products and to its simulated device memory. ``CupyEngine``
(``engines_cupy``) runs on a real GPU; CuPy is imported only when it is needed, so rasd imports
and the fake backend work without it.
"""

from __future__ import annotations

import functools
import logging
import platform
import threading
from typing import Any, Callable, Collection, Mapping, Protocol, Sequence

import numpy as np

from rasd.backends.errors import GpuLost
from rasd.sdc.faults import corrupt_gemm, gemm_applies, memory_faults
from rasd.sdc.numerics import UNIT_ROUNDOFF, round_bf16

log = logging.getLogger(__name__)

FaultSource = Callable[[], Sequence[Any]]
Conditions = Callable[[], "tuple[float | None, float | None]"]


class EngineUnavailable(RuntimeError):
    """No engine can run checks here; the message is one line for people. ``permanent``: none
    can in this installation (a library missing), as opposed to a device that did not answer."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


class DeviceMemory(Protocol):
    words: int  # 64-bit words in the region
    base_address: int  # device address of word 0 (0 for the simulated region)

    def write(self, start: int, stop: int, values: Any) -> None: ...
    def read(self, start: int, stop: int) -> Any: ...


class Engine(Protocol):
    name: str  # "numpy" or "cupy"
    device: int  # the GPU's NVML index
    xp: Any  # the array module (numpy or cupy)

    def dtypes(self) -> tuple[str, ...]: ...
    def identity_key(self) -> str: ...
    def bitwise_reference(self) -> bool: ...
    def accumulate_roundoff(self, dtype: str) -> float: ...
    def put(self, host: np.ndarray) -> Any: ...
    def matmul(self, a: Any, b: Any, dtype: str) -> Any: ...
    def to_host(self, x: Any) -> np.ndarray: ...
    def synchronize(self) -> None: ...
    def free_memory_bytes(self) -> int: ...
    def memory(self, words: int) -> DeviceMemory: ...


def host_product(a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray:
    """The NumPy engine's GEMM: fp16 and bf16 multiply and accumulate in fp32 (as tensor cores
    do) and round the result once to the output format."""
    if dtype == "float16":
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    if dtype == "bfloat16":
        return round_bf16(a @ b)
    return a @ b


class NumpyMemory:
    """Simulated device memory with stuck and flipping bits at scripted addresses."""

    def __init__(self, words: int, faults: Sequence[Any], rng: np.random.Generator):
        self.words = words
        self.base_address = 0
        self._buf = np.zeros(words, dtype=np.uint64)
        stuck, flips = memory_faults(faults)
        self._stuck = [s for s in stuck if s[0] < words]
        self._flips = [f for f in flips if f[0] < words]
        self._rng = rng

    def write(self, start: int, stop: int, values: Any) -> None:
        self._buf[start:stop] = values
        for word, bit, value in self._stuck:
            if start <= word < stop:
                mask = np.uint64(1 << bit)
                self._buf[word] = (self._buf[word] | mask) if value else (self._buf[word] & ~mask)

    def read(self, start: int, stop: int) -> np.ndarray:
        for word, bit, p in self._flips:
            if start <= word < stop and self._rng.random() < p:
                self._buf[word] ^= np.uint64(1 << bit)
        return self._buf[start:stop]


class NumpyEngine:
    """Host NumPy as a device. Bitwise deterministic: a clean host product is its golden bits."""

    name = "numpy"
    xp: Any = np

    def __init__(
        self,
        device: int,
        model: str = "fake",
        faults: FaultSource | None = None,
        conditions: Conditions | None = None,
        seed: int = 0,
        memory_bytes: int = 64 << 20,
    ):
        self.device = device
        self._model = model
        self._faults = faults or (lambda: ())
        self._conditions = conditions or (lambda: (None, None))
        self._rng = np.random.default_rng([seed, device])
        self._memory_bytes = memory_bytes
        self.last_injected: list[int] = []  # flat indices corrupted by the last matmul (ground truth)

    def dtypes(self) -> tuple[str, ...]:
        return ("float64", "float32", "float16", "bfloat16")  # bf16 emulated (see numerics)

    def identity_key(self) -> str:
        return f"numpy/{np.__version__}/{platform.machine()}/{self._model}"

    def bitwise_reference(self) -> bool:
        return True

    def accumulate_roundoff(self, dtype: str) -> float:
        return UNIT_ROUNDOFF["float64" if dtype == "float64" else "float32"]

    def put(self, host: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(host)

    def matmul(self, a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray:
        with _HOST_GEMM:  # concurrent checks of simulated GPUs share the host's one core for SDC
            c = host_product(a, b, dtype)
        faults = [f for f in self._faults() if getattr(f, "kind", "") == "gemm_bitflip"]
        self.last_injected = []
        if faults:
            size = max(a.shape[0], a.shape[1], b.shape[1])
            now = self._conditions()
            active = [f for f in faults if gemm_applies(f, dtype, size, now)]
            if active:
                self.last_injected = corrupt_gemm(c, dtype, active, self._rng)
        return c

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self) -> None:
        return None

    def free_memory_bytes(self) -> int:
        return self._memory_bytes

    def memory(self, words: int) -> NumpyMemory:
        return NumpyMemory(words, list(self._faults()), self._rng)


_HOST_GEMM = threading.Lock()
_BLAS_LIMITED = False


def limit_host_blas() -> None:
    """NumPy checks (the fake node) use one core: OpenBLAS would otherwise start a thread per
    core and a deep check would take the whole host from the daemon's polls. threadpoolctl
    finds the BLAS NumPy loaded, whichever it is, and sets its thread count once."""
    global _BLAS_LIMITED
    if _BLAS_LIMITED:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    _BLAS_LIMITED = True


def engines_for_backend(backend: Any, seed: int = 0, numpy_memory_bytes: int = 64 << 20,
                        gpus: Collection[int] | None = None) -> Mapping[int, Engine]:
    """One engine per GPU of ``backend`` (only those in ``gpus`` when given: on real GPUs each
    engine is a CUDA context, never to be made on a GPU running a job): NumPy on the fake node,
    CuPy on real NVML. A lost GPU gets none: there is nothing to check on it (the ladder has its
    fault)."""
    identities = {}
    for g in backend.adapter.gpus():
        if gpus is not None and g.index not in gpus:
            continue
        try:
            identities[g.index] = g.identity()
        except GpuLost as e:
            log.warning("sdc no engine for a lost gpu=%s error=%s", g.index, e)
    node = getattr(backend, "fake_node", None)
    if node is not None:
        engines: dict[int, Engine] = {}
        for index, ident in identities.items():
            engines[index] = NumpyEngine(
                index,
                model=ident.name,
                faults=functools.partial(node.sdc_faults, index),
                conditions=functools.partial(node.conditions, index),
                seed=seed,
                memory_bytes=numpy_memory_bytes,
            )
        return engines
    from rasd.sdc.engines_cupy import cupy_engines  # imports cupy: only on real GPUs

    return cupy_engines({index: ident.pci_bus_id for index, ident in identities.items()})
