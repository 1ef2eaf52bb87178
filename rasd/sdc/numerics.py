"""Floating-point facts the checks rely on: unit roundoffs, bit views, bf16 emulation, bounds.

NumPy has no bfloat16: rasd emulates it as float32 arrays whose values are bf16-representable
(round-to-nearest-even on the top 16 bits). Its bit pattern is the float32's upper half.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES = ("float64", "float32", "float16", "bfloat16")

# Unit roundoff u (half the machine epsilon) of each format.
UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}
BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}
_STORAGE = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": np.float32}
_UINT = {64: np.uint64, 32: np.uint32, 16: np.uint16}
# Smallest subnormal (the spacing near zero): below the normal range rounding errors are
# absolute, at most this much per operation (Higham's eta term).
ETA = {"float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}


def storage_dtype(dtype: str) -> Any:
    """The NumPy dtype an array of ``dtype`` is held in (bf16 lives in float32)."""
    return _STORAGE[dtype]


def round_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bf16 (ties to even); returns float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round host values to ``dtype`` (held in its storage dtype)."""
    if dtype == "bfloat16":
        return round_bf16(np.asarray(x, dtype=np.float32))
    return np.asarray(x).astype(_STORAGE[dtype])


def bit_view(x: np.ndarray, dtype: str) -> np.ndarray:
    """The IEEE bit patterns of ``x`` as unsigned ints of the format's width."""
    if dtype == "bfloat16":
        return (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    return np.ascontiguousarray(x).view(_UINT[BITS[dtype]])


def flip_bits(values: np.ndarray, flat_index: np.ndarray, bit: int, dtype: str) -> None:
    """Flip ``bit`` (0 = least significant of the format) of the chosen elements, in place."""
    width = BITS[dtype]
    if not 0 <= bit < width:
        return
    if dtype == "bfloat16":
        view = values.reshape(-1).view(np.uint32)
        view[flat_index] ^= np.uint32(1 << (bit + 16))
    else:
        utype = _UINT[width]
        view = values.reshape(-1).view(utype)
        view[flat_index] ^= utype(1 << bit)


def differing_bits(expected: float, got: float, dtype: str, expected_bits: int | None = None) -> dict[str, Any]:
    """Bit-level evidence for one element: both patterns in hex and the positions that differ.

    ``expected_bits`` is the known-good pattern when there is one (a bitwise golden result);
    otherwise ``expected`` rounded to the format stands in for it.
    """
    e = expected_bits if expected_bits is not None else int(bit_view(to_dtype(np.array([expected]), dtype), dtype)[0])
    g = int(bit_view(np.array([got], dtype=storage_dtype(dtype)), dtype)[0])
    width = BITS[dtype]
    xor = e ^ g
    return {
        "expected_bits": f"0x{e:0{width // 4}x}",
        "got_bits": f"0x{g:0{width // 4}x}",
        "differing_bits": [b for b in range(width) if xor >> b & 1],
    }


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a length-k dot product."""
    ku = k * u
    if ku >= 1:
        return float("inf")
    return ku / (1 - ku)


def gemm_error_coefficient(k: int, dtype: str, accumulate_u: float) -> float:
    """c such that |C_computed - C_exact| <= c |A||B| + ``underflow_term`` elementwise.

    The device accumulates in precision ``accumulate_u`` and rounds the result to ``dtype``
    (one extra rounding when the output is narrower than the accumulator); the fp64 reference
    adds its own gamma_k. |C| <= |A||B|, so the output rounding is bounded by u_out |A||B|.
    """
    u_out = UNIT_ROUNDOFF[dtype]
    g = gamma(k, accumulate_u)
    extra = u_out * (1 + g) if u_out > accumulate_u else 0.0
    return g + extra + gamma(k, UNIT_ROUNDOFF["float64"])


def underflow_term(k: int, dtype: str, accumulate_u: float) -> float:
    """The absolute part of the bound: k gradual-underflow errors in the accumulator, one in the output."""
    accumulate = "float64" if accumulate_u <= UNIT_ROUNDOFF["float64"] else "float32"
    return k * ETA[accumulate] + ETA[dtype]
