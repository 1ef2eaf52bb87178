"""Write power logs the way nvidia-smi prints them, from synthetic NVML instant-power updates.

nvidia-smi polls every GPU in order each sample and prints the reading NVML holds at that moment,
so a log faster than NVML's ~10 Hz refresh repeats each update. Timestamps carry milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

import numpy as np

BUS = "00000000:{:02X}:00.0"


def stamp(t: float, sep: str = "/") -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime(f"%Y{sep}%m{sep}%d %H:%M:%S.%f")[:-3]


def cell(column: str, gpu: int, t: float, watts: float, units: bool) -> str:
    u = (lambda v, unit: f"{v} {unit}") if units else (lambda v, unit: f"{v}")
    if column == "timestamp":
        return stamp(t)
    if column == "index":
        return str(gpu)
    if column == "pci.bus_id":
        return BUS.format(0x18 + 0x11 * gpu)
    if column == "uuid":
        return f"GPU-{gpu:08x}-1c2d-3e4f-5a6b-{gpu:012x}"
    if column == "serial":
        return f"16523{gpu:08d}"
    if column == "name":
        return "NVIDIA H100 80GB HBM3"
    if column in ("power.draw", "power.draw.instant", "power.draw.average"):
        return u(f"{watts:.2f}", "W")
    if column == "utilization.gpu":
        return u("97", "%")
    if column == "memory.used":
        return u("61234", "MiB")
    if column == "temperature.gpu":
        return "54"
    if column == "clocks.sm":
        return u("1980", "MHz")
    raise ValueError(column)


UNITS = {"power.draw": "W", "power.draw.instant": "W", "power.draw.average": "W", "utilization.gpu": "%",
         "memory.used": "MiB", "clocks.sm": "MHz"}


def smi_log(
    series: dict[int, tuple[np.ndarray, np.ndarray]],
    columns: Sequence[str],
    *,
    log_hz: float = 10.0,
    units: bool = True,
    header: bool = True,
    overrides: dict[str, str] | None = None,
    seed: int = 0,
) -> str:
    """``nvidia-smi --query-gpu=<columns> --format=csv[,nounits] -lms <1000/log_hz>`` over ``series``.

    ``series``: per GPU, NVML's update times (s) and watts. ``overrides``: a fixed text for a column
    (e.g. ``[N/A]`` for power.draw.instant on a driver without it).
    """
    rng = np.random.default_rng(seed)
    start = max(t[0] for t, _ in series.values())
    end = min(t[-1] for t, _ in series.values())
    lines = []
    if header:
        lines.append(", ".join(f"{c} [{UNITS[c]}]" if c in UNITS else c for c in columns))
    t = start
    gpus = sorted(series)
    while t < end:
        for k, g in enumerate(gpus):
            now = t + 0.0004 * k  # each GPU's query takes a fraction of a millisecond
            ts, ws = series[g]
            i = int(np.searchsorted(ts, now, side="right")) - 1
            row = []
            for c in columns:
                if overrides and c in overrides:
                    row.append(overrides[c])
                else:
                    row.append(cell(c, g, now, float(ws[i]), units))
            lines.append(", ".join(row))
        t += 1.0 / log_hz + 0.0015 + float(rng.uniform(0.0, 0.001))  # the loop's own cost
    return "\n".join(lines) + "\n"
