"""`rasd power` live on the fake backend (real time: kept to about two seconds)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.cli.power import parse_duration


def test_live_json_on_the_power_swing_scenario(swing_limit_config) -> None:
    r = CliRunner().invoke(main, ["power", "--backend", "fake", "--scenario", "power-swing",
                                  "--duration", "2s", "--json", "--config", swing_limit_config()])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["backend"] == "fake"
    assert len(out["gpus"]) == 8
    node = out["node"]
    # power-swing: 1.6 s steps from above the limit down to 15 % of it, all GPUs in phase
    assert node["swing_watts"] > 0.5 * 8 * 700.0
    assert 8.0 <= node["sample_rate_hz"] <= 11.0  # NVML's ~10 Hz refresh, every update captured
    assert out["decision"]["mode"] in {"floor", "cap"}
    assert set(out["sampler_rates_hz"]) == {str(g) for g in range(8)}


def test_live_text_has_the_plots() -> None:
    r = CliRunner().invoke(main, ["power", "--backend", "fake", "--duration", "1.5s"])
    assert r.exit_code == 0, r.output
    assert "node power:" in r.output and "node spectrum:" in r.output and "decision:" in r.output


@pytest.mark.parametrize("text,seconds", [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_exits_2() -> None:
    r = CliRunner().invoke(main, ["power", "--backend", "fake", "--duration", "soon"])
    assert r.exit_code == 2 and "--duration" in r.output
    r = CliRunner().invoke(main, ["power", "--backend", "fake", "--duration", "200ms"])
    assert r.exit_code == 2 and "at least 1s" in r.output
