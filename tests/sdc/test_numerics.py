from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rasd.sdc.numerics import UNIT_ROUNDOFF, bit_view, differing_bits, flip_bits, gamma, round_bf16, to_dtype

_BIG = float(np.float32(1e30))


@given(st.floats(min_value=-_BIG, max_value=_BIG, allow_nan=False, allow_infinity=False, width=32, allow_subnormal=False).filter(lambda v: v == 0 or abs(v) > 1e-30))
def test_bf16_rounding_is_within_half_an_ulp_and_representable(x: float) -> None:
    r = float(round_bf16(np.array([x], dtype=np.float32))[0])
    assert abs(r - x) <= abs(x) * UNIT_ROUNDOFF["bfloat16"] + 1e-38
    assert np.float32(r).view(np.uint32) & 0xFFFF == 0  # only the top 16 bits are used


def test_bf16_ties_go_to_even() -> None:
    # 1 + 2^-8 lies exactly between 1 and 1 + 2^-7 in bf16: ties to the even mantissa (1.0).
    assert round_bf16(np.array([1 + 2**-8], dtype=np.float32))[0] == 1.0
    assert round_bf16(np.array([1 + 3 * 2**-8], dtype=np.float32))[0] == 1 + 2**-6


def test_flip_bits_changes_exactly_the_chosen_bit_in_each_format() -> None:
    for dtype, bit in (("float64", 62), ("float32", 10), ("float16", 14), ("bfloat16", 7)):
        x = to_dtype(np.linspace(0.5, 2, 12), dtype)
        before = bit_view(x, dtype).copy()
        flip_bits(x, np.array([3, 7]), bit, dtype)
        after = bit_view(x, dtype)
        xor = before ^ after
        assert [int(v) for v in xor[[3, 7]]] == [1 << bit, 1 << bit]
        assert int(np.count_nonzero(xor)) == 2


def test_differing_bits_names_the_flipped_positions() -> None:
    ev = differing_bits(1.0, np.float32(1.0 + 2**-23), "float32")
    assert ev["differing_bits"] == [0]
    assert ev["expected_bits"] == "0x3f800000"


def test_gamma_grows_with_k_and_is_infinite_past_one() -> None:
    assert gamma(1, 2**-24) < gamma(1000, 2**-24)
    assert gamma(1 << 12, 2**-11) == float("inf")
