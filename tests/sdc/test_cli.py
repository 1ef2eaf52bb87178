"""End to end: ``rasd validate`` and ``rasd accuse`` on the fake backend, standalone."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rasd.cli import main

SMALL = """
[sdc]
quick_gemm_size = 64
quick_memory_bytes = 65536
deep_gemm_sizes = [64]
deep_seconds = 0.2
deep_rounds = 3
numpy_memory_bytes = 1048576
"""

CORRUPT_GPU3 = """
description = "GPU 3 flips a float32 exponent bit in GEMM results"
[workload]
kind = "idle"
[[sdc_fault]]
gpu = 3
kind = "gemm_bitflip"
bit = 29
dtypes = ["float32"]
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg = tmp_path / "rasd.toml"
    cfg.write_text(SMALL)

    def invoke(*args: str):
        return CliRunner().invoke(main, [*args, "--config", str(cfg)], catch_exceptions=False)

    return invoke


def test_validate_names_the_corrupting_gpu_and_exits_1(cli, scenario_file) -> None:
    r = cli("validate", "--scenario", scenario_file(CORRUPT_GPU3), "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["result"] == "fail"
    assert [g["gpu"] for g in out["gpus"] if g["result"] == "fail"] == [3]
    golden = next(c for c in out["gpus"][3]["checks"] if c["name"] == "golden_gemm")
    detail = golden["evidence"]["details"][0]
    assert detail["dtype"] == "float32" and detail["first"][0]["differing_bits"] == [29]
    assert all(set(c) >= {"name", "result", "seconds"} for g in out["gpus"] for c in g["checks"])
    assert all("evidence" not in c for c in out["gpus"][0]["checks"])


def test_validate_passes_healthy_gpus_and_exits_0(cli) -> None:
    r = cli("validate", "--backend", "fake")
    assert r.exit_code == 0, r.output
    assert "golden_gemm" in r.output and "gpu 7" in r.output and "result: pass" in r.output


def test_validate_of_busy_gpus_is_inconclusive_exit_3(cli, scenario_file, monkeypatch) -> None:
    from rasd.sdc import engines

    built: list[object] = []
    real = engines.engines_for_backend

    def recording(*a, **k):  # type: ignore[no-untyped-def]
        built.append(k.get("gpus", a[3] if len(a) > 3 else None))
        return real(*a, **k)

    monkeypatch.setattr(engines, "engines_for_backend", recording)
    busy = scenario_file('[workload]\nkind = "training"\n', name="busy")
    r = cli("validate", "--scenario", busy, "--gpu", "0", "--json")
    assert r.exit_code == 3, r.output
    assert "--force" in r.output
    assert built == []  # no engine (on real GPUs, a CUDA context) beside a job
    r = cli("validate", "--scenario", busy, "--gpu", "0", "--force", "--json")
    assert r.exit_code == 0, r.output
    assert built == [{0}]  # the forced GPU only: the others run jobs, no witness among them


@pytest.mark.parametrize("args", [["--gpu", "x"], ["--gpu", "-1"], ["--gpu", "12"], ["--level", "max"]])
def test_bad_usage_exits_2_without_a_traceback(cli, args) -> None:
    r = cli("validate", "--backend", "fake", *args)
    assert r.exit_code == 2
    assert "Traceback" not in r.output


def test_accuse_standalone_records_and_prints_the_verdict(cli, scenario_file, tmp_path) -> None:
    r = cli("accuse", "--scenario", scenario_file(CORRUPT_GPU3), "--gpu", "3", "--reason", "loss spike", "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["verdict"] == "confirmed" and out["evidence"]["reason"] == "loss spike"
    r = cli("accuse", "--backend", "fake", "--gpu", "0", "--reason", "nan")
    assert r.exit_code == 0, r.output
    assert "GPU 0: cleared" in r.output
    from rasd.store import Store

    db = next((tmp_path / "state").rglob("*.db"))
    verdicts = sorted(a.verdict for a in Store(str(db)).accusations())
    assert verdicts == ["cleared", "confirmed"]


def test_validate_and_accuse_go_through_a_running_daemon(cli, fake, fast, tmp_path) -> None:
    from rasd.control import ControlServer
    from rasd.paths import default_control_socket
    from rasd.sdc.service import SdcService
    from rasd.store import Store

    events = []
    svc = SdcService(fast, fake(workload="idle"), Store(":memory:"), events.extend, lock_dir=str(tmp_path / "locks"))
    server = ControlServer(default_control_socket("fake"), svc.handlers())
    server.start()
    try:
        r = cli("validate", "--backend", "fake", "--gpu", "2", "--json")
        assert r.exit_code == 0, r.output
        assert [g["gpu"] for g in json.loads(r.output)["gpus"]] == [2]
        assert {c.gpu for c in svc.state().checks} == {2}  # the daemon ran it
        r = cli("accuse", "--backend", "fake", "--gpu", "1", "--reason", "loss spike")
        assert r.exit_code == 0, r.output
        assert "GPU 1 is suspect" in r.output
        assert 1 in svc.state().suspects or any(e.details["verdict"] != "suspect" for e in events)
    finally:
        server.close()
        svc.close()
