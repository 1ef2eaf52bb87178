"""Power analysis, smoothing decision and node budget, from ``snapshot.power``.

Per-GPU series carry the ``gpu`` label; the node sum has its own ``rasd_power_node_*`` names.
No oscillation standing out of the noise is exported as 0 Hz and 0 W amplitude. A value that
cannot be computed (band energy with the whole band beyond Nyquist) is no series at all.
"""

from __future__ import annotations

from typing import Iterable

from exporters.family import CounterFamily, Family, GaugeFamily

from rasd.snapshot import Mode, SeriesMetrics, Snapshot

# (suffix, help, getter)
_SERIES = (
    ("oscillation_hz", "Dominant oscillation frequency of instant power in the window (0: none).",
     lambda m: m.oscillation_hz or 0.0),
    ("oscillation_amplitude_watts", "Amplitude (half peak-to-peak) of the dominant oscillation.",
     lambda m: m.oscillation_amplitude_watts),
    ("swing_watts", "Peak-to-peak power swing in the window (99th - 1st percentile).", lambda m: m.swing_watts),
    ("peak_watts", "Peak power in the window (99th percentile).", lambda m: m.peak_watts),
    ("trough_watts", "Trough power in the window (1st percentile).", lambda m: m.trough_watts),
    ("ramp_up_watts_per_second", "Rising ramp rate, 95th percentile.", lambda m: m.ramp_up_watts_per_second),
    ("ramp_down_watts_per_second", "Falling ramp rate, 95th percentile (positive).",
     lambda m: m.ramp_down_watts_per_second),
    ("band_energy_ratio", "Share of spectral energy in the configured band (visible part).",
     lambda m: m.band_energy_ratio),
    ("sample_rate_hz", "Achieved rate of distinct instant-power updates (NVML field 186).",
     lambda m: m.sample_rate_hz),
    ("nyquist_hz", "Highest frequency the achieved update rate can see (half of it).", lambda m: m.nyquist_hz),
    ("band_beyond_nyquist", "1 when the configured band reaches beyond Nyquist (that part is not analysed).",
     lambda m: 1.0 if m.band_beyond_nyquist else 0.0),
)


def collect(snapshot: Snapshot) -> Iterable[Family]:
    p = snapshot.power
    if p is None:
        return
    per_gpu = {s: GaugeFamily(f"rasd_power_{s}", doc, labels=["gpu"]) for s, doc, _ in _SERIES}
    for gpu, m in sorted(p.gpus.items()):
        _add(per_gpu, m, (str(gpu),))  # one label tuple for all of the GPU's series
    yield from per_gpu.values()
    if p.node is not None:
        node = {s: GaugeFamily(f"rasd_power_node_{s}", f"Node sum: {doc[0].lower()}{doc[1:]}", labels=[])
                for s, doc, _ in _SERIES}
        _add(node, p.node, ())
        yield from node.values()

    allowed = GaugeFamily(
        "rasd_power_node_allowed_ramp_watts_per_second",
        "The node's allowed power ramp ([power] max_ramp_watts_per_second); absent when none is set.",
    )
    if p.max_ramp_watts_per_second > 0:
        allowed.add_metric([], p.max_ramp_watts_per_second)
    yield allowed
    yield GaugeFamily("rasd_power_window_seconds", "Length of the power analysis window.",
                            value=p.window_seconds)
    band = GaugeFamily("rasd_power_band_hz", "Configured band of concern.", labels=["edge"])
    band.add_metric(["low"], p.band_low_hz)
    band.add_metric(["high"], p.band_high_hz)
    yield band
    yield GaugeFamily("rasd_power_smoothing_applied",
                            "1 when rasd applies its decisions, 0 when they are advisory.",
                            value=1.0 if p.apply_enabled else 0.0)
    yield from _decision(p)
    yield from _budget(p)
    yield from _applied(p)
    yield GaugeFamily("rasd_power_tick_duration_seconds",
                            "Time the last analysis + decision + apply took.", value=p.tick_seconds)
    yield CounterFamily("rasd_power_tick_failures", "Power analysis ticks that failed.",
                              value=p.tick_failures_total)


def _add(fams: dict[str, Family], m: SeriesMetrics, labels: tuple[str, ...]) -> None:
    for suffix, _, get in _SERIES:
        v = get(m)
        if v is not None:
            fams[suffix].add_metric(labels, float(v))


