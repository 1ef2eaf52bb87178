"""Recorded power traces (CSV) for ``rasd power analyze``.

Two layouts are accepted:
- rasd's own: header ``timestamp,gpu,watts``, timestamp in seconds (any epoch).
- nvidia-smi's, unchanged: ``nvidia-smi --query-gpu=timestamp,index,power.draw --format=csv -lms 100``
  (header ``timestamp, index, power.draw [W]``, rows like ``2024/05/01 12:00:00.123, 0, 312.45 W``;
  ``power.draw.instant`` and ``nounits`` output work too). nvidia-smi's timestamps are local time
  without a zone; only differences matter here, so they are read as UTC.
Every bad row is reported with its line number; nothing is silently dropped.
"""

from __future__ import annotations

import calendar
import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import numpy as np

SMI_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S")
POWER_COLUMNS = ("power.draw", "power.draw.instant", "power.draw.average")
MAX_REPORTED = 20


class TraceError(ValueError):
    """The trace cannot be used; ``problems`` holds one "line N: why" string per bad row."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        text = "\n".join(f"{source}: {p}" for p in shown)
        if more:
            text += f"\n{source}: ... and {more} more bad rows"
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class Trace:
    layout: str  # "rasd" or "nvidia-smi"
    rows: int
    series: dict[int, tuple[np.ndarray, np.ndarray]]  # gpu -> (seconds, watts), sorted by time


def parse_trace(text: str, source: str = "<trace>") -> Trace:
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    header: list[str] | None = None
    header_line = 0
    problems: list[str] = []
    rows: dict[int, list[tuple[float, float]]] = {}
    count = 0
    layout = ""
    for record in reader:
        lineno = reader.line_num
        if not record or all(not c.strip() for c in record):
            continue
        cells = [c.strip() for c in record]
        if header is None:
            header, header_line = [c.lower() for c in cells], lineno
            layout = _layout(header)
            if not layout:
                raise TraceError(source, [
                    f"line {lineno}: header {', '.join(cells)!s} is not 'timestamp,gpu,watts' nor "
                    "nvidia-smi's 'timestamp, index, power.draw [W]'; fix the header"
                ])
            continue
        if len(cells) != len(header):
            problems.append(f"line {lineno}: expected {len(header)} columns, found {len(cells)}")
            continue
        try:
            t, gpu, watts = _row(layout, cells)
        except ValueError as e:
            problems.append(f"line {lineno}: {e}")
            continue
        rows.setdefault(gpu, []).append((t, watts))
        count += 1
    if header is None:
        raise TraceError(source, ["the file is empty; expected a header 'timestamp,gpu,watts'"])
    if problems:
        raise TraceError(source, problems)
    if count == 0:
        raise TraceError(source, [f"line {header_line}: a header but no rows"])
    series = {}
    for gpu, r in sorted(rows.items()):
        arr = np.asarray(r, dtype=float)
        order = np.argsort(arr[:, 0], kind="stable")
        series[gpu] = (arr[order, 0], arr[order, 1])
    return Trace(layout=layout, rows=count, series=series)


def _layout(header: list[str]) -> str:
    if header == ["timestamp", "gpu", "watts"]:
        return "rasd"
    if len(header) == 3 and header[0] == "timestamp" and header[1] == "index":
        name = header[2].split("[")[0].strip()
        if name in POWER_COLUMNS:
            return "nvidia-smi"
    return ""


def _row(layout: str, cells: list[str]) -> tuple[float, int, float]:
    ts, gpu_text, watts_text = cells
    if layout == "rasd":
        t = _number(ts, "timestamp")
    else:
        t = _smi_time(ts)
    if not gpu_text.isdigit():
        raise ValueError(f"GPU index {gpu_text!r} is not a whole number")
    gpu = int(gpu_text)
    if layout == "nvidia-smi":
        w = watts_text[:-1].strip() if watts_text.endswith("W") else watts_text
        if w.startswith("["):  # [N/A], [Not Supported], [Unknown Error]
            raise ValueError(f"power reading {watts_text!r} is not a number")
        watts = _number(w, "power")
    else:
        watts = _number(watts_text, "watts")
    if watts < 0:
        raise ValueError(f"power {watts_text!r} is negative")
    return t, gpu, watts


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} {text!r} is not finite")
    return v


def _smi_time(text: str) -> float:
    for fmt in SMI_TIME_FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    raise ValueError(f"timestamp {text!r} is not like 2024/05/01 12:00:00.123")


def write_trace(series: dict[int, tuple[Iterable[float], Iterable[float]]]) -> str:
    """rasd's own layout (used by tests and to save a live trace)."""
    out = ["timestamp,gpu,watts"]
    rows = []
    for gpu, (t, w) in series.items():
        rows += [(float(ti), gpu, float(wi)) for ti, wi in zip(t, w)]
    rows.sort()
    out += [f"{t:.6f},{g},{w:.3f}" for t, g, w in rows]
    return "\n".join(out) + "\n"
