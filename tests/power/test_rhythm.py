"""The rhythm in a power trace: its fundamental (not a harmonic), a rhythm below the band, a pulse
or a step (not an oscillation), band-aware decisions and a recording's idle lead-in and tail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.power.analysis import analyze_series, analyze_window
from rasd.model import PowerLimits
from rasd.power.decide import Mode, decide
from rasd.power.settings import PowerSettings
from rasd.power.synthetic import nvml_trace
from rasd.power.trace import write_trace

BAND = (0.1, 3.0)


@dataclass(frozen=True)
class Shape:
    """A power level over time (watts), for nvml_trace: ``fn(t)`` on seconds."""

    fn: object
    noise_watts: float = 3.0

    def value(self, t: np.ndarray) -> np.ndarray:
        return self.fn(t)  # type: ignore[operator]


def two_dips(t: np.ndarray) -> np.ndarray:
    """A 2 s training step with two communication dips (after the forward and the backward pass):
    most of the energy sits at 1 Hz, twice the step rate."""
    ph = np.mod(t, 2.0)
    dip = ((ph >= 0.0) & (ph < 0.35)) | ((ph >= 0.75) & (ph < 1.05))  # 1 Hz peak 1.3x the 0.5 Hz one
    return np.where(dip, 250.0, 650.0)


def checkpoints(t: np.ndarray, train: bool = True) -> np.ndarray:
    """Training (0.7 Hz, 450-600 W) with a checkpoint every 60 s: 12 s near idle (100 W), the
    first from 10 s in."""
    level = 450.0 + 150.0 * (np.mod(t * 0.7, 1.0) < 0.5) if train else np.full_like(t, 520.0)
    return np.where(np.mod(t - 10.0, 60.0) < 12.0, 100.0, level)


def series_of(shape: Shape, seconds: float, gpus: int = 4, start: float = 1_700_000_000.0):
    return {g: nvml_trace(shape, seconds, rng=np.random.default_rng(g), start=start)  # type: ignore[arg-type]
            for g in range(gpus)}


def test_the_fundamental_not_its_stronger_harmonic() -> None:
    t, w = nvml_trace(Shape(two_dips), 30.0)  # type: ignore[arg-type]
    m = analyze_series(t, w, BAND)
    assert m is not None
    assert m.oscillation_hz == pytest.approx(0.5, rel=0.03)
    assert m.oscillation_band == "in"


def test_a_rhythm_below_the_band_is_reported_as_such() -> None:
    t, w = nvml_trace(Shape(lambda x: checkpoints(x, train=False)), 600.0)  # type: ignore[arg-type]
    m = analyze_series(t, w, BAND, min_amplitude_watts=2.0)
    assert m is not None
    assert m.oscillation_hz == pytest.approx(1 / 60.0, rel=0.05)
    assert m.oscillation_band == "below" and m.band_oscillation_hz is None


@pytest.mark.parametrize("kind", ["pulse", "step"])
def test_a_single_pulse_or_step_is_not_an_oscillation(kind: str) -> None:
    if kind == "pulse":
        fn = lambda x: np.where((x % 1e6 > 11.0) & (x % 1e6 < 19.0), 700.0, 400.0)  # noqa: E731
    else:
        fn = lambda x: np.where(x % 1e6 > 12.0, 650.0, 300.0)  # noqa: E731
    t, w = nvml_trace(Shape(fn), 30.0, start=0.0)  # type: ignore[arg-type]
    m = analyze_series(t, w, BAND, min_amplitude_watts=2.0)
    assert m is not None
    assert m.oscillation_hz is None and m.oscillation_band is None
    assert m.swing_watts > 250.0  # the swing is still measured


LIMITS = {g: PowerLimits(700.0, 200.0, 700.0) for g in range(4)}
LIMITED = PowerSettings(allowed_swing_percent=20.0)  # 560 W over 4 GPUs, 140 W each


def test_a_checkpoint_dip_never_sets_a_cap_that_halves_training_power() -> None:
    # A 30 s window holding a checkpoint: the node dips to idle for 12 s, and trains at 0.7 Hz
    # (450-600 W per GPU, a 600 W node swing over the 560 W limit) the rest of the time.
    series = series_of(Shape(checkpoints), 30.0)  # the dip 10-22 s in
    analysis = analyze_window(series, BAND, min_amplitude_watts=2.0)
    d = decide(analysis, LIMITS, LIMITED, 0.0, None, {g: w for g, (_, w) in series.items()})
    assert analysis.node is not None and analysis.node.swing_watts > 1500.0  # dip included
    assert analysis.node.steady_swing_watts == pytest.approx(600.0, rel=0.1)
    assert d.mode in (Mode.CAP, Mode.FLOOR)
    for g in d.gpus.values():
        assert g.target_limit_watts is not None
        assert g.target_limit_watts >= 450.0 + 140.0 - 20.0  # the training trough plus the share
    # Before, the trough was the checkpoint's 100 W: a cap near 240 W, under half of training.


@pytest.mark.parametrize("kind", ["checkpoint", "slow sine"])
def test_a_slow_cycle_alone_is_reported_not_smoothed(kind: str) -> None:
    # A node swing far over the limit from a cycle below the band only: no floor, no cap.
    if kind == "checkpoint":
        shape = Shape(lambda x: checkpoints(x, train=False))
    else:  # +-25 % every 50 s
        shape = Shape(lambda x: 500.0 + 125.0 * np.sin(2 * np.pi * x / 50.0))
    series = series_of(shape, 30.0)
    analysis = analyze_window(series, BAND, min_amplitude_watts=2.0)
    d = decide(analysis, LIMITS, LIMITED, 0.0, None, {g: w for g, (_, w) in series.items()})
    assert analysis.node is not None and analysis.node.swing_watts > 700.0  # limit: 560 W
    assert d.mode is Mode.NONE
    if kind == "slow sine":
        assert "below the 0.1 Hz band" in d.reason


def test_in_band_energy_still_drives_smoothing() -> None:
    series = series_of(Shape(lambda x: 450.0 + 150.0 * (np.mod(x * 0.7, 1.0) < 0.5)), 30.0)
    analysis = analyze_window(series, BAND, min_amplitude_watts=2.0)
    d = decide(analysis, LIMITS, LIMITED, 0.0, None, {g: w for g, (_, w) in series.items()})
    assert d.mode is Mode.FLOOR
    assert all(g.floor_watts == pytest.approx(600.0 - 140.0, rel=0.03) for g in d.gpus.values())


def recording(t: np.ndarray) -> np.ndarray:
    """60 s idle at 70 W, then training at 0.5 Hz (300-600 W) until 360 s, then idle again."""
    train = 300.0 + 300.0 * (np.mod(t * 0.5, 1.0) < 0.5)
    return np.where((t >= 60.0) & (t < 360.0), train, 70.0)


def test_idle_lead_in_and_tail_reported_apart(tmp_path: Path) -> None:
    series = series_of(Shape(recording), 400.0, gpus=2)
    path = tmp_path / "rec.csv"
    path.write_text(write_trace(series))
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    idle = out["idle"]
    assert idle["lead_in_seconds"] == pytest.approx(60.0, abs=1.0)
    assert idle["tail_seconds"] == pytest.approx(40.0, abs=1.0)
    assert idle["lead_in_mean_watts"] == pytest.approx(140.0, rel=0.05)
    node = out["node"]
    assert node["mean_watts"] == pytest.approx(900.0, rel=0.03)  # the steady part alone
    assert node["duration_seconds"] == pytest.approx(300.0, abs=1.0)
    assert node["oscillation_hz"] == pytest.approx(0.5, rel=0.03)
    r = CliRunner().invoke(main, ["power", "analyze", str(path)])
    assert "idle lead-in 60 s" in r.output and "idle tail 40 s" in r.output


def test_a_recording_without_idle_has_none(tmp_path: Path) -> None:
    series = series_of(Shape(lambda x: 300.0 + 300.0 * (np.mod(x * 0.5, 1.0) < 0.5)), 120.0, gpus=2)
    path = tmp_path / "rec.csv"
    path.write_text(write_trace(series))
    r = CliRunner().invoke(main, ["power", "analyze", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["idle"] is None


def test_training_steps_inside_the_band_beside_a_slow_checkpoint_cycle() -> None:
    # Ten minutes of training at 0.7 Hz (42 steps a minute: commensurate with the checkpoint
    # cycle, so the step rate is one of the cycle's multiples) with a checkpoint every minute.
    t, w = nvml_trace(Shape(checkpoints), 600.0)  # type: ignore[arg-type]
    m = analyze_series(t, w, BAND, min_amplitude_watts=2.0)
    assert m is not None
    assert m.oscillation_hz == pytest.approx(1 / 60.0, rel=0.05) and m.oscillation_band == "below"
    assert m.band_oscillation_hz == pytest.approx(0.7, rel=0.02)


def test_a_peak_on_a_slope_at_the_range_edge_does_not_throw_the_search_off() -> None:
    """A random walk's strongest "peak" can sit at the edge of the searched range on a slope; the
    parabola through it is nearly a straight line whose vertex lay hundreds of bins away (once
    below zero), which indexed past the spectrum. This walk (seed 187) did."""
    from rasd.power.spectrum import _interpolate, find_oscillation

    rng = np.random.default_rng(187)
    w = np.cumsum(rng.normal(0, 5, 103)) + 500
    t = np.arange(103) * 0.1
    osc = find_oscillation(t, w, 0.1, BAND, 5.0, min_amplitude_watts=0.0)
    assert osc.hz is None or 0 < osc.hz < 5.0
    m = analyze_series(t, w, BAND)
    assert m is not None and m.swing_watts > 0
    # On a slope the bin is kept; on a crest the vertex stays within half a bin.
    slope = np.exp(np.array([1.0, 2.0, 3.0001, 4.0]))
    assert _interpolate(slope, 1) == 1.0 and _interpolate(slope, 2) == 2.0
    crest = np.exp(np.array([1.0, 3.0, 2.5, 1.0]))
    assert 1.0 < _interpolate(crest, 1) < 1.5
