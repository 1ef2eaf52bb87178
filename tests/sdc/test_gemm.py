from __future__ import annotations

import numpy as np
import pytest

from rasd.sdc.faults import InjectedFault
from rasd.sdc.gemm import Workspace, abft, freivalds, golden_gemm
from rasd.sdc.results import Result


DTYPES = ("float64", "float32", "float16", "bfloat16")
# The most significant exponent bit below the sign, per format.
HIGH_EXPONENT_BIT = {"float64": 61, "float32": 29, "float16": 13, "bfloat16": 13}


@pytest.mark.parametrize("dtype", DTYPES)
def test_healthy_device_passes_every_gemm_check(dtype: str, make_ws) -> None:
    ws = make_ws()
    for seed in range(3):
        assert golden_gemm(ws, seed, 64, dtype).result is Result.PASS
        assert abft(ws, seed, 64, dtype).result is Result.PASS
        assert freivalds(ws, seed, 64, dtype, 8).result is Result.PASS


@pytest.mark.parametrize("dtype", DTYPES)
def test_exponent_flip_is_caught_located_and_explained(dtype: str, make_ws) -> None:
    bit = HIGH_EXPONENT_BIT[dtype]
    ws = make_ws(0, InjectedFault(gpu=0, kind="gemm_bitflip", bit=bit, dtypes=(dtype,), deterministic=True, seed=2))
    g = golden_gemm(ws, 5, 64, dtype)
    hit = ws.engine.last_injected[0]
    assert g.result is Result.FAIL
    first = g.evidence["first"][0]
    assert (first["row"], first["col"]) == divmod(hit, 64)
    assert first["differing_bits"] == [bit]
    assert g.evidence["seed"] == 5
    # ABFT and Freivalds sum up to n element bounds per row: a flip that shrinks a value can hide
    # under that in the narrow formats; an error beyond the whole row's bound never does.
    if first["error"] is not None and first["error"] <= 64 * first["bound"]:
        return
    a = abft(ws, 5, 64, dtype)
    assert a.result is Result.FAIL
    assert a.evidence["rows"] == [hit // 64] and a.evidence["cols"] == [hit % 64]
    assert (a.evidence["located"][0]["row"], a.evidence["located"][0]["col"]) == divmod(hit, 64)
    f = freivalds(ws, 5, 64, dtype, 16)
    assert f.result is Result.FAIL
    assert f.evidence["rows"] == [hit // 64]


def test_low_mantissa_flip_is_below_the_bound_yet_caught_bitwise(make_ws, make_engine, tolerant_engine) -> None:
    ws = make_ws(0, InjectedFault(gpu=0, kind="gemm_bitflip", bit=0, dtypes=("float32",)))
    g = golden_gemm(ws, 1, 64, "float32")
    assert g.result is Result.FAIL and g.evidence["beyond_bound"] == 0
    # An engine judged only by the rounding-error bound cannot see an error below it.
    fault = InjectedFault(gpu=0, kind="gemm_bitflip", bit=0, dtypes=("float32",))
    tolerant = Workspace(make_engine(0, fault, cls=tolerant_engine))
    assert golden_gemm(tolerant, 1, 64, "float32").result is Result.PASS


def test_fault_conditions_restrict_where_corruption_shows(make_ws) -> None:
    hot = {"c": (300.0, 85.0)}
    fault = InjectedFault(gpu=0, kind="gemm_bitflip", bit=29, dtypes=("float32",), min_size=100,
                          min_power_watts=250.0, min_temperature_celsius=80.0)
    ws = make_ws(0, fault, conditions=lambda: hot["c"])
    assert golden_gemm(ws, 0, 64, "float32").result is Result.PASS  # too small
    assert golden_gemm(ws, 0, 128, "float64").result is Result.PASS  # other dtype
    assert golden_gemm(ws, 0, 128, "float32").result is Result.FAIL
    hot["c"] = (200.0, 85.0)
    assert golden_gemm(ws, 0, 128, "float32").result is Result.PASS  # below the power level


def test_intermittent_fault_shows_in_some_runs_only(make_ws) -> None:
    ws = make_ws(0, InjectedFault(gpu=0, kind="gemm_bitflip", bit=29, probability=0.5, dtypes=("float32",)))
    results = [golden_gemm(ws, 0, 32, "float32").result for _ in range(40)]
    assert 5 < results.count(Result.FAIL) < 35


def test_deterministic_fault_corrupts_the_same_element_every_run(make_ws) -> None:
    ws = make_ws(0, InjectedFault(gpu=0, kind="gemm_bitflip", bit=29, deterministic=True, seed=3))
    hits = set()
    for _ in range(5):
        golden_gemm(ws, 0, 32, "float32")
        hits.add(tuple(ws.engine.last_injected))
    assert len(hits) == 1


def test_fraction_corrupts_that_share_of_elements(make_ws) -> None:
    ws = make_ws(0, InjectedFault(gpu=0, kind="gemm_bitflip", bit=29, fraction=0.01, dtypes=("float64",)))
    g = golden_gemm(ws, 0, 100, "float64")
    assert g.evidence["elements"] == 100
    assert abft(ws, 0, 100, "float64").evidence["failing_rows"] > 1


def test_gemm_results_are_bitwise_reproducible_on_the_numpy_engine(make_ws) -> None:
    ws = make_ws()
    ops = ws.operands(9, 96, "float32")
    c1 = ws.engine.matmul(ops.a, ops.b, "float32")
    c2 = ws.engine.matmul(ops.a, ops.b, "float32")
    assert np.array_equal(c1.view(np.uint32), c2.view(np.uint32))
