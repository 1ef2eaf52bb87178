"""Recorded traces: both CSV layouts, bad rows with line numbers, and `rasd power analyze`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.power.synthetic import Wave, nvml_trace
from rasd.power.trace import TraceError, parse_trace, write_trace

KEYS = {"oscillation_hz", "swing_watts", "ramp_up_watts_per_second", "ramp_down_watts_per_second",
        "band_energy_ratio", "sample_rate_hz"}


def smi_text(series: dict[int, tuple[np.ndarray, np.ndarray]], units: bool = True) -> str:
    """What `nvidia-smi --query-gpu=timestamp,index,power.draw --format=csv -lms 100` prints."""
    lines = ["timestamp, index, power.draw [W]"]
    rows = []
    for g, (t, w) in series.items():
        rows += [(ti, g, wi) for ti, wi in zip(t, w)]
    for t, g, w in sorted(rows):
        stamp = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        lines.append(f"{stamp}, {g}, {w:.2f}{' W' if units else ''}")
    return "\n".join(lines) + "\n"


def swinging(gpus: int = 2) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {g: nvml_trace(Wave(hz=0.6, swing_watts=300.0, base_watts=300.0, shape="square", noise_watts=4.0),
                          30.0, rng=np.random.default_rng(g)) for g in range(gpus)}


def test_rasd_layout_round_trips() -> None:
    series = swinging()
    tr = parse_trace(write_trace(series))
    assert tr.layout == "rasd" and tr.rows == 600
    np.testing.assert_allclose(tr.series[1][1], series[1][1], atol=1e-3)


@pytest.mark.parametrize("units", [True, False])
def test_nvidia_smi_layout_unchanged(units: bool) -> None:
    series = swinging()
    tr = parse_trace(smi_text(series, units))
    assert tr.layout == "nvidia-smi" and set(tr.series) == {0, 1}
    t, w = tr.series[0]
    assert t[1] - t[0] == pytest.approx(series[0][0][1] - series[0][0][0], abs=2e-3)
    np.testing.assert_allclose(w, series[0][1], atol=0.01)


def test_nvidia_smi_instant_column_and_no_fraction() -> None:
    text = "timestamp, index, power.draw.instant [W]\n2024/05/01 12:00:00, 0, 312.45 W\n"
    tr = parse_trace(text)
    assert tr.series[0][1][0] == 312.45
    assert tr.series[0][0][0] == datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = (
        "timestamp, index, power.draw [W]\n"
        "2024/05/01 12:00:00.100, 0, 300.00 W\n"
        "2024/05/01 12:00:00.200, 0, [N/A]\n"
        "yesterday, 0, 300 W\n"
        "\n"
        "2024/05/01 12:00:00.400, x, 300 W\n"
        "2024/05/01 12:00:00.500, 0\n"
    )
    with pytest.raises(TraceError) as e:
        parse_trace(text, source="t.csv")
    assert [p.split(":")[0] for p in e.value.problems] == ["line 3", "line 4", "line 6", "line 7"]
    assert "[N/A]" in e.value.problems[0]


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("time,gpu,power\n1,0,3\n", "header"),
    ("timestamp,gpu,watts\n", "no rows"),
    ("timestamp,gpu,watts\n1,0,-5\n", "negative"),
    ("timestamp,gpu,watts\n1,0,nan\n", "not finite"),
])
def test_unusable_files(text: str, why: str) -> None:
    with pytest.raises(TraceError) as e:
        parse_trace(text)
    assert why in str(e.value)


def test_analyze_json_has_the_documented_keys(tmp_path: Path, swing_limit_config) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(smi_text(swinging(3)))
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--json", "--limit-watts", "700",
                                  "--config", swing_limit_config()])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["gpus"]) == {"0", "1", "2"}
    for m in list(out["gpus"].values()) + [out["node"]]:
        assert KEYS <= set(m)
        assert m["oscillation_hz"] == pytest.approx(0.6, rel=0.05)
    assert out["node"]["swing_watts"] == pytest.approx(900.0, rel=0.10)
    assert out["decision"]["mode"] in {"none", "floor", "ramp", "cap"}
    assert out["decision"]["mode"] == "cap"  # a floor would cost ~18 % energy, budget 10 %
    assert out["decision"]["gpus"]["0"]["target_limit_watts"] == pytest.approx(300.0 + 140.0, rel=0.05)


def test_analyze_with_a_config_picks_floor(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(write_trace(swinging(2)))
    cfg = tmp_path / "rasd.toml"
    cfg.write_text("[power]\nallowed_swing_percent = 20.0\nenergy_budget_percent = 30.0\n")
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--json", "--limit-watts", "700",
                                  "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["decision"]
    assert d["mode"] == "floor"
    assert d["gpus"]["1"]["floor_watts"] == pytest.approx(600.0 - 140.0, rel=0.05)
    assert d["gpus"]["1"]["floor_percent"] == pytest.approx(100 * d["gpus"]["1"]["floor_watts"] / 700.0)


def test_analyze_text_shows_plots(tmp_path: Path, swing_limit_config) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(write_trace(swinging(2)))
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--config", swing_limit_config()])
    assert r.exit_code == 0, r.output
    assert "node power:" in r.output and "node spectrum:" in r.output and "Nyquist" in r.output
    assert "decision: cap" in r.output


def test_analyze_bad_rows_exit_2_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,gpu,watts\n1.0,0,300\n1.1,0,abc\n1.2,zero,300\n")
    r = CliRunner().invoke(main, ["power", "analyze", str(path)])
    assert r.exit_code == 2
    assert "line 3" in r.output and "line 4" in r.output
    assert "Traceback" not in r.output


def test_analyze_missing_file_and_bad_config(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["power", "analyze", str(tmp_path / "nope.csv")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    path = tmp_path / "trace.csv"
    path.write_text(write_trace(swinging(1)))
    cfg = tmp_path / "rasd.toml"
    cfg.write_text("[power]\nband_low_hz = 5.0\nband_high_hz = 1.0\n")
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--config", str(cfg)])
    assert r.exit_code == 2 and "band_low_hz" in r.output


def test_analyze_too_short_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("timestamp,gpu,watts\n1.0,0,300\n1.1,0,310\n")
    r = CliRunner().invoke(main, ["power", "analyze", str(path)])
    assert r.exit_code == 2 and "too few" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
