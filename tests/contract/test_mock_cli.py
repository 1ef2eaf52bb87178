"""`rasd status` and `rasd run` with --backend nvml on NVIDIA's mock H100 node, as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rasd.backends.nvml.powerloop import library_path
from tests.contract.mocknvml import ROOT, config, env_for, mock_dir
from tests.e2e.helpers import free_port, http_get, wait_for

GIB = 1024**3


def _env(tmp: Path) -> dict[str, str]:
    env = env_for(mock_dir() / "lib", config("h100"))
    # the NVML backend's state and socket default to the system's (/var/lib/rasd, /run/rasd), where
    # one daemon per state is enforced: keep this test's daemon to itself, as systemd would
    env.update({"XDG_STATE_HOME": str(tmp / "state"), "XDG_RUNTIME_DIR": str(tmp / "run"),
                "STATE_DIRECTORY": str(tmp / "state"), "RUNTIME_DIRECTORY": str(tmp / "run")})
    return env


def test_status_on_the_mock_h100(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rasd", "status", "--backend", "nvml", "--json"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    gpus = got["gpus"]
    assert len(gpus) == 8 and {g["health"] for g in gpus} == {"up"}
    assert sum(g["nvlinks_up"] for g in gpus) == sum(g["nvlinks_total"] for g in gpus) == 144
    assert {g["power_limit_watts"] for g in gpus} == {700.0}
    assert got["node"]["backend"] == "nvml" and got["node"]["driver_version"] == "550.163.01"


def _value(text: str, name: str, **labels: str) -> list[float]:
    out = []
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            out.append(float(m.group(2)))
    return out


def test_run_on_the_mock_h100_serves_a_healthy_node(tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "rasd.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasd", "run", "--backend", "nvml", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    def ready() -> str | None:
        t = http_get(url)
        return t if _value(t, "rasd_gpu_power_watts") and _value(t, "rasd_node_repair_rung") else None

    try:
        text = wait_for(ready, timeout=45)
        time.sleep(1.5)  # a few more polls: still healthy, still no decision
        text = http_get(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "rasd.log").read_text()[-3000:]
    assert _value(text, "rasd_gpu_up") == [1.0] * 8
    assert sum(_value(text, "rasd_gpu_nvlink_up")) == len(_value(text, "rasd_gpu_nvlink_up")) == 144
    assert set(_value(text, "rasd_gpu_power_limit_watts")) == {700.0}
    assert set(_value(text, "rasd_gpu_memory_total_bytes")) == {80 * GIB}
    assert _value(text, "rasd_node_repair_rung") == [0.0]
    assert set(_value(text, "rasd_gpu_repair_rung")) <= {0.0}
    # every read is stamped new on the mock: 12.5 distinct updates a GPU a second, on whichever
    # reader runs (the native one wherever the install built it)
    rates = _value(text, "rasd_gpu_power_sample_rate_hz")
    assert len(rates) == 8 and all(11.5 <= r <= 13.5 for r in rates), rates
    reader = "native" if library_path() is not None else "python"
    assert f"power_reads={reader}" in (tmp_path / "rasd.log").read_text()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (tests/run.sh installs Debian's prometheus package)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    assert os.path.exists(tmp_path / "rasd.log")
