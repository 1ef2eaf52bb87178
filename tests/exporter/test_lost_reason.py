"""Why a GPU is lost reaches its own exported state: the exposition and ``rasd status``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from rasd.cli import main
from rasd.model import Health, LostReason
from tests.exporter.test_exposition import fixed_snapshot, render


def _samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    for fam in text_string_to_metric_families(text):
        if fam.name == family:
            return {tuple(sorted(s.labels.items())): s.value for s in fam.samples}
    return {}


def _refused(error: str) -> str:
    return f"""
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetHandleByIndex"
        error = "{error}"
        """


@pytest.mark.parametrize("error", ["gpu_is_lost", "no_permission", "insufficient_power", "irq_issue"])
def test_a_gpu_refused_at_open_is_down_with_its_reason(fake, tmp_path, error):
    snap = fixed_snapshot(fake, _refused(error))
    bad = snap.gpus[1]
    assert bad.health is Health.LOST and bad.lost_reason is LostReason(error)
    assert bad.lost_detail and bad.lost_detail.startswith("cannot open the GPU: ")
    text = render(snap)
    assert _samples(text, "rasd_gpu_up") == {(("gpu", "0"),): 1.0, (("gpu", "1"),): 0.0}
    # only the lost GPU has the series, and its label is one of a closed set
    assert _samples(text, "rasd_gpu_lost_info") == {(("gpu", "1"), ("reason", error)): 1.0}

    scenario = tmp_path / "s.toml"
    scenario.write_text(_refused(error))
    r = CliRunner().invoke(main, ["status", "--backend", "fake", "--scenario", str(scenario), "--json"])
    assert r.exit_code != 0  # a GPU that is not up fails the command
    gpus = {g["gpu"]: g for g in json.loads(r.stdout)["gpus"]}
    assert gpus[1]["health"] == "lost" and gpus[1]["lost_reason"] == error
    assert gpus[1]["lost_detail"].startswith("cannot open the GPU: ")
    assert gpus[0]["health"] == "up" and gpus[0]["lost_reason"] is None and gpus[0]["lost_detail"] is None

    r = CliRunner().invoke(main, ["status", "--backend", "fake", "--scenario", str(scenario)])
    assert f"GPU 1 lost: {error} (cannot open the GPU: " in r.stdout


def test_a_gpu_lost_later_shows_its_reason(fake):
    snap = fixed_snapshot(fake, """
        [[event]]
        kind = "fall_off_bus"
        at = 0.5
        gpu = 0
        """)
    lost = snap.gpus[0]
    assert lost.health is Health.LOST and lost.lost_reason is LostReason.GPU_IS_LOST
    assert lost.lost_detail and "GPU is lost" in lost.lost_detail  # the reading that found it, NVML's words
    assert snap.gpus[1].lost_reason is None and snap.gpus[1].lost_detail is None
    text = render(snap)
    assert _samples(text, "rasd_gpu_up") == {(("gpu", "0"),): 0.0, (("gpu", "1"),): 1.0}
    assert _samples(text, "rasd_gpu_lost_info") == {(("gpu", "0"), ("reason", "gpu_is_lost")): 1.0}


def test_a_healthy_node_has_no_lost_series(fake):
    text = render(fixed_snapshot(fake))
    assert _samples(text, "rasd_gpu_lost_info") == {}
    assert "rasd_gpu_lost_info" in text  # the family is declared, with no samples
