"""Finding NVIDIA's mock NVML beside the project and running probes against it in subprocesses."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOCK = (ROOT / ".." / "shared" / "nvml-mock").resolve()
PROFILES = ("h100", "a100", "b200", "gb200", "gb300", "l40s", "t4")


def nvml_header() -> Path | None:
    """NVIDIA's nvml.h from PyPI's nvidia-nvml-dev (a test extra), where it is installed."""
    for p in sys.path:
        for h in glob.glob(os.path.join(p or ".", "nvidia", "*", "include", "nvml.h")):
            return Path(h)
    return None


def gcc_and_nvml_header() -> tuple[str, Path]:
    """gcc and nvml.h, for C built against NVIDIA's header; skips the calling test without them."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tests/run.sh installs it)")
    header = nvml_header()
    if header is None:
        pytest.skip("nvml.h not found: pip install nvidia-nvml-dev (tests/run.sh does)")
    return gcc, header


def mock_dir() -> Path:
    """The mock's folder, or skip the calling test saying why."""
    lib = MOCK / "lib" / "libnvidia-ml.so.1"
    if not lib.is_file():
        pytest.skip(f"NVIDIA's mock NVML is not at {MOCK} (expected lib/libnvidia-ml.so.1 there)")
    return MOCK


def config(profile: str) -> Path:
    return mock_dir() / "configs" / f"mock-nvml-config-{profile}.yaml"


def env_for(lib_dir: Path, config_path: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(lib_dir)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if config_path is not None:
        env["MOCK_NVML_CONFIG"] = str(config_path)
    else:
        env.pop("MOCK_NVML_CONFIG", None)
    return env


def start_probe(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.contract.nvmlprobe", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_probe(p: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"probe failed (rc {p.returncode}): {err[-2000:]}"
    data: dict[str, Any] = json.loads(out)
    data["stderr"] = err
    return data


def failure_config(tmp: Path, profile: str, gpu: int, failure: dict[str, Any]) -> Path:
    """A copy of a stock profile with a ``failure:`` block on one device."""
    import yaml

    cfg = yaml.safe_load(config(profile).read_text())
    cfg["devices"][gpu]["failure"] = failure
    path = tmp / f"{profile}-{failure['mode']}-gpu{gpu}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
