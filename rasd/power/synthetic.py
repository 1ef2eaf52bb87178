"""Synthetic instant-power traces sampled the way NVML reports them (tests, benchmarks, demos).

NVML's instant power (field 186) refreshes about every 100 ms on A100/H100 and each update
averages only the last 25 ms of its period (Yang et al., SC'24); the update times jitter a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rasd.model import PowerSample


@dataclass(frozen=True, slots=True)
class Wave:
    """A training-like power wave: ``base`` + a periodic swing, plus white noise (all watts)."""

    hz: float
    swing_watts: float  # true peak-to-peak of the noiseless wave
    base_watts: float = 400.0  # trough
    shape: str = "sine"  # "sine" or "square" (compute/communication phases)
    duty: float = 0.5  # square: share of each period at the peak
    noise_watts: float = 0.0  # standard deviation
    phase: float = 0.0  # radians

    def value(self, t: np.ndarray) -> np.ndarray:
        if self.hz <= 0 or self.swing_watts == 0:
            return np.full_like(t, self.base_watts, dtype=float)
        ph = 2 * np.pi * self.hz * t + self.phase
        if self.shape == "square":
            frac = np.mod(ph / (2 * np.pi), 1.0)
            unit = (frac < self.duty).astype(float)
        else:
            unit = 0.5 + 0.5 * np.sin(ph)
        return self.base_watts + self.swing_watts * unit


def nvml_trace(
    wave: Wave,
    seconds: float,
    *,
    refresh_seconds: float = 0.1,
    average_seconds: float = 0.025,
    jitter_seconds: float = 0.002,
    start: float = 1_700_000_000.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(update times in s, watts): one update per refresh, the mean of the last 25 ms."""
    rng = rng if rng is not None else np.random.default_rng(0)
    count = int(seconds / refresh_seconds)
    times = np.arange(1, count + 1) * refresh_seconds
    times = times + rng.uniform(-jitter_seconds, jitter_seconds, count)
    sub = np.linspace(-average_seconds, 0.0, 11)  # integration points of the averaging window
    values = wave.value(times[:, None] + sub[None, :]).mean(axis=1)
    if wave.noise_watts > 0:
        values = values + rng.normal(0.0, wave.noise_watts, count)
    return start + times, values


def to_samples(gpu: int, t: np.ndarray, w: np.ndarray) -> list[PowerSample]:
    return [
        PowerSample(gpu=gpu, time_wall=float(ti), nvml_timestamp_us=int(round(ti * 1e6)), watts=float(wi))
        for ti, wi in zip(t, w)
    ]
