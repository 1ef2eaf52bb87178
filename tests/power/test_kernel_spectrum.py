"""The power kernel's spectral half (rasd/power/_spectrum.c) against the NumPy code it replaces:
rasd.power.stats' median, detrend and hann, and np.linalg.solve, on many fixed-seed inputs.

Medians and detrending are the same to the bit (their order of summation is NumPy's own), the
Hann window to 1e-15 (libm's cosine against NumPy's), the small solves to rounding.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import math
from pathlib import Path

import numpy as np
import pytest

from rasd.power.stats import detrend, hann, median

LIBRARY = Path(__file__).resolve().parents[2] / "rasd" / "power" / (
    "_kernel" + importlib.machinery.EXTENSION_SUFFIXES[0]
)
D = ctypes.c_double
P = ctypes.POINTER(ctypes.c_double)


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    if not LIBRARY.exists():
        pytest.skip(
            f"the power kernel is not built ({LIBRARY.name} missing): "
            "`pip install -e .` or gcc as the README says builds it"
        )
    cdll = ctypes.CDLL(str(LIBRARY))
    cdll.pk_median.argtypes = [P, ctypes.c_int, P]
    cdll.pk_median.restype = D
    cdll.pk_detrend.argtypes = [P, P, ctypes.c_int, P]
    cdll.pk_detrend.restype = None
    cdll.pk_hann.argtypes = [ctypes.c_int, P]
    cdll.pk_hann.restype = None
    cdll.pk_solve.argtypes = [ctypes.c_int, P, P]
    cdll.pk_solve.restype = ctypes.c_int
    return cdll


def ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(P)


# ---- primitives ----------------------------------------------------------------------------


def test_median_is_numpys_to_the_bit(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(1)
    for n in list(range(1, 260)) + [511, 512, 513, 1999, 2000, 4097]:
        for x in (rng.normal(300, 50, n), np.round(rng.normal(300, 5, n)), np.full(n, 0.1)):
            work = np.empty(n)
            got = lib.pk_median(ptr(x), n, ptr(work))
            assert got == median(x) == np.median(x), n
    x = np.array([3.0, math.nan, 1.0])
    before = x.copy()
    assert math.isnan(lib.pk_median(ptr(x), 3, ptr(np.empty(3))))
    assert np.array_equal(x, before, equal_nan=True)  # the input is not changed


def test_detrend_and_hann_are_numpys_to_the_bit(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(2)
    for n in list(range(1, 200)) + [255, 256, 257, 997, 1024, 2000, 5003]:
        rel = np.sort(0.1 * np.arange(n) + rng.uniform(-0.002, 0.002, n))
        rel -= rel[0]
        for w in (rng.normal(300, 50, n), np.full(n, 0.1), 50 + 0.3 * rel):
            out = np.empty(n)
            lib.pk_detrend(ptr(rel), ptr(w), n, ptr(out))
            np.testing.assert_array_equal(out, detrend(rel, w))
            inplace = w.copy()
            lib.pk_detrend(ptr(rel), ptr(inplace), n, ptr(inplace))  # out may be w
            np.testing.assert_array_equal(inplace, out)
        win = np.empty(n)
        lib.pk_hann(n, ptr(win))
        np.testing.assert_allclose(win, hann(n), rtol=0, atol=1e-15)


def test_solve_matches_linalg_and_refuses_a_singular_system(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(3)
    for m in (3, 4):
        for _ in range(500):
            # normal equations like the sinusoid fits' (symmetric positive definite)
            cols = rng.normal(size=(m, 40))
            a = cols @ cols.T
            b = rng.normal(size=m) * 100
            want = np.linalg.solve(a, b)
            ac, bc = a.copy(), b.copy()
            assert lib.pk_solve(m, ptr(ac), ptr(bc)) == 0
            np.testing.assert_allclose(bc, want, rtol=1e-11, atol=1e-11 * float(np.abs(want).max()))
        # a general (non-symmetric) system needs the row exchanges
        a = rng.normal(size=(m, m))
        a[0, 0] = 0.0
        b = rng.normal(size=m)
        want = np.linalg.solve(a, b)
        ac, bc = a.copy(), b.copy()
        assert lib.pk_solve(m, ptr(ac), ptr(bc)) == 0
        np.testing.assert_allclose(bc, want, rtol=1e-10)
        singular = np.ones((m, m))
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.solve(singular, np.ones(m))
        assert lib.pk_solve(m, ptr(singular.copy()), ptr(np.ones(m))) == -1
