"""What the mock cannot show, against a C library compiled with NVIDIA's nvml.h: the C side's view.

``nvmlstub.c`` is compiled with gcc -Werror against nvml.h from PyPI's nvidia-nvml-dev (so its
prototypes are the header's), loaded as libnvidia-ml.so.1 under the real pynvml, and logs what it
received. Each case runs in its own process (pynvml loads the library once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.contract.mocknvml import ROOT, gcc_and_nvml_header

STUB = Path(__file__).with_name("nvmlstub.c")


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc, header = gcc_and_nvml_header()
    out = tmp_path_factory.mktemp("nvmlstub")
    r = subprocess.run(
        [gcc, "-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
         f"-I{header.parent}", "-o", str(out / "libnvidia-ml.so.1"), str(STUB)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    return out


def run(stub_dir: Path, tmp_path: Path, mode: str, **env: str) -> tuple[dict[str, Any], list[str], str]:
    log = tmp_path / f"{mode}.log"
    e = dict(os.environ)
    e.pop("MOCK_NVML_CONFIG", None)
    e.update({"LD_LIBRARY_PATH": str(stub_dir), "STUB_LOG": str(log),
              "PYTHONPATH": str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")})
    e.update(env)
    r = subprocess.run([sys.executable, "-m", "tests.contract.stubprobe", mode],
                       cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines() if log.exists() else []
    return json.loads(r.stdout), lines, r.stderr


def _calls(lines: list[str], what: str) -> list[dict[str, str]]:
    return [dict(kv.split("=", 1) for kv in ln.split()[1:]) for ln in lines if ln.startswith(what + " ")]


def test_smoothing_reaches_c_through_pointers_with_versions_and_header_units(stub_dir: Path, tmp_path: Path) -> None:
    got, lines, _ = run(stub_dir, tmp_path, "smoothing", STUB_DRIVER="580.82.07")
    assert got["refused"] is None and got["supported"] is True
    updates = _calls(lines, "update")
    assert {(u["pointer_readable"], u["version_ok"], u["profile"]) for u in updates} == {("1", "1", "1")}
    # nvml.h: % floor, ramp rates in mW/s, hysteresis in ms
    assert [(u["param"], float(u["value"])) for u in updates] == [
        ("0", 60.0), ("1", 2_000_000.0), ("2", 1_000_000.0), ("3", 100.0)]
    assert _calls(lines, "activate") == [{"gpu": "0", "pointer_readable": "1", "version_ok": "1", "profile": "1"}]
    assert [(s["pointer_readable"], s["version_ok"], s["state"]) for s in _calls(lines, "state")] == [
        ("1", "1", "1"), ("1", "1", "0")]
    # read back from the profile's own fields (scopeId = profile) and converted to W/s
    assert got["readback"] == {"enabled": 1.0, "floor_percent": 60.0, "ramp_up_watts_per_second": 2000.0,
                               "ramp_down_watts_per_second": 1000.0, "hysteresis_ms": 100.0}


def test_a_struct_by_value_reaches_c_as_garbage(stub_dir: Path, tmp_path: Path) -> None:
    """Why the adapter passes ctypes.byref: pynvml declares no argtypes for these calls."""
    got, lines, _ = run(stub_dir, tmp_path, "by_value")
    assert got == {"by_value": "Invalid Argument", "by_reference": "accepted"}
    assert [s["pointer_readable"] for s in _calls(lines, "state")] == ["0", "1"]


def test_smoothing_refused_where_driver_and_binding_number_fields_differently(stub_dir: Path, tmp_path: Path) -> None:
    got, lines, stderr = run(stub_dir, tmp_path, "smoothing", STUB_DRIVER="580.65.06", STUB_NUMBERING="r575")
    assert got["supported"] is False and "580.65.06" in got["refused"]
    assert "refused" in got["error"]
    assert stderr.count("event=smoothing_refused") == 1
    assert _calls(lines, "update") == [] and _calls(lines, "state") == []


def test_field_ids_follow_the_binding_when_both_use_the_r575_numbering(stub_dir: Path, tmp_path: Path) -> None:
    got, lines, _ = run(stub_dir, tmp_path, "renumbered", STUB_DRIVER="575.51.03", STUB_NUMBERING="r575")
    assert got["refused"] is None and got["readback"]["ramp_up_watts_per_second"] == 2000.0
    asked = {int(f["id"]) for f in _calls(lines, "field")}
    assert asked and all(256 <= i <= 269 for i in asked), asked


@pytest.mark.parametrize("error,text", [
    ("GPU_IS_LOST", "GPU is lost"),
    ("NO_PERMISSION", "Insufficient Permissions"),
    ("INSUFFICIENT_POWER", "Insufficient External Power"),
    ("IRQ_ISSUE", "Interrupt Request Issue"),
])
def test_errors_at_open_take_down_one_gpu(stub_dir: Path, tmp_path: Path, error: str, text: str) -> None:
    got, _, stderr = run(stub_dir, tmp_path, "open", STUB_GPUS="3", STUB_OPEN_ERRORS=f"1={error}")
    by = {g["index"]: g for g in got["gpus"]}
    assert by[0]["polled"] and by[2]["polled"]
    assert text in by[1]["unopened"] and text in by[1]["lost"]
    assert got["registered"] == [0, 2]
    assert stderr.count("event=gpu_open_failed") == 1


def test_an_event_wait_answering_lost_keeps_the_other_gpus_watched(stub_dir: Path, tmp_path: Path) -> None:
    got, lines, stderr = run(stub_dir, tmp_path, "events", STUB_GPUS="3", STUB_EVENTS="1:79,lost:1,2:94")
    # Xid 79 is mapped by its handle (nvmlDeviceGetIndex would answer GPU_IS_LOST), the lost answer
    # drops GPU 1, and GPU 2's Xid still arrives on the rebuilt set
    assert got["waits"][:3] == [[1, 79], None, [2, 94]]
    assert got["lost"] == [1] and got["registered"] == [0, 2]
    assert [ln for ln in lines if ln.startswith("register")][-2:] == ["register gpu=0", "register gpu=2"]
    assert "event=xid_watch_dropped gpus=1" in stderr
