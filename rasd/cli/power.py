"""`rasd power` (live analysis and decision) and `rasd power analyze TRACE.csv` (offline)."""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any, Mapping

import click
import numpy as np

from rasd.cli.common import EXIT_FAIL, backend_options, fail, load_config_or_fail, open_backend_or_fail, print_json
from rasd.model import PowerSample
from rasd.power.analysis import WindowAnalysis, amplitude_spectrum, analyze_window, node_sum, samples_to_series
from rasd.model import PowerLimits
from rasd.power.decide import SmoothingDecision, decide
from rasd.power.plot import spectrum_plot, trace_plot
from rasd.power.settings import PowerSettings
from rasd.power.steady import idle_edges
from rasd.power.trace import TraceError, read_trace

SAMPLE_HZ = 20.0  # twice NVML's ~10 Hz refresh, so no update is missed
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "": 1.0}


def register(group: click.Group) -> None:
    group.add_command(power)


def parse_duration(text: str) -> float:
    """'30s', '500ms', '2m', '1.5' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|min|m|h)?\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 500ms or 2m")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def _settings(config_path: str | None) -> PowerSettings:
    if config_path is None:
        return PowerSettings()
    return load_config_or_fail(config_path).power


_config_option = click.option(
    "--config", "config_path", metavar="PATH", default=None, type=click.Path(dir_okay=False),
    help="TOML configuration whose [power] table sets the band and limits (default: built-in).",
)


@click.group(invoke_without_command=True)
@backend_options
@click.option("--duration", default="30s", show_default=True, help="How long to sample (e.g. 30s, 2m).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text and plots.")
@_config_option
@click.pass_context
def power(
    ctx: click.Context, backend: str | None, scenario: str | None, duration: str,
    as_json: bool, config_path: str | None,
) -> None:
    """Sample instant power live, then analyse swings and decide how to smooth (advisory)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        seconds = parse_duration(duration)
    except ValueError as e:
        fail(f"--duration: {e}")
    if seconds < 1:
        fail("--duration: sample at least 1s (10 NVML updates); 30s covers 0.1-3 Hz swings")
    settings = _settings(config_path)
    from rasd.backends.errors import ControlError
    from rasd.telemetry.power import PowerSampler

    be = open_backend_or_fail(backend, scenario)
    try:
        gpus = be.adapter.gpus()
        limits: dict[int, PowerLimits] = {}
        for g in gpus:
            try:
                pl = g.power_limits()
            except ControlError:
                continue
            limits[g.index] = PowerLimits(pl.limit_watts, pl.min_watts, pl.max_watts)
        got: list[PowerSample] = []
        lock = threading.Lock()

        def sink(samples: Any) -> None:
            with lock:
                got.extend(samples)

        sampler = PowerSampler(gpus, SAMPLE_HZ, sink)
        if not as_json:
            click.echo(f"rasd: sampling {len(gpus)} GPUs for {seconds:g}s ({be.name} backend)...", err=True)
        sampler.start()
        try:
            sampler.stop_event.wait(seconds)
        finally:
            rates = sampler.rates()
            sampler.stop()
            sampler.join(2.0)
    finally:
        be.close()
    with lock:
        series = samples_to_series(got)
    if not series:
        fail("no instant-power readings arrived (field 186 unsupported?); nothing to analyse", EXIT_FAIL)
    _report(series, limits, settings, as_json, extra={"backend": be.name, "sampler_rates_hz": rates})


@power.command("analyze")
@click.argument("trace", metavar="TRACE.csv", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text and plots.")
@click.option(
    "--limit-watts", type=float, default=None,
    help="Each GPU's power limit, for limits given in % (default: each GPU's peak in the trace).",
)
@click.option(
    "--gpus", type=int, default=None, metavar="N",
    help="GPUs in the log when it has no GPU column (nvidia-smi prints one row per GPU per sample).",
)
@_config_option
def analyze(
    trace: str, as_json: bool, limit_watts: float | None, gpus: int | None, config_path: str | None
) -> None:
    """Analyse a recorded trace: 'timestamp,gpu,watts' or any nvidia-smi --query-gpu CSV, unchanged.

    \b
    nvidia-smi --query-gpu=timestamp,index,power.draw.instant --format=csv -lms 100 > trace.csv
    (power.draw where the driver has no instant reading: it is a 1 s average on newer drivers)
    """
    settings = _settings(config_path)
    if limit_watts is not None and limit_watts <= 0:
        fail("--limit-watts must be positive")
    try:
        with click.open_file(trace, "r", encoding="utf-8") as fh:
            parsed = read_trace(fh, source=trace, gpus=gpus)
    except OSError as e:
        fail(f"cannot read {trace} ({e.strerror or e}); check the path")
    except UnicodeDecodeError:
        fail(f"{trace} is not a UTF-8 text file; give a CSV trace")
    except TraceError as e:
        shown = e.problems[:20]
        for p in shown[:-1]:
            click.echo(f"rasd: {trace}: {p}", err=True)
        if len(e.problems) > 20:
            click.echo(f"rasd: {trace}: ... and {len(e.problems) - 20} more bad rows", err=True)
        fix = " (fix or delete the bad rows)" if shown[-1].startswith("line ") and len(e.problems) > 1 else ""
        fail(f"{trace}: {shown[-1]}{fix}")
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
    _report(parsed.series, limits, settings, as_json, extra=extra, trim_idle=True)


def _report(
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
    readings = {g: w for g, (_, w) in series.items()}
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
        t, w = analysis.node_series
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
