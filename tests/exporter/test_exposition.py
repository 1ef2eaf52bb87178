"""The exposition: golden text for a fixed fake node, promtool's lint, and section isolation."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from exporters.prometheus import load_sections, make_registry
from rasd.snapshot import Snapshot
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller
from rasd.backends.fake.clock import ManualClock

GOLDEN = Path(__file__).with_name("golden_gpu.prom")
WALL = 1_800_000_000.0


def fixed_snapshot(fake, scenario: str | None = None) -> Snapshot:
    clock = ManualClock()
    be = fake(scenario, seed=1, clock=clock, gpus=2)
    agg = Aggregator()
    pollers = [GpuPoller(g, 1.0, 2.0, clock=clock, wall=lambda: WALL) for g in be.adapter.gpus()]
    states = []
    for p in pollers:
        p.poll_once()
    clock.advance(1.0)
    for p in pollers:
        p.poll_once()
        st, _ = agg.update(p.view(), WALL)
        states.append(st)
    node = be.adapter.node_identity("node-a", "fake")
    return Snapshot(time_wall=WALL, node=node, gpus=tuple(states), health_polls=2)


def render(snap: Snapshot, names=("gpu", "daemon")) -> str:
    reg = make_registry(lambda: snap, load_sections(names))
    text = generate_latest(reg).decode()
    # durations and the Python version differ from run to run
    keep = [ln for ln in text.splitlines() if "collector_duration_seconds" not in ln and "poll_duration_seconds{" not in ln and not ln.startswith("rasd_build_info{")]
    return "\n".join(keep) + "\n"


def test_golden_exposition(fake):
    text = render(fixed_snapshot(fake))
    if os.environ.get("RASD_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed; if intended, rerun with RASD_UPDATE_GOLDEN=1"


def test_unsupported_reading_is_absent_not_zero(fake):
    snap = fixed_snapshot(
        fake,
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetPcieReplayCounter"
        error = "not_supported"
        """,
    )
    text = render(snap)
    assert 'rasd_gpu_pcie_replays_total{gpu="0"}' in text
    assert 'rasd_gpu_pcie_replays_total{gpu="1"}' not in text
    assert "NaN" not in text


def test_a_failing_section_is_isolated(fake):
    snap = fixed_snapshot(fake)

    def broken(_snap):
        raise RuntimeError("bug")
        yield  # pragma: no cover

    sections = load_sections(("gpu",))
    sections["broken"] = broken
    text = generate_latest(make_registry(lambda: snap, sections)).decode()
    assert 'rasd_exporter_collector_success{collector="broken"} 0.0' in text
    assert 'rasd_exporter_collector_success{collector="gpu"} 1.0' in text
    assert "rasd_gpu_power_watts" in text


def test_promtool_finds_nothing(fake, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (tests/run.sh installs Debian's prometheus package)")
    text = render(fixed_snapshot(fake), names=("gpu", "daemon"))
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
