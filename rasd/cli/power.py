"""`rasd power` (live analysis and decision) and `rasd power analyze TRACE.csv` (offline).

The commands only: the analysis and its report (NumPy) load when a command runs
(``rasd.cli.power_report``), so ``rasd --help`` and every other command start without them."""

from __future__ import annotations

import re
import threading
from typing import Any

import click

from rasd.cli.common import EXIT_FAIL, backend_options, fail, load_config_or_fail, open_backend_or_fail
from rasd.model import PowerLimits, PowerSample
from rasd.power.settings import PowerSettings

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
    from rasd.cli.power_report import report
    from rasd.power.analysis import samples_to_series
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
    report(series, limits, settings, as_json, extra={"backend": be.name, "sampler_rates_hz": rates})


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
    from rasd.cli.power_report import report_trace
    from rasd.power.trace import TraceError, read_trace

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
    report_trace(parsed, limit_watts, settings, as_json)
