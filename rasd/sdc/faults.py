"""Scripted SDC faults as the NumPy engine applies them (the fake node's ``SdcFault``).

Faults are read by attribute, so the fake node's ``rasd.backends.fake.scenario.SdcFault`` and the
``InjectedFault`` below (for tests and benchmarks) work alike. The fake node already filters
faults by their ``at``/``until`` window; this module applies the rest of the conditions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rasd.sdc.numerics import flip_bits


@dataclass(frozen=True, slots=True)
class InjectedFault:
    gpu: int
    kind: str  # "gemm_bitflip" | "memory_stuck" | "memory_flip"
    bit: int = 30
    fraction: float = 0.0  # share of GEMM output elements corrupted (at least one)
    dtypes: tuple[str, ...] = ()  # empty = every dtype
    min_size: int = 0
    max_size: int = 0  # 0 = no upper bound
    min_power_watts: float = 0.0
    min_temperature_celsius: float = 0.0
    probability: float = 1.0  # per run (intermittent when < 1)
    deterministic: bool = False  # same elements every run (self-comparison cannot see it)
    addresses: tuple[int, ...] = ()  # byte offsets into the tested region
    stuck_value: int = 0
    at: float = 0.0
    until: float | None = None
    seed: int = 0  # where a deterministic fault lands


def _get(fault: Any, name: str, default: Any) -> Any:
    value = getattr(fault, name, default)
    return default if value is None else value


def gemm_applies(fault: Any, dtype: str, size: int, conditions: tuple[float | None, float | None]) -> bool:
    """Does this fault touch a GEMM of ``dtype`` whose largest side is ``size`` now?"""
    if _get(fault, "kind", "") != "gemm_bitflip":
        return False
    dtypes = tuple(_get(fault, "dtypes", ()))
    if dtypes and dtype not in dtypes:
        return False
    if size < _get(fault, "min_size", 0):
        return False
    max_size = _get(fault, "max_size", 0)
    if max_size and size > max_size:
        return False
    power, temperature = conditions
    if _get(fault, "min_power_watts", 0.0) > 0 and (power is None or power < fault.min_power_watts):
        return False
    min_t = _get(fault, "min_temperature_celsius", 0.0)
    if min_t > 0 and (temperature is None or temperature < min_t):
        return False
    return True


def _fault_seed(fault: Any, shape: tuple[int, ...]) -> int:
    text = f"{_get(fault, 'seed', 0)}:{_get(fault, 'gpu', 0)}:{_get(fault, 'bit', 0)}:{_get(fault, 'fraction', 0.0)}:{shape}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def corrupt_gemm(c: np.ndarray, dtype: str, faults: Sequence[Any], rng: np.random.Generator) -> list[int]:
    """Apply the applicable faults' bit flips to the product ``c`` in place; returns flat indices hit."""
    hit: list[int] = []
    for fault in faults:
        if rng.random() >= _get(fault, "probability", 1.0):
            continue
        count = max(1, int(round(_get(fault, "fraction", 0.0) * c.size)))
        count = min(count, c.size)
        chooser = np.random.default_rng(_fault_seed(fault, c.shape)) if _get(fault, "deterministic", False) else rng
        idx = chooser.choice(c.size, size=count, replace=False)
        flip_bits(c, idx, int(_get(fault, "bit", 0)), dtype)
        hit.extend(int(i) for i in idx)
    return hit


def memory_faults(faults: Sequence[Any]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, float]]]:
    """Split memory faults into stuck bits (word, bit, value) and flipping bits (word, bit, p).

    An address is a byte offset; ``bit`` counts from that byte's least significant bit, so
    the absolute bit is ``address * 8 + bit`` and the 64-bit word holding it follows.
    """
    stuck: list[tuple[int, int, int]] = []
    flips: list[tuple[int, int, float]] = []
    for fault in faults:
        kind = _get(fault, "kind", "")
        if kind not in ("memory_stuck", "memory_flip"):
            continue
        for address in _get(fault, "addresses", ()):
            absolute = int(address) * 8 + int(_get(fault, "bit", 0))
            word, bit = divmod(absolute, 64)
            if kind == "memory_stuck":
                stuck.append((word, bit, 1 if _get(fault, "stuck_value", 0) else 0))
            else:
                flips.append((word, bit, float(_get(fault, "probability", 1.0))))
    return stuck, flips
