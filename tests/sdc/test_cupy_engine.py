"""The CuPy engine on a real GPU (skipped where CuPy or a GPU is missing)."""

from __future__ import annotations

import pytest

from rasd.sdc.results import Result

pytestmark = pytest.mark.nvml


@pytest.fixture
def cupy_ws():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA driver")
    from rasd.sdc.engines_cupy import CupyEngine
    from rasd.sdc.gemm import Workspace

    return Workspace(CupyEngine(0, 0))


def test_import_without_cupy_does_not_break_rasd() -> None:
    import rasd.sdc.engines  # noqa: F401 - importing must work on a node without CuPy


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_gemm_checks_pass_on_a_healthy_gpu(cupy_ws, dtype: str) -> None:
    from rasd.sdc.gemm import abft, freivalds, golden_gemm

    assert golden_gemm(cupy_ws, 0, 512, dtype).result is Result.PASS
    assert abft(cupy_ws, 0, 512, dtype).result is Result.PASS
    assert freivalds(cupy_ws, 0, 512, dtype, 16).result is Result.PASS


def test_memory_tests_pass_on_a_healthy_gpu(cupy_ws) -> None:
    from rasd.sdc.memory import TESTS, memory_check

    for test in TESTS:
        r = memory_check(cupy_ws.engine, 8 << 20, test, 0)
        assert r.result is Result.PASS, r.evidence
        assert r.evidence["base_address"] > 0


def test_a_quick_check_in_a_child_process_on_a_real_gpu(cupy_ws, tmp_path) -> None:
    """The daemon's way on real GPUs: the child builds the CuPy engines, checks, and exits."""
    from rasd.backends import open_backend
    from rasd.sdc.isolated import ChildValidator
    from rasd.sdc.locks import GpuLocks
    from rasd.sdc.probe import BusyProbe
    from rasd.sdc.settings import SdcSettings

    be = open_backend("nvml")
    try:
        handles = {g.index: g for g in be.adapter.gpus()}
        v = ChildValidator(SdcSettings(), handles, GpuLocks(str(tmp_path)), BusyProbe(handles), {"kind": "nvml"})
        outcome = v.run([0], "quick", force=True)
    finally:
        be.close()
    (row,) = outcome.report.gpus
    assert row.result is Result.PASS, row.to_dict()
    assert {c.name for c in row.checks} >= {"golden_gemm", "abft", "freivalds", "memory"}
