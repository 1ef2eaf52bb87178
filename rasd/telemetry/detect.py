"""Detectors: consecutive samples of one GPU -> fault events. Pure: no I/O, no clock reads.

Counter growth is measured on the monotonic totals (rasd.telemetry.counters), so a driver reload
that zeroes a counter never looks like a fault or a negative delta.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from rasd.model import (
    NVLINK_COUNTERS,
    FaultEvent,
    FaultKind,
    GpuSample,
    RecoveryAction,
    nvlink_counter_name,
)

THERMAL_REASONS = 0x20 | 0x40  # SwThermalSlowdown | HwThermalSlowdown


def detect(
    prev: GpuSample | None,
    cur: GpuSample,
    deltas: Mapping[str, float],
) -> list[FaultEvent]:
    """Fault events raised by ``cur`` given the previous sample and counter growth since then.

    With no previous sample (the GPU's first poll) the state already present is judged once:
    counters that are not zero count as grown, and every event says ``at_start`` so the ladder
    can tell a fault it judged before a restart from a new one."""
    t, g = cur.time_wall, cur.index
    out: list[FaultEvent] = []
    at_start = prev is None

    def ev(kind: FaultKind, link: int | None = None, **details: object) -> None:
        if at_start:
            details["at_start"] = True
        out.append(FaultEvent(t, g, kind, link, MappingProxyType(details)))

    if at_start:  # the counters' own values are what happened before rasd looked
        deltas = {
            **deltas,
            "ecc_volatile_uncorrected": cur.ecc_volatile_uncorrected or 0,
            "retired_pages_double_bit": cur.retired_pages_double_bit or 0,
        }
    du = int(deltas.get("ecc_volatile_uncorrected", 0))
    dc = int(deltas.get("ecc_volatile_corrected", 0))
    if du > 0 or dc > 0:
        ev(FaultKind.ECC, volatile_uncorrected=du, volatile_corrected=dc)

    was_pending = bool(prev and prev.remap_pending)
    was_failure = bool(prev and prev.remap_failure)
    if (cur.remap_pending and not was_pending) or (cur.remap_failure and not was_failure):
        ev(FaultKind.REMAP, pending=bool(cur.remap_pending), failure=bool(cur.remap_failure))

    if deltas.get("retired_pages_single_bit", 0) > 0 or deltas.get("retired_pages_double_bit", 0) > 0:
        ev(
            FaultKind.RETIRED_PAGES,
            single_bit=cur.retired_pages_single_bit or 0,
            double_bit=cur.retired_pages_double_bit or 0,
            pending=bool(cur.retired_pages_pending),
        )

    # counters may be read less often than the poll: rates use the time between their reads
    dt = (cur.counters_mono - prev.counters_mono) if prev else 0.0
    # the same tuple again: the slow part was repeated, not re-read, so no port can have changed
    links = cur.nvlinks if prev is None or cur.nvlinks is not prev.nvlinks else ()
    prev_links = {ln.link: ln for ln in prev.nvlinks} if prev and links else {}
    for ln in links:
        before = prev_links.get(ln.link)
        grown = {c: int(deltas.get(nvlink_counter_name(ln.link, c), 0)) for c in NVLINK_COUNTERS}
        state_changed = before is not None and before.up is not None and ln.up is not None and before.up != ln.up
        first_seen_down = before is None and ln.up is False
        if state_changed or first_seen_down or any(grown.values()):
            extra: dict[str, float] = {k: v for k, v in grown.items() if v}
            if dt > 0 and extra:
                extra["rate_per_second"] = round(sum(extra.values()) / dt, 3)
            ev(FaultKind.NVLINK, ln.link, state="up" if ln.up is not False else "down", **extra)

    dr = int(deltas.get("pcie_replays", 0))
    if dr > 0:
        ev(
            FaultKind.PCIE_REPLAY,
            count=dr,
            lanes=cur.pcie_link_width,
            gen=cur.pcie_link_gen,
            interval_seconds=round(dt, 3),
        )

    _fast_part(prev, cur, at_start, out)
    return out


def detect_fast(prev: GpuSample, cur: GpuSample) -> list[FaultEvent]:
    """``detect`` for a poll whose slow part is ``prev``'s repeated (``cur.slow_time_mono`` is
    ``prev.slow_time_mono``), with no counter grown but energy: every flag, count and port
    ``detect`` judges there is ``prev``'s own and ``nvlinks`` the same tuple, so only the fast
    readings can raise an event (recovery action, thermal slowdown). The same events, without
    judging what cannot have moved at every GPU's every poll."""
    out: list[FaultEvent] = []
    _fast_part(prev, cur, False, out)
    return out


def _fast_part(prev: GpuSample | None, cur: GpuSample, at_start: bool, out: list[FaultEvent]) -> None:
    """The events of the readings taken at every poll: recovery action and thermal slowdown."""
    ra = cur.recovery_action
    if ra and ra != (prev.recovery_action if prev else 0):
        known = RecoveryAction.of(ra)
        details: dict[str, object] = {"action": known.label if known else f"unknown_{ra}", "code": ra}
        if at_start:
            details["at_start"] = True
        out.append(FaultEvent(cur.time_wall, cur.index, FaultKind.RECOVERY_ACTION, None, MappingProxyType(details)))

    reasons = cur.clock_event_reasons or 0
    before_reasons = (prev.clock_event_reasons or 0) if prev else 0
    if reasons & THERMAL_REASONS and not before_reasons & THERMAL_REASONS:
        details = {"reasons": reasons, "temperature_celsius": cur.temperature_gpu_celsius}
        if at_start:
            details["at_start"] = True
        out.append(FaultEvent(cur.time_wall, cur.index, FaultKind.THERMAL, None, MappingProxyType(details)))
