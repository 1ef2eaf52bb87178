"""Every documented trace form: nvidia-smi CSVs with any columns, units or none, GPUs named by
index, bus id, uuid, serial or by the row cycle; repeated readings kept once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.power import trace as trace_mod
from rasd.power.analysis import analyze_series
from rasd.power.synthetic import Wave, nvml_trace
from rasd.power.trace import TraceError, parse_trace
from tests.power.smi import BUS, smi_log, stamp

WAVE = Wave(hz=0.5, swing_watts=300.0, base_watts=300.0, shape="sine", noise_watts=2.0)


def updates(gpus: int = 2, seconds: float = 30.0, wave: Wave = WAVE) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """NVML's own updates (10 Hz) per GPU, as the daemon's sampler would keep them."""
    return {g: nvml_trace(wave, seconds, rng=np.random.default_rng(g), start=1_714_564_800.0 + 0.013 * g)
            for g in range(gpus)}


@pytest.mark.parametrize("columns", [
    ["timestamp", "index", "power.draw.instant"],
    ["name", "index", "timestamp", "utilization.gpu", "power.draw", "power.draw.instant", "temperature.gpu",
     "clocks.sm", "memory.used"],
    ["power.draw.instant", "memory.used", "timestamp", "index"],
])
@pytest.mark.parametrize("units", [True, False])
def test_any_columns_in_any_order_with_or_without_units(columns: list[str], units: bool) -> None:
    truth = updates()
    tr = parse_trace(smi_log(truth, columns, units=units))
    assert tr.layout == "nvidia-smi" and tr.power_column == "power.draw.instant"
    assert tr.gpu_source == "column index" and set(tr.series) == {0, 1}
    t, w = tr.series[1]
    # Each NVML update appears once (logged at 10 Hz, some are seen twice, some missed).
    assert w.size == pytest.approx(truth[1][1].size, rel=0.15)
    assert set(np.round(w, 2)) <= set(np.round(truth[1][1], 2))
    assert any("power.draw.instant" in n for n in tr.notes)


def test_power_draw_when_there_is_no_instant_column() -> None:
    tr = parse_trace(smi_log(updates(), ["timestamp", "index", "power.draw", "utilization.gpu"]))
    assert tr.power_column == "power.draw"
    assert any("power.draw.instant is not in the file" in n for n in tr.notes)


def test_instant_reading_not_available_falls_back_to_power_draw() -> None:
    text = smi_log(updates(), ["timestamp", "index", "power.draw.instant", "power.draw"],
                   overrides={"power.draw.instant": "[N/A]"})
    tr = parse_trace(text)
    assert tr.power_column == "power.draw"
    assert any("[N/A]" in n for n in tr.notes)


@pytest.mark.parametrize("column", ["pci.bus_id", "uuid", "serial"])
def test_gpu_named_by_bus_id_uuid_or_serial(column: str) -> None:
    tr = parse_trace(smi_log(updates(3), ["timestamp", column, "power.draw.instant"]))
    assert tr.gpu_source == f"column {column}"
    assert sorted(tr.series) == [0, 1, 2]
    if column == "pci.bus_id":
        assert tr.gpu_ids == {g: BUS.format(0x18 + 0x11 * g) for g in range(3)}
    assert len(set(tr.gpu_ids.values())) == 3


def test_index_wins_over_other_gpu_columns() -> None:
    tr = parse_trace(smi_log(updates(2), ["uuid", "timestamp", "pci.bus_id", "index", "power.draw"]))
    assert tr.gpu_source == "column index"


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_row_cycle_recognised_without_a_gpu_column(gpus: int) -> None:
    truth = {g: nvml_trace(Wave(hz=0.5, swing_watts=100.0 + 40 * g, base_watts=200.0), 20.0,
                           rng=np.random.default_rng(g)) for g in range(gpus)}
    tr = parse_trace(smi_log(truth, ["timestamp", "power.draw.instant", "temperature.gpu"]))
    assert tr.gpu_source == "row cycle" and sorted(tr.series) == list(range(gpus))
    assert any(f"cycle of {gpus} GPUs" in n and "recognised" in n for n in tr.notes)
    for g in range(gpus):  # each GPU got its own rows: its swing, not a neighbour's
        w = tr.series[g][1]
        assert float(np.ptp(w)) == pytest.approx(100.0 + 40 * g, rel=0.1)


def test_gpus_option_when_the_cycle_cannot_be_told() -> None:
    # Two GPUs read 50 ms apart with a 100 ms interval: as much a cycle of 1 as of 2.
    t = 1_714_564_800.0 + np.arange(400) * 0.05
    lines = ["timestamp, power.draw [W]"] + [
        f"{stamp(ti)}, {300 + 100 * (k % 2) + (k // 2) % 7:.2f} W"
        for k, ti in enumerate(t)
    ]
    text = "\n".join(lines) + "\n"
    tr = parse_trace(text, gpus=2)
    assert tr.gpu_source == "gpus option" and sorted(tr.series) == [0, 1]
    assert float(np.min(tr.series[1][1])) >= 400.0 > float(np.max(tr.series[0][1]))
    assert any("as given by --gpus" in n for n in tr.notes)


def test_no_gpu_column_and_no_cycle_is_one_clear_error() -> None:
    rng = np.random.default_rng(3)
    t = 1_714_564_800.0 + np.cumsum(rng.uniform(0.001, 0.2, 300))
    text = "timestamp, power.draw [W]\n" + "".join(f"{stamp(x)}, 300.00 W\n" for x in t)
    with pytest.raises(TraceError) as e:
        parse_trace(text)
    assert "--gpus N" in str(e.value) and "index" in str(e.value)


def test_gpus_option_with_a_gpu_column_is_refused() -> None:
    with pytest.raises(TraceError, match="drop --gpus"):
        parse_trace(smi_log(updates(), ["timestamp", "index", "power.draw"]), gpus=2)


def test_no_header_is_named() -> None:
    text = smi_log(updates(), ["timestamp", "index", "power.draw"], header=False)
    with pytest.raises(TraceError, match="noheader"):
        parse_trace(text)


def test_crlf_blank_lines_and_a_repeated_header() -> None:
    text = smi_log(updates(), ["timestamp", "index", "power.draw.instant"])
    lines = text.splitlines()
    doubled = lines[:200] + ["", lines[0]] + lines[200:]
    tr = parse_trace("\r\n".join(doubled) + "\r\n")
    ref = parse_trace(text)
    np.testing.assert_array_equal(tr.series[0][1], ref.series[0][1])


def test_block_boundaries_keep_rows_and_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    text = smi_log(updates(), ["timestamp", "index", "power.draw.instant"], log_hz=20.0)
    whole = parse_trace(text)
    monkeypatch.setattr(trace_mod, "BLOCK_CHARS", 997)  # many blocks, cut mid-line
    cut = parse_trace(text)
    assert cut.rows == whole.rows
    for g in whole.series:
        np.testing.assert_array_equal(cut.series[g][0], whole.series[g][0])
        np.testing.assert_array_equal(cut.series[g][1], whole.series[g][1])
    lines = text.splitlines()
    lines[700] = lines[700].rsplit(",", 1)[0] + ", [Unknown Error]"
    with pytest.raises(TraceError) as e:
        parse_trace("\n".join(lines) + "\n")
    assert e.value.problems == ["line 701: power reading '[Unknown Error]' is not a number"]


@pytest.mark.parametrize("log_hz", [20.0, 50.0, 100.0])
def test_a_fast_log_of_a_10hz_sensor_reports_the_sensor(log_hz: float) -> None:
    # The sensor updates at 10 Hz; logged at 20-100 Hz every update is seen several times. Counted
    # once, the rate, ramps and oscillation are those of the sensor.
    truth = updates(1, 60.0, Wave(hz=0.7, swing_watts=300.0, base_watts=300.0, shape="sine", noise_watts=1.0))
    t0, w0 = truth[0]
    ref = analyze_series(t0, w0, (0.1, 3.0))
    tr = parse_trace(smi_log(truth, ["timestamp", "index", "power.draw.instant"], log_hz=log_hz))
    t, w = tr.series[0]
    m = analyze_series(t, w, (0.1, 3.0))
    assert ref is not None and m is not None
    assert tr.repeats > 0.4 * tr.rows
    assert m.sample_rate_hz == pytest.approx(10.0, rel=0.05)
    assert m.ramp_up_watts_per_second == pytest.approx(ref.ramp_up_watts_per_second, rel=0.25)
    assert m.ramp_down_watts_per_second == pytest.approx(ref.ramp_down_watts_per_second, rel=0.25)
    assert m.oscillation_hz == pytest.approx(0.7, rel=0.03)
    assert m.swing_watts == pytest.approx(ref.swing_watts, rel=0.05)


def test_cli_says_which_column_and_gpus_it_used(tmp_path: Path) -> None:
    path = tmp_path / "smi.csv"
    path.write_text(smi_log(updates(4), ["timestamp", "power.draw", "power.draw.instant", "utilization.gpu"],
                            log_hz=20.0))
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["power_column"] == "power.draw.instant" and out["gpu_source"] == "row cycle"
    assert set(out["gpus"]) == {"0", "1", "2", "3"}
    assert out["updates"] < out["rows"]
    r = CliRunner().invoke(main, ["power", "analyze", str(path)])
    assert r.exit_code == 0, r.output
    assert "note: power from column power.draw.instant" in r.output
    assert "note: no GPU column: rows taken as a cycle of 4 GPUs" in r.output
