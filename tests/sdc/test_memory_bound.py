"""SDC work stays within bounded memory: peak RSS of whole commands, measured by the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GIB = 1 << 30

# The child's peak RSS comes from getrusage in a wrapper process of its own: pytest's own children
# (every other test's subprocesses) would otherwise count towards RUSAGE_CHILDREN.
WRAPPER = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": r.returncode, "peak": peak, "stdout": r.stdout, "stderr": r.stderr[-2000:]}))
"""


def _peak(tmp: Path, *args: str) -> dict:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "xs"), XDG_RUNTIME_DIR=str(tmp / "xr"))
    out = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "rasd", *args],
                         capture_output=True, text=True, env=env, timeout=600)
    return json.loads(out.stdout)


def test_standard_validation_of_eight_gpus_stays_under_one_gib(tmp_path: Path) -> None:
    r = _peak(tmp_path, "validate", "--backend", "fake", "--level", "standard", "--json")
    assert r["rc"] in (0, 1, 3), r["stderr"]  # a verdict, whatever it is (throughput is load-sensitive)
    assert len(json.loads(r["stdout"])["gpus"]) == 8
    assert r["peak"] < GIB, f"peak RSS {r['peak'] / 2**20:.0f} MB"


def test_a_deep_check_over_every_gemm_size_stays_under_one_gib(tmp_path: Path) -> None:
    cfg = tmp_path / "deep.toml"
    cfg.write_text("[sdc]\ndeep_seconds = 1.0\ndeep_rounds = 4\ndeep_min_rounds = 4\n")
    r = _peak(tmp_path, "accuse", "--backend", "fake", "--scenario", "sdc", "--gpu", "5", "--reason", "test",
              "--config", str(cfg), "--json")
    assert r["rc"] == 1, r["stderr"]  # GPU 5 of the sdc scenario corrupts: confirmed
    assert "RuntimeWarning" not in r["stderr"]
    assert r["peak"] < GIB, f"peak RSS {r['peak'] / 2**20:.0f} MB"
