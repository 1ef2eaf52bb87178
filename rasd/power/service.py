"""PowerService: the daemon's power loop (window buffer, analysis, decision, budget, applier).

``add_samples`` runs on the sampler threads (append under a lock, nothing else); ``tick`` runs on
the daemon's health poll. The full analysis and decision (a few ms for 8 GPUs and a 30 s window at
10 Hz updates) runs every ``analysis_seconds``; the ticks between only check the node sum for a
reason to escalate (see ``_due`` and tests/bench/bench_power.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Literal, Sequence

from rasd.model import PowerSample, PowerUpdates
from rasd.power.apply import PowerApplier, PowerHandle
from rasd.power.budget import BudgetState, rebalance
from rasd.power.decide import MIN_COVERAGE, Mode, SmoothingDecision, decide
from rasd.power.metrics import PEAK_PERCENTILE, RAMP_PERCENTILE, TROUGH_PERCENTILE, SeriesMetrics, WindowAnalysis
from rasd.power.readings import Readings
from rasd.power.running import RunningNodeSum
from rasd.power.settings import PowerSettings
from rasd.power.state import PowerState
from rasd.power.window import Series, Window, analyze_window, node_sum, percentiles, ramp_percentile

log = logging.getLogger("rasd.power")

USAGE_PERCENTILE = 95.0  # what a GPU "uses" for budget sharing
# Between full analyses the node sum is extended on the last analysis's grid; within these shares
# of a limit it is summed afresh over the window (the full analysis's grid) before escalating.
# Levels (peak, trough) barely move with the grid's phase; the steepest ramps of square edges
# can halve or double with it (an edge falls within one grid step or is split over two).
LEVEL_MARGIN = 0.25
RAMP_MARGIN = 0.6


class PowerService:
    def __init__(
        self,
        settings: PowerSettings,
        gpus: Sequence[PowerHandle],
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.clock = clock
        self.applier = PowerApplier(gpus, enabled=settings.apply)
        self._lock = threading.Lock()
        # Per GPU: update times (s, NVML timestamp) and watts, oldest first.
        self._buf: dict[int, Readings] = {g.index: Readings() for g in gpus}
        self._decision: SmoothingDecision | None = None
        self._budget: BudgetState | None = None
        self._ticks = 0
        self._failures = 0
        self._analysis: WindowAnalysis | None = None
        self._analysed_at: float | None = None  # newest reading (s) at the last full analysis
        self._stale = True  # settings changed since (or nothing analysed yet)
        # Each GPU's own figures, and the newest reading (s) when they were last analysed.
        self._gpu_metrics: dict[int, SeriesMetrics] = {}
        self._gpu_at: dict[int, float] = {}
        self._fresh: frozenset[int] = frozenset()  # GPUs analysed afresh at the last analysis
        # Seconds between analyses of one GPU's own window: once per window (0: every analysis).
        self.gpu_refresh_seconds = _gpu_refresh(settings)
        self._turn_at: float | None = None  # newest reading (s) when GPUs were last taken in turn
        self._node: RunningNodeSum | None = None  # for the checks between full analyses
        self._credit = 0.0  # GPUs owed a fresh analysis (fractional), by the time since
        self._state = PowerState(
            time_wall=clock(),
            window_seconds=settings.window_seconds,
            band_low_hz=settings.band_low_hz,
            band_high_hz=settings.band_high_hz,
            apply_enabled=settings.apply,
            max_ramp_watts_per_second=settings.max_ramp_watts_per_second,
        )

    def add_samples(self, samples: Sequence[PowerSample]) -> None:
        """Sampler callback: keep each GPU's last ``window_seconds`` of distinct updates."""
        window = self.settings.window_seconds
        if isinstance(samples, PowerUpdates):
            self._add_columns(samples, window)
            return
        with self._lock:
            for s in samples:
                buf = self._buf.get(s.gpu)
                if buf is None:
                    buf = self._buf[s.gpu] = Readings()
                t = s.nvml_timestamp_us / 1e6
                # A repeat or an out-of-order reading adds nothing.
                if buf.append(t, s.watts):
                    buf.trim(t - window)

    def _add_columns(self, updates: PowerUpdates, window: float) -> None:
        """``add_samples`` for updates kept in columns: each GPU's added at once, then trimmed
        once to its newest (the same window as adding and trimming them one by one)."""
        with self._lock:
            for g, (_, stamps, watts) in updates.columns.items():
                buf = self._buf.get(g)
                if buf is None:
                    buf = self._buf[g] = Readings()
                if buf.extend([x / 1e6 for x in stamps], watts):
                    buf.trim(buf.last - window)

    def _trim(self) -> tuple[float | None, float | None]:
        """Age every GPU's readings against the newest reading of any GPU (caller holds the lock).

        A GPU that stopped reporting (lost) trims nothing on its own; this makes its readings
        leave the window in time. Returns (newest, oldest) reading time in seconds, or Nones.
        """
        newest = max((r.last for r in self._buf.values() if len(r)), default=None)
        if newest is None:
            return None, None
        cutoff = newest - self.settings.window_seconds
        for r in self._buf.values():
            r.trim(cutoff)
        return newest, min(r.first for r in self._buf.values() if len(r))

    def window(self) -> dict[int, Series]:
        """Copies of each GPU's readings in the window: (seconds, watts), oldest first."""
        out = {}
        with self._lock:
            self._trim()
            for g, r in self._buf.items():
                if len(r):
                    out[g] = r.arrays()
        return out

    def tick(self, now_wall: float) -> PowerState:
        """Analysis + decision + budget + apply over the current window; returns the new state."""
        started = time.perf_counter()
        s = self.settings
        try:
            with self._lock:
                newest, oldest = self._trim()
            due, series = (True, None) if self._stale else self._due(newest, oldest)
            if not due:
                self._ticks += 1
                self._state = replace(self._state, time_wall=now_wall, ticks_total=self._ticks,
                                      tick_seconds=time.perf_counter() - started)
                return self._state
            if series is None:
                series = self.window()
            self._analysed_at = max((t[-1] for t, _ in series.values() if len(t)), default=None)
            if self._stale:
                self._gpu_metrics.clear()
                self._gpu_at.clear()
                self._turn_at = None
            self._stale = False
            limits = self.applier.limits()
            readings = {g: w for g, (_, w) in series.items()}
            previous = self._decision
            # Under a floor or a cap every GPU's own figures are needed (below): take them at once.
            analysis = self._analyze(series, everything=previous is not None and previous.mode >= Mode.FLOOR)
            decision = decide(analysis, limits, s, now_wall, previous, readings)
            if analysis.gpus.keys() - self._fresh and (decision.mode >= Mode.FLOOR or analysis.node is None):
                # Floors and caps are set from each GPU's own peak and trough, and a node of one
                # GPU is that GPU: those decisions are taken on every GPU's figures of this window.
                analysis = self._analyze(series, everything=True)
                decision = decide(analysis, limits, s, now_wall, previous, readings)
            self._decision = decision
            _log_change(previous, self._decision)
            if s.node_budget_watts > 0 and limits:
                usage = {g: percentiles(w, (USAGE_PERCENTILE,))[0] for g, w in readings.items() if len(w)}
                self._budget = rebalance(self._budget, usage, limits, s, now_wall)
            else:
                self._budget = None
            self.applier.apply(self._decision, self._budget, now_wall)
            self._analysis = analysis
            self._node = RunningNodeSum.of(analysis)  # for the checks until the next analysis
        except Exception as e:  # noqa: BLE001 - a bad window must not stop the daemon's loop
            self._failures += 1
            if self._failures == 1:
                log.exception("event=power_tick_failed error=%r", str(e))
            analysis = self._analysis or WindowAnalysis(gpus={}, node=None)
        self._ticks += 1
        self._state = PowerState(
            time_wall=now_wall,
            window_seconds=s.window_seconds,
            band_low_hz=s.band_low_hz,
            band_high_hz=s.band_high_hz,
            apply_enabled=s.apply,
            max_ramp_watts_per_second=s.max_ramp_watts_per_second,
            gpus=MappingProxyType(dict(analysis.gpus)),
            node=analysis.node,
            decision=self._decision,
            budget=self._budget,
            applied=MappingProxyType(self.applier.state()),
            changes=self.applier.changes(),
            tick_seconds=time.perf_counter() - started,
            ticks_total=self._ticks,
            tick_failures_total=self._failures,
        )
        return self._state

    def _analyze(self, series: Window, everything: bool = False) -> WindowAnalysis:
        """The window's analysis: the node sum afresh, each GPU's own figures in turn.

        A GPU's own spectrum and fits cost as much as the node's; each GPU is analysed again about
        once per ``gpu_refresh_seconds``, the oldest first, so the work spreads evenly over the
        full analyses (``everything``: all of them now). The node's figures, and which GPUs it
        sums, come from this window every time.
        """
        s = self.settings
        newest = self._analysed_at if self._analysed_at is not None else 0.0
        refresh = self.gpu_refresh_seconds
        new = [g for g in series if g not in self._gpu_metrics]
        if everything or refresh <= s.analysis_seconds or self._turn_at is None:
            due = set(series)
            self._credit = 0.0
        else:
            # Work in proportion to time: every GPU comes round once per ``refresh``, the oldest
            # first; a GPU without figures (new, or back) is analysed at once.
            self._credit += len(series) * max(0.0, newest - self._turn_at) / refresh
            turn = int(self._credit)
            self._credit -= turn
            oldest = sorted((g for g in series if g in self._gpu_at), key=lambda g: (self._gpu_at[g], g))
            due = set(new) | set(oldest[:turn])
        self._turn_at = newest
        reuse = {g: m for g, m in self._gpu_metrics.items() if g not in due}
        analysis = analyze_window(
            series, (s.band_low_hz, s.band_high_hz), min_amplitude_watts=s.oscillation_min_watts, reuse=reuse
        )
        for g in due:
            self._gpu_at[g] = newest
        self._gpu_metrics = dict(analysis.gpus)
        self._gpu_at = {g: self._gpu_at[g] for g in self._gpu_metrics}
        self._fresh = frozenset(due)
        return analysis

    def _due(self, newest: float | None, oldest: float | None) -> tuple[bool, Window | None]:
        """Whether this tick runs the full analysis and decision, and the window if it read it.

        The spectra and fits cost milliseconds per GPU; they run every ``analysis_seconds``. In
        between, a cheap look at the node sum (raw percentiles and ramps, no spectra) asks whether
        the window now calls for a more severe mode than the current one; if so the full analysis
        runs at once, so a swing, ramp or budget excess is still acted on within one tick. Only
        relaxing (which waits ``hysteresis_seconds`` anyway) can lag by up to ``analysis_seconds``.
        Where no limit is set that the current mode could escalate for, nothing is read at all;
        otherwise the node sum of the last analysis is extended by the readings since (microseconds
        a GPU), and only near a limit is the window summed afresh to decide as the analysis would.
        """
        s = self.settings
        d = self._decision
        # The cadence runs on the readings' own (NVML) clock: it advances with the data in the
        # daemon and under a simulated clock alike.
        if d is None or self._analysed_at is None or newest is None or oldest is None:
            return True, None  # nothing decided yet: decide now
        if not d.gpus and self._covered() < MIN_COVERAGE * s.window_seconds <= newest - oldest:
            # "Not enough readings yet": decide the moment the readings could cover enough of the
            # window (no node sum spans more than all readings do), else at the cadence.
            return True, None
        if not 0 <= newest - self._analysed_at < s.analysis_seconds:
            return True, None
        if not d.gpus:
            return False, None
        swing = d.mode < Mode.FLOOR and d.allowed_swing_watts > 0
        budget = d.mode < Mode.CAP and s.node_budget_watts > 0
        ramp = d.mode < Mode.RAMP and s.max_ramp_watts_per_second > 0
        if not (swing or budget or ramp):
            return False, None  # no limit the current mode could escalate for
        with self._lock:
            summed = self._extend_node(newest)
        if summed is None:
            return False, None
        if summed is True:
            return True, None  # a GPU of the node stopped reporting: take the node afresh
        # The extended sum sits on the last analysis's grid, the full analysis's on one laid over
        # this window: near a limit they may disagree, so there the window's own sum decides.
        if not self._over(summed, swing, budget, ramp, 1.0 - LEVEL_MARGIN, 1.0 - RAMP_MARGIN):
            return False, None
        series = self.window()
        exact = node_sum(series)
        if exact is None or not self._over(exact, swing, budget, ramp, 1.0, 1.0):
            return False, None
        return True, series

    def _over(self, summed: Series, swing: bool, budget: bool, ramp: bool,
              share: float, ramp_share: float) -> bool:
        """Whether the node sum exceeds ``share`` of a swing or budget limit, or ``ramp_share`` of
        the ramp limit, that the current mode could escalate for."""
        s = self.settings
        d = self._decision
        assert d is not None
        t, total = summed
        trough, peak = percentiles(total, (TROUGH_PERCENTILE, PEAK_PERCENTILE))
        if swing and peak - trough > share * d.allowed_swing_watts:
            return True
        if budget and peak > share * s.node_budget_watts:
            return True
        if ramp and len(total) > 1:
            if ramp_percentile(t, total, RAMP_PERCENTILE) > ramp_share * s.max_ramp_watts_per_second:
                return True
        return False

    def _extend_node(self, newest: float) -> Series | Literal[True] | None:
        """The node sum over the window, extended by the readings since the last full analysis
        (caller holds the lock); see RunningNodeSum.extend."""
        if self._node is None:
            return None
        return self._node.extend(self._buf, newest, self.settings.window_seconds)

    def _covered(self) -> float:
        """Seconds of readings the last decision was taken on (the node's, or its only GPU's)."""
        a = self._analysis
        if a is None:
            return 0.0
        if a.node is not None:
            return a.node.duration_seconds
        return max((m.duration_seconds for m in a.gpus.values()), default=0.0) if len(a.gpus) == 1 else 0.0

    def reconfigure(self, settings: PowerSettings) -> None:
        """New [power] settings on reload; switching ``apply`` off reverts what rasd changed."""
        if self.settings.apply and not settings.apply:
            self.applier.close(self.clock())
        self.applier.enabled = settings.apply
        self.settings = settings
        self.gpu_refresh_seconds = _gpu_refresh(settings)
        self._stale = True  # decide afresh under the new settings at the next tick

    def state(self) -> PowerState:
        return self._state

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """No control-socket operations: power is read from the snapshot."""
        return {}

    def close(self) -> None:
        """Revert every change rasd made to the GPUs (original limits, smoothing off)."""
        self.applier.close(self.clock())


