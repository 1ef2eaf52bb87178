"""The native power loop through the real pynvml on NVIDIA's mock NVML: the same readings as the
Python loop's, a lost GPU found lost by both, and the others sampled at the configured rate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import FAILED_GPU
from tests.contract.mocknvml import ROOT, config, env_for, failure_config, mock_dir

SOURCE = ROOT / "rasd" / "backends" / "nvml" / "_powerloop.c"


def _probe(env: dict[str, str], library: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "tests.contract.powerprobe", "--seconds", "1.2", "--library", str(library)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The native reader, compiled here as the install compiles it (without the install's
    build, so a checkout that was never installed tests it too)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tests/run.sh installs it)")
    out = tmp_path_factory.mktemp("native") / "_powerloop.so"
    r = subprocess.run([gcc, "-std=gnu11", "-O2", "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-lpthread"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_native_reads_match_the_python_reads_on_the_mock(built):
    got = _probe(env_for(mock_dir() / "lib", config("h100")), built)
    native, python = got["native"], got["python"]
    assert native["native"] is True and python["native"] is False
    for mode in (native, python):
        assert mode["lost"] == [] and mode["stats"]["failures"] == 0
        # 12.5 reads a second per GPU for 1.2 s
        assert 8 * 12 <= mode["stats"]["reads"] <= 8 * 17
        assert mode["lag_ms"] is not None and mode["lag_ms"] < 100  # the mock stamps each read
    for gpu, watts in native["watts"].items():
        assert watts, f"GPU {gpu}: no reading"
        lo, hi = min(python["watts"][gpu]), max(python["watts"][gpu])
        assert all(0.8 * lo <= w <= 1.2 * hi for w in watts), (gpu, watts, python["watts"][gpu])  # W, not mW


def test_a_lost_gpu_is_lost_to_the_native_reads_and_the_others_are_read(built, tmp_path):
    path = failure_config(tmp_path, "h100", FAILED_GPU, {"mode": "lost"})
    got = _probe(env_for(mock_dir() / "lib", path), built)
    assert got["native"]["native"] is True  # the other GPUs' handles opened: the native loop runs
    for mode in ("native", "python"):
        m = got[mode]
        assert m["lost"] == [FAILED_GPU], mode
        assert m["watts"][str(FAILED_GPU)] == []
        assert all(m["watts"][str(g)] for g in range(8) if g != FAILED_GPU), mode
