"""The report of `rasd power` and `rasd power analyze`: analysis, decision, text and plots (NumPy)."""

from __future__ import annotations

from array import array

import dataclasses
from typing import Any, Mapping

import click
import numpy as np

from rasd.cli.common import fail, print_json
from rasd.model import PowerLimits
from rasd.power.analysis import WindowAnalysis, amplitude_spectrum, analyze_window, node_sum
from rasd.power.decide import SmoothingDecision, decide
from rasd.power.plot import spectrum_plot, trace_plot
from rasd.power.settings import PowerSettings
from rasd.power.steady import idle_edges
from rasd.power.trace import Trace


def report_trace(parsed: Trace, limit_watts: float | None, settings: PowerSettings, as_json: bool) -> None:
    """A recorded trace: each GPU's limit (given, else its peak), the idle edges left out."""
    limits = {}
    for g, (_, w) in parsed.series.items():
        if not w.size:
            continue
        lim = limit_watts if limit_watts is not None else float(np.max(w))
        limits[g] = PowerLimits(lim, 0.0, max(lim, float(np.max(w))))
    extra = {
        "layout": parsed.layout,
        "rows": parsed.rows,
        "updates": parsed.updates,
        "power_column": parsed.power_column,
        "gpu_source": parsed.gpu_source,
        "gpu_ids": {str(g): v for g, v in parsed.gpu_ids.items()},
        "notes": list(parsed.notes),
    }
    report(parsed.series, limits, settings, as_json, extra=extra, trim_idle=True)


def report(
    series: Mapping[int, tuple[np.ndarray, np.ndarray]],
    limits: Mapping[int, PowerLimits],
    settings: PowerSettings,
    as_json: bool,
    extra: Mapping[str, Any],
    trim_idle: bool = False,
) -> None:
    extra = dict(extra)
    if trim_idle:
        # A recording's idle lead-in and tail (before the job starts, after it ends) are reported
        # apart and left out: the analysis and decision are about the steady part.
        summed = node_sum({g: s for g, s in series.items() if s[0].size >= 8})
        edges = idle_edges(summed[0], summed[1], settings.band_low_hz) if summed is not None else None
        extra["idle"] = edges.as_dict() if edges is not None else None
        if edges is not None:
            series = {
                g: (t[(t >= edges.steady_start) & (t <= edges.steady_end)], w[(t >= edges.steady_start) & (t <= edges.steady_end)])
                for g, (t, w) in series.items()
            }
            series = {g: s for g, s in series.items() if s[0].size}
            limits = {g: lim for g, lim in limits.items() if g in series}
            if not series:
                fail("the recording is idle throughout; nothing to analyse")
    # One-shot: the whole recording is the window, so a short one can still be decided on.
    span = max(float(t[-1] - t[0]) for t, _ in series.values() if len(t))
    settings = dataclasses.replace(settings, window_seconds=max(span, 1.0))
    band = (settings.band_low_hz, settings.band_high_hz)
    analysis = analyze_window(series, band, min_amplitude_watts=settings.oscillation_min_watts)
    if analysis.node is None and not analysis.gpus:
        fail("too few distinct readings to analyse (need at least 8 per GPU); record longer")
    # The decision's energy estimates walk the readings in Python: array('d') walks them fastest.
    readings = {g: array("d", w.astype(float).tobytes()) for g, (_, w) in series.items()}
    end = max(float(t[-1]) for t, _ in series.values())
    decision = decide(analysis, limits, settings, end, None, readings)
    if as_json:
        print_json(to_json(analysis, decision, extra))
        return
    for line in _text(analysis, decision, extra):
        click.echo(line)


def to_json(analysis: WindowAnalysis, decision: SmoothingDecision, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "gpus": {str(g): m.as_dict() for g, m in sorted(analysis.gpus.items())},
        "node": analysis.node.as_dict() if analysis.node is not None else None,
        "decision": decision.as_dict(),
        **{k: ({str(g): v for g, v in val.items()} if isinstance(val, dict) else val) for k, val in extra.items()},
    }


def _fmt(v: float | None, unit: str, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f} {unit}".rstrip()


