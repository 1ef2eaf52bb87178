"""Poll outcomes -> GpuState for the snapshot, plus the fault events they imply.

The aggregator owns the per-GPU bookkeeping that must persist between polls (monotonic counters,
Xid counts, the previous sample for the detectors). It is called from the daemon's main loop only;
it never talks to NVML and never blocks.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from rasd.model import FaultEvent, FaultKind, GpuIdentity, GpuSample, GpuState, Health, LostReason, XidEvent
from rasd.telemetry.counters import MonotonicCounters
from rasd.telemetry.detect import NVLINK_COUNTERS, detect, detect_fast, nvlink_counter_name

# raw sample fields kept as monotonic totals
COUNTER_FIELDS = (
    "ecc_volatile_corrected",
    "ecc_volatile_uncorrected",
    "ecc_aggregate_corrected",
    "ecc_aggregate_uncorrected",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "retired_pages_single_bit",
    "retired_pages_double_bit",
    "pcie_replays",
    "energy_joules",
)
FAST_COUNTER_FIELDS = ("energy_joules",)  # read every poll; the rest with the slow part


_LINK_NAMES: list[tuple[str, ...]] = []  # per link: its counters' names, in NVLINK_COUNTERS order


def _link_names(link: int) -> tuple[str, ...]:
    """``nvlink_counter_name(link, c)`` of each counter, made once a link (the main loop's only)."""
    while len(_LINK_NAMES) <= link:
        _LINK_NAMES.append(tuple(nvlink_counter_name(len(_LINK_NAMES), c) for c in NVLINK_COUNTERS))
    return _LINK_NAMES[link]


@dataclass(frozen=True, slots=True)
class PollView:
    """What the daemon knows of one GPU's poller at this instant (read without locks)."""

    index: int
    identity: GpuIdentity | None
    sample: GpuSample | None  # latest good sample
    seq: int  # increments with every finished poll
    lost: str | None  # why the GPU is lost, None when it is not
    stalled: bool  # a poll is running past its deadline
    last_update_wall: float | None
    overruns: int
    errors: dict[tuple[str, str], int]
    unsupported: frozenset[str]
    lost_reason: LostReason | None = None  # the kind of ``lost``, when it is set


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass
class _Gpu:
    counters: MonotonicCounters = field(default_factory=MonotonicCounters)
    prev: GpuSample | None = None
    seq: int = -1
    lost_reported: bool = False
    xid_counts: collections.Counter[int] = field(default_factory=collections.Counter)
    recent: collections.deque[XidEvent] = field(default_factory=lambda: collections.deque(maxlen=16))
    totals: dict[str, float] = field(default_factory=dict)
    # Read-only copies handed to every GpuState, rebuilt only when what they copy changed: a
    # tick at 72 GPUs would otherwise copy every GPU's counters, errors and Xids each second.
    counters_view: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    counters_dirty: bool = True
    errors_seen: dict[tuple[str, str], int] | None = None
    errors_view: Mapping[tuple[str, str], int] = field(default_factory=lambda: _EMPTY)
    xids_view: Mapping[int, int] = field(default_factory=lambda: _EMPTY)
    recent_view: tuple[XidEvent, ...] = ()


class Aggregator:
    def __init__(self, recent_xids: int = 16):
        self._gpus: dict[int, _Gpu] = {}
        self._recent = recent_xids

    def _gpu(self, index: int) -> _Gpu:
        g = self._gpus.get(index)
        if g is None:
            g = self._gpus[index] = _Gpu(recent=collections.deque(maxlen=self._recent))
        return g

    def add_xids(self, xids: list[XidEvent]) -> list[FaultEvent]:
        events = []
        for x in xids:
            g = self._gpu(x.gpu)
            g.xid_counts[x.xid] += 1
            g.recent.append(x)
            g.xids_view = MappingProxyType(dict(g.xid_counts))
            g.recent_view = tuple(g.recent)
            details = {"xid": x.xid, "message": x.message} if x.message else {"xid": x.xid}
            events.append(FaultEvent(x.time_wall, x.gpu, FaultKind.XID, None, MappingProxyType(details)))
        return events

    def update(
        self,
        view: PollView,
        now_wall: float,
        power: tuple[float | None, float | None, str | None] = (None, None, None),
    ) -> tuple[GpuState, list[FaultEvent]]:
        """``power``: the sampler's latest watts, achieved distinct-update rate (Hz) and the way
        it recognises repeats ("timestamp" or "value")."""
        g = self._gpu(view.index)
        events: list[FaultEvent] = []
        if view.lost is not None:
            health = Health.LOST
            if not g.lost_reported:
                g.lost_reported = True
                events.append(
                    FaultEvent(now_wall, view.index, FaultKind.GPU_LOST, None,
                               MappingProxyType({"reason": view.lost}))
                )
        else:
            g.lost_reported = False
            health = Health.STALE if (view.stalled or view.sample is None) else Health.UP
        if view.sample is not None and view.seq != g.seq and view.lost is None:
            g.seq = view.seq
            events.extend(self._absorb(g, view.sample))
        if g.counters_dirty:
            g.counters_view = MappingProxyType(dict(g.totals))
            g.counters_dirty = False
        if view.errors != g.errors_seen:
            g.errors_seen = dict(view.errors)
            g.errors_view = MappingProxyType(dict(view.errors))
        state = GpuState(
            index=view.index,
            identity=view.identity,
            health=health,
            sample=view.sample,
            last_update_wall=view.last_update_wall,
            counters=g.counters_view,
            counter_resets=g.counters.resets,
            errors=g.errors_view,
            unsupported=view.unsupported,
            poll_overruns=view.overruns,
            xid_counts=g.xids_view,
            recent_xids=g.recent_view,
            power_watts=power[0],
            power_sample_rate_hz=power[1],
            power_dedup=power[2],
            lost_reason=(view.lost_reason or LostReason.GPU_IS_LOST) if view.lost is not None else None,
            lost_detail=view.lost,
        )
        return state, events

    def _absorb(self, g: _Gpu, s: GpuSample) -> list[FaultEvent]:
        g.counters_dirty = True
        deltas: dict[str, float] = {}
        prev = g.prev
        if prev is not None and s.slow_time_mono is not None and s.slow_time_mono == prev.slow_time_mono:
            # the slow part is the previous poll's, repeated: no counter there can have moved
            for name in FAST_COUNTER_FIELDS:
                total = g.counters.update(name, getattr(s, name))
                if total is not None:
                    g.totals[name] = total
            events = detect_fast(prev, s)  # what detect finds with only the fast counters grown
            g.prev = s
            return events
        for name in COUNTER_FIELDS:
            total, d = g.counters.delta(name, getattr(s, name))
            if total is not None:
                g.totals[name] = int(total) if name != "energy_joules" else total
                deltas[name] = d
        for ln in s.nvlinks:
            for c, name in zip(NVLINK_COUNTERS, _link_names(ln.link)):
                total, d = g.counters.delta(name, getattr(ln, c))
                if total is not None:
                    g.totals[name] = int(total)
                    deltas[name] = d
        events = detect(g.prev, s, deltas)
        g.prev = s
        return events
