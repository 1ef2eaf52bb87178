"""Plain-text plots of a power trace and its spectrum for the terminal (no dependency)."""

from __future__ import annotations

import numpy as np


def trace_plot(t: np.ndarray, w: np.ndarray, width: int = 72, height: int = 10) -> list[str]:
    """Watts over time: each column spans the readings in it and joins its neighbours."""
    if len(t) < 2:
        return ["(no readings)"]
    t = np.asarray(t, dtype=float) - float(t[0])
    w = np.asarray(w, dtype=float)
    lo, hi = float(w.min()), float(w.max())
    if hi - lo < 1e-9:
        hi = lo + 1.0
    span = max(float(t[-1]), 1e-9)
    edges = np.linspace(0.0, span, width + 1)
    # Each column: the readings inside it plus the line to the next reading (no gaps when a
    # column holds no reading: 30 s at 10 Hz is 300 readings for 72 columns, 3 s only 30).
    centre = np.interp((edges[:-1] + edges[1:]) / 2, t, w)
    grid = [[" "] * width for _ in range(height)]
    prev: float | None = None
    for c in range(width):
        inside = w[(t >= edges[c]) & (t <= edges[c + 1])]
        values = [float(centre[c])] + [float(v) for v in inside]
        top_v, bottom_v = max(values), min(values)
        if prev is not None:  # join to the previous column
            top_v, bottom_v = max(top_v, prev), min(bottom_v, prev)
        prev = float(centre[c])
        top = _row(top_v, lo, hi, height)
        bottom = _row(bottom_v, lo, hi, height)
        for r in range(top, bottom + 1):
            grid[r][c] = "#" if r == top else "|"
    label_w = max(len(f"{hi:.0f} W"), len(f"{lo:.0f} W"))
    out = []
    for r, row in enumerate(grid):
        value = hi - (hi - lo) * r / (height - 1)
        label = f"{value:.0f} W" if r in (0, height - 1, (height - 1) // 2) else ""
        out.append(f"{label:>{label_w}} |" + "".join(row))
    out.append(" " * label_w + " +" + "-" * width)
    end = f"{t[-1]:.1f} s"
    out.append(" " * label_w + f"  0 s{'':{max(width - 4 - len(end), 1)}}{end}")
    return out


def spectrum_plot(
    freqs: np.ndarray,
    amp: np.ndarray,
    band: tuple[float, float],
    nyquist: float,
    peak_hz: float | None = None,
    width: int = 72,
    height: int = 8,
) -> list[str]:
    """Amplitude (W) against frequency from 0 to Nyquist; the band of concern is marked '='."""
    if len(freqs) < 2 or nyquist <= 0:
        return ["(no spectrum)"]
    freqs = np.asarray(freqs, dtype=float)
    amp = np.asarray(amp, dtype=float)
    keep = (freqs > 0) & (freqs <= nyquist)
    freqs, amp = freqs[keep], amp[keep]
    if freqs.size == 0:
        return ["(no spectrum)"]
    cols = np.minimum((freqs / nyquist * (width - 1)).astype(int), width - 1)
    col_amp = np.zeros(width)
    np.maximum.at(col_amp, cols, amp)
    top = float(col_amp.max()) or 1.0
    out = []
    for r in range(height):
        level = top * (height - r - 0.5) / height
        row = "".join("#" if a >= level else " " for a in col_amp)
        label = f"{top:.0f} W" if r == 0 else ""
        out.append(f"{label:>7} |" + row)
    axis = ["-"] * width
    for c in range(width):
        f = (c + 0.5) * nyquist / width
        if band[0] <= f <= band[1]:
            axis[c] = "="
    if peak_hz is not None and 0 < peak_hz <= nyquist:
        axis[min(int(peak_hz / nyquist * (width - 1)), width - 1)] = "^"
    out.append("        +" + "".join(axis))
    tail = f"{nyquist:.1f} Hz (Nyquist)"
    out.append(f"         0 Hz{'':{max(width - 4 - len(tail), 1)}}{tail}")
    return out


def _row(value: float, lo: float, hi: float, height: int) -> int:
    return int(round((hi - value) / (hi - lo) * (height - 1)))