def _gpu_refresh(settings: PowerSettings) -> float:
    return max(settings.window_seconds, settings.analysis_seconds)


def _targets(d: SmoothingDecision) -> tuple[object, ...]:
    """What a decision asks of the GPUs: a change here is worth a log line, a new reason is not."""
    return (d.mode, d.allowed_swing_watts, tuple(
        (g, x.mode, x.floor_watts, x.target_limit_watts, x.ramp_up_watts_per_second,
         x.ramp_down_watts_per_second, x.hysteresis_ms)
        for g, x in sorted(d.gpus.items())
    ))


def _log_change(previous: SmoothingDecision | None, new: SmoothingDecision) -> None:
    """One key=value line when the decision changes (mode or any GPU's target), never per tick."""
    if previous is not None and _targets(previous) == _targets(new):
        return
    if previous is None and new.mode is Mode.NONE and not new.gpus:
        return  # the initial "not enough readings yet" is no decision
    parts = [
        "event=power_decision",
        f"mode={new.mode.label}",
        f"previous={previous.mode.label if previous is not None else 'none'}",
        f"allowed_swing_watts={new.allowed_swing_watts:.0f}",
    ]
    for g, x in sorted(new.gpus.items()):
        if x.floor_watts is not None and x.mode is Mode.FLOOR:
            parts.append(f"gpu{g}_floor_watts={x.floor_watts:.0f}")
        if x.target_limit_watts is not None and x.mode is Mode.CAP:
            parts.append(f"gpu{g}_cap_watts={x.target_limit_watts:.0f}")
        if x.ramp_up_watts_per_second is not None and x.mode is not Mode.NONE:
            parts.append(f"gpu{g}_ramp_watts_per_second={x.ramp_up_watts_per_second:.0f}")
    parts.append(f"reason={new.reason!r}")
    log.info(" ".join(parts))