def _text(analysis: WindowAnalysis, decision: SmoothingDecision, extra: Mapping[str, Any]) -> list[str]:
    out = []
    header = f"{'':6} {'osc':>8} {'ampl':>7} {'swing':>7} {'ramp+':>9} {'ramp-':>9} {'band E':>7} {'rate':>8}"
    out.append(header)
    rows = [(f"gpu {g}", m) for g, m in sorted(analysis.gpus.items())]
    if analysis.node is not None:
        rows.append(("node", analysis.node))
    for name, m in rows:
        osc = f"{m.oscillation_hz:.2f}Hz" if m.oscillation_hz is not None else "none"
        if m.oscillation_band in ("below", "above"):
            osc += "*"
        energy = f"{m.band_energy_ratio:.0%}" if m.band_energy_ratio is not None else "-"
        out.append(
            f"{name:6} {osc:>8} {m.oscillation_amplitude_watts:6.0f}W {m.swing_watts:6.0f}W "
            f"{m.ramp_up_watts_per_second:6.0f}W/s {m.ramp_down_watts_per_second:6.0f}W/s "
            f"{energy:>7} {m.sample_rate_hz:6.1f}Hz"
        )
    node = analysis.node
    for name, m in rows:
        if m.oscillation_hz is not None and m.oscillation_band in ("below", "above"):
            inside = (f"; strongest rhythm inside the band {m.band_oscillation_hz:.2f} Hz"
                      if m.band_oscillation_hz is not None else "; no rhythm inside the band")
            out.append(f"* {name}: the dominant rhythm ({m.oscillation_hz:.3g} Hz, every "
                       f"{1 / m.oscillation_hz:.3g} s) lies {m.oscillation_band} the "
                       f"{m.band_low_hz:g}-{m.band_high_hz:g} Hz band{inside}")
    idle = extra.get("idle")
    if idle:
        parts = []
        if idle["lead_in_seconds"]:
            parts.append(f"idle lead-in {idle['lead_in_seconds']:.0f} s (node {idle['lead_in_mean_watts']:.0f} W)")
        if idle["tail_seconds"]:
            parts.append(f"idle tail {idle['tail_seconds']:.0f} s (node {idle['tail_mean_watts']:.0f} W)")
        out.append(" and ".join(parts) + ": left out; the figures above are the steady part")
    if node is not None and node.band_beyond_nyquist:
        out.append(
            f"warning: band {node.band_low_hz:g}-{node.band_high_hz:g} Hz reaches beyond Nyquist "
            f"({node.nyquist_hz:.1f} Hz at {node.sample_rate_hz:.1f} updates/s): only up to "
            f"{node.nyquist_hz:.1f} Hz is analysed"
        )
    if node is not None and analysis.node_series is not None:
        t, w = (np.asarray(x, dtype=float) for x in analysis.node_series)
        out += ["", "node power:"] + trace_plot(t, w)
        f, a = amplitude_spectrum(t, w)
        out += ["", "node spectrum:"]
        out += spectrum_plot(f, a, (node.band_low_hz, node.band_high_hz), node.nyquist_hz, node.oscillation_hz)
    out += ["", f"decision: {decision.mode.label} ({decision.reason}); advisory"]
    for g, d in sorted(decision.gpus.items()):
        parts = []
        if d.floor_watts is not None:
            parts.append(f"floor {d.floor_watts:.0f} W ({d.floor_percent:.0f}% of limit), "
                         f"energy +{d.energy_overhead_ratio:.1%}")
        if d.ramp_up_watts_per_second is not None:
            parts.append(f"ramp <= {d.ramp_up_watts_per_second:.0f}/{d.ramp_down_watts_per_second:.0f} W/s, "
                         f"hysteresis {d.hysteresis_ms:.0f} ms")
        if d.target_limit_watts is not None:
            label = "cap" if d.floor_watts is None else "or power limit"
            parts.append(f"{label} {d.target_limit_watts:.0f} W")
        if parts:
            out.append(f"  gpu {g}: {d.mode.label}: " + "; ".join(parts))
    for note in extra.get("notes", ()):
        out.append(f"note: {note}")
    rates = extra.get("sampler_rates_hz")
    if rates:
        out.append("sampler: " + ", ".join(f"gpu {g} {r:.1f} updates/s" for g, r in sorted(rates.items())))
    return out
