"""What a scenario's events mean at a given moment: counters, link states, flags.

Every answer is a pure function of (GPU, seconds since start), so a reading does not depend on
when or how often it was taken. Volatile counters count from the GPU's last reset (driver reload
or GPU reset); aggregate ECC, remapped rows and retired pages survive resets, as on real GPUs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from rasd.backends.fake.scenario import THERMAL_REASONS, Event, EventKind, Scenario


@dataclass(frozen=True, slots=True)
class DueXid:
    at: float
    gpu: int
    xid: int
    message: str
    pid: int
    process: str


def _amount(ev: Event, t: float, total: float) -> float:
    """How much of ``total`` an event has contributed by ``t`` (spread evenly over its window)."""
    if t < ev.at:
        return 0.0
    if ev.end is None or ev.end <= ev.at:
        return total
    return total * min(1.0, (t - ev.at) / (ev.end - ev.at))


class Effects:
    def __init__(self, scenario: Scenario | None, gpu_count: int, seed: int):
        events = scenario.events if scenario else ()
        self.gpu_count = gpu_count
        self._by_gpu: list[list[Event]] = [
            sorted((e for e in events if e.applies_to(g)), key=lambda e: (e.at, e.index))
            for g in range(gpu_count)
        ]
        # per GPU: no scripted event at all, so it never falls off the bus and its counters stay 0
        self.quiet: tuple[bool, ...] = tuple(not evs for evs in self._by_gpu)
        self.call_faults: tuple[Event, ...] = tuple(
            e for e in events if e.kind in (EventKind.NVML_ERROR, EventKind.NVML_HANG)
        )
        self.xids: tuple[DueXid, ...] = self._xids(events, gpu_count)
        self._pages = self._page_addresses(events, seed)

    # ------------------------------------------------------------------ helpers

    def _of(self, gpu: int, *kinds: EventKind) -> list[Event]:
        evs = self._by_gpu[gpu]
        return [e for e in evs if e.kind in kinds] if evs else []  # most GPUs have no events

    @staticmethod
    def _xids(events: tuple[Event, ...], gpu_count: int) -> tuple[DueXid, ...]:
        out = []
        for e in events:
            if e.kind not in (EventKind.XID, EventKind.FALL_OFF_BUS):
                continue
            for g in e.gpus if e.gpus is not None else range(gpu_count):
                if e.kind is EventKind.XID:
                    p = e.params
                    out.append(DueXid(e.at, g, p["xid"], p["message"], p["pid"], p["process"]))
                else:
                    out.append(DueXid(e.at, g, 79, e.params["message"], 0, "<unknown>"))
        return tuple(sorted(out, key=lambda x: (x.at, x.gpu)))

    @staticmethod
    def _page_addresses(events: tuple[Event, ...], seed: int) -> dict[int, list[int]]:
        rng = random.Random(f"pages:{seed}")
        addrs: dict[int, list[int]] = {}
        for e in events:
            if e.kind is EventKind.RETIRED_PAGES:
                # 4 KiB-aligned frame numbers within 80 GiB, as NVML reports them (page addresses)
                addrs[e.index] = [rng.randrange(0, 80 * 2**18) * 4096 for _ in range(e.params["count"])]
        return addrs

    # ------------------------------------------------------------------ resets and loss

    def last_reset(self, gpu: int, t: float) -> float | None:
        times = [e.at for e in self._of(gpu, EventKind.RESET) if e.at <= t]
        return max(times) if times else None

    def reset_times(self, gpu: int) -> list[float]:
        return sorted(e.at for e in self._of(gpu, EventKind.RESET))

    def lost(self, gpu: int, t: float) -> bool:
        """Fell off the bus and no reset since (a reset here models the GPU coming back)."""
        falls = [e.at for e in self._of(gpu, EventKind.FALL_OFF_BUS) if e.at <= t]
        if not falls:
            return False
        r = self.last_reset(gpu, t)
        return r is None or max(falls) >= r

    # ------------------------------------------------------------------ counters

    def _total(self, gpu: int, key: str, t: float) -> int:
        acc = 0.0
        for e in self._by_gpu[gpu]:
            if e.at > t:
                break
            k, p = e.kind, e.params
            if k is EventKind.ECC and key == f"ecc_{p['type']}":
                acc += _amount(e, t, p["count"])
            elif k is EventKind.PCIE_REPLAY and key == "pcie_replay":
                acc += p["rate_per_second"] * (min(t, e.end or t) - e.at)
            elif k is EventKind.NVLINK_ERRORS and key == f"nvlink:{p['link']}:{p['counter']}":
                acc += p["rate_per_second"] * (min(t, e.end or t) - e.at)
            elif k is EventKind.ROW_REMAP and key.startswith("remap_"):
                acc += p[key[len("remap_"):]]
        return int(math.floor(acc + 1e-9))

    def counter(self, gpu: int, key: str, t: float, volatile: bool = True) -> int:
        """``key``: ecc_corrected, ecc_uncorrected, pcie_replay, nvlink:<link>:<counter>,
        remap_correctable, remap_uncorrectable."""
        if self.quiet[gpu]:  # no scripted event: every counter is still zero
            return 0
        total = self._total(gpu, key, t)
        if not volatile:
            return total
        r = self.last_reset(gpu, t)
        return total if r is None else total - self._total(gpu, key, r)

    # ------------------------------------------------------------------ states

    def remap_flags(self, gpu: int, t: float) -> tuple[bool, bool]:
        """(pending, failure): pending clears on reset (the remap takes effect); failure stays."""
        r = self.last_reset(gpu, t)
        pending = failure = False
        for e in self._of(gpu, EventKind.ROW_REMAP):
            if e.at <= t:
                failure |= e.params["failure"]
                pending |= e.params["pending"] and (r is None or e.at >= r)
        return pending, failure

    def retired_pages(self, gpu: int, t: float, cause: str) -> list[int]:
        out: list[int] = []
        for e in self._of(gpu, EventKind.RETIRED_PAGES):
            if e.at <= t and e.params["cause"] == cause:
                out.extend(self._pages[e.index])
        return out

    def retired_pending(self, gpu: int, t: float) -> bool:
        r = self.last_reset(gpu, t)
        return any(
            e.at <= t and e.params["pending"] and (r is None or e.at >= r)
            for e in self._of(gpu, EventKind.RETIRED_PAGES)
        )

    def link_up(self, gpu: int, link: int, t: float) -> bool:
        for e in self._of(gpu, EventKind.NVLINK_DOWN, EventKind.NVLINK_FLAP):
            if e.params["link"] != link or e.at > t:
                continue
            if e.kind is EventKind.NVLINK_DOWN and e.active(t):
                return False
            if e.kind is EventKind.NVLINK_FLAP:
                period = e.params["period_seconds"]
                n, frac = divmod(t - e.at, period)
                # down for the first half of each period, ``times`` periods long
                if n < e.params["times"] and frac < period / 2:
                    return False
        return True

    def thermal(self, gpu: int, t: float) -> tuple[float, int]:
        """(extra degrees C, clock-event reason bits) from active thermal events."""
        rise, bits = 0.0, 0
        for e in self._of(gpu, EventKind.THERMAL):
            if e.active(t):
                rise = max(rise, e.params["temperature_rise_celsius"])
                for name in e.params["reasons"]:
                    bits |= THERMAL_REASONS[name]
        return rise, bits

    def recovery_action(self, gpu: int, t: float) -> int:
        """Field 230: the latest scripted action, back to 0 (none) after a reset."""
        r = self.last_reset(gpu, t)
        value = 0
        for e in self._of(gpu, EventKind.RECOVERY_ACTION):
            if e.at <= t and (r is None or e.at >= r):
                value = e.params["value"]
        return value

    def xids_between(self, t0: float, t1: float) -> list[DueXid]:
        """Xids with t0 < at <= t1, in time order."""
        return [x for x in self.xids if t0 < x.at <= t1]

    def next_xid_after(self, t: float) -> float | None:
        for x in self.xids:
            if x.at > t:
                return x.at
        return None