def _decision(p) -> Iterable[Family]:  # type: ignore[no-untyped-def]
    d = p.decision
    if d is None:
        return
    mode = GaugeFamily("rasd_power_smoothing_mode", "Node smoothing decision: 1 for the current mode.",
                             labels=["mode"])
    for m in Mode:
        mode.add_metric([m.label], 1.0 if d.mode == m else 0.0)
    yield mode
    gmode = GaugeFamily("rasd_power_gpu_smoothing_mode",
                              "Per-GPU smoothing decision: 1 for the GPU's current mode.", labels=["gpu", "mode"])
    floor = GaugeFamily("rasd_power_smoothing_floor_watts", "Decided power floor.", labels=["gpu"])
    floor_r = GaugeFamily("rasd_power_smoothing_floor_ratio", "Decided power floor over the power limit.",
                                labels=["gpu"])
    up = GaugeFamily("rasd_power_smoothing_ramp_up_limit_watts_per_second", "Decided ramp-up limit.",
                           labels=["gpu"])
    down = GaugeFamily("rasd_power_smoothing_ramp_down_limit_watts_per_second",
                             "Decided ramp-down limit.", labels=["gpu"])
    hyst = GaugeFamily("rasd_power_smoothing_hysteresis_seconds", "Decided ramp-down hysteresis.",
                             labels=["gpu"])
    target = GaugeFamily("rasd_power_target_limit_watts",
                               "Decided power limit (a cap, or a floor's fallback where smoothing is unsupported).",
                               labels=["gpu"])
    overhead = GaugeFamily("rasd_power_smoothing_energy_overhead_ratio",
                                 "Estimated extra energy of the decided floor over the window's energy.",
                                 labels=["gpu"])
    allowed = GaugeFamily("rasd_power_allowed_swing_watts", "The GPU's share of the node's allowed swing.",
                                labels=["gpu"])
    for gpu, g in sorted(d.gpus.items()):
        lab = (str(gpu),)  # one label tuple for all of the GPU's series
        for m in Mode:
            gmode.add_metric(lab + (m.label,), 1.0 if g.mode == m else 0.0)
        allowed.add_metric(lab, g.allowed_swing_watts)
        if g.floor_watts is not None:
            floor.add_metric(lab, g.floor_watts)
            floor_r.add_metric(lab, (g.floor_percent or 0.0) / 100.0)
            overhead.add_metric(lab, g.energy_overhead_ratio)
        if g.ramp_up_watts_per_second is not None:
            up.add_metric(lab, g.ramp_up_watts_per_second)
        if g.ramp_down_watts_per_second is not None:
            down.add_metric(lab, g.ramp_down_watts_per_second)
        if g.hysteresis_ms is not None:
            hyst.add_metric(lab, g.hysteresis_ms / 1000.0)
        if g.target_limit_watts is not None:
            target.add_metric(lab, g.target_limit_watts)
    yield from (gmode, allowed, floor, floor_r, up, down, hyst, target, overhead)
    yield GaugeFamily("rasd_power_node_allowed_swing_watts", "The node's allowed swing.",
                            value=d.allowed_swing_watts)
    yield GaugeFamily("rasd_power_node_smoothing_energy_overhead_ratio",
                            "Estimated extra energy of the decided floors over the node's energy.",
                            value=d.energy_overhead_ratio)
    yield GaugeFamily("rasd_power_smoothing_mode_since_timestamp_seconds",
                            "When the node's current smoothing mode was taken (Unix time).", value=d.since_wall)


def _budget(p) -> Iterable[Family]:  # type: ignore[no-untyped-def]
    b = p.budget
    if b is None:
        return
    yield GaugeFamily("rasd_power_budget_watts", "Node power budget shared between GPUs.",
                            value=b.budget_watts)
    share = GaugeFamily("rasd_power_budget_share_watts", "Each GPU's share of the node budget.",
                              labels=["gpu"])
    for gpu, w in sorted(b.shares.items()):
        share.add_metric([str(gpu)], w)
    yield share
    yield GaugeFamily("rasd_power_budget_unallocated_watts", "Node budget no GPU asked for.",
                            value=b.unallocated_watts)
    yield GaugeFamily("rasd_power_budget_feasible",
                            "0 when the budget is below the sum of the GPUs' minimum limits.",
                            value=1.0 if b.feasible else 0.0)


def _applied(p) -> Iterable[Family]:  # type: ignore[no-untyped-def]
    limit = GaugeFamily("rasd_power_applied_limit_watts", "Power limit as rasd last read it back (after its own change, if any).",
                              labels=["gpu"])
    enabled = GaugeFamily("rasd_power_applied_smoothing",
                                "1 while rasd has a power-smoothing profile enabled on the GPU.", labels=["gpu"])
    changes = CounterFamily("rasd_power_changes", "Power limit and smoothing changes rasd made.",
                                  labels=["gpu"])
    failures = CounterFamily("rasd_power_change_failures",
                                   "Power limit and smoothing changes NVML refused or did not read back.",
                                   labels=["gpu"])
    for gpu, a in sorted(p.applied.items()):
        lab = (str(gpu),)
        if a.limit_watts is not None:
            limit.add_metric(lab, a.limit_watts)
        enabled.add_metric(lab, 1.0 if a.smoothing is not None else 0.0)
        changes.add_metric(lab, a.changes_total)
        failures.add_metric(lab, a.failures_total)
    yield from (limit, enabled, changes, failures)
