"""Monotonic totals over raw NVML counters.

A driver reload or GPU reset sets volatile counters (and the energy counter) back to zero.
Prometheus counters must never decrease, so a drop is taken as a reset: the raw value from before
it is folded into an offset and the reset is counted. The exported total is offset + raw.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MonotonicCounters:
    """Per-GPU bookkeeping. Not thread-safe: one owner (the aggregator) updates it."""

    _last_raw: dict[str, float] = field(default_factory=dict)
    _offset: dict[str, float] = field(default_factory=dict)
    # resets counted when each counter was last read: one reset drops every volatile counter
    # (ECC, energy, NVLink, PCIe), read in the same poll or, for slow counters, polls later; it
    # is one reset, counted at the first drop
    _seen_resets: dict[str, int] = field(default_factory=dict)
    resets: int = 0

    def update(self, name: str, raw: float | None) -> float | None:
        """Feed a raw reading; return the monotonic total (None when the reading is absent)."""
        if raw is None:
            last = self._last_raw.get(name)
            return None if last is None else self._offset.get(name, 0) + last
        last = self._last_raw.get(name)
        if last is not None and raw < last:
            self._offset[name] = self._offset.get(name, 0) + last
            if self._seen_resets.get(name, 0) == self.resets:  # no reset since its last reading
                self.resets += 1
        self._last_raw[name] = raw
        self._seen_resets[name] = self.resets
        return self._offset.get(name, 0) + raw

    def delta(self, name: str, raw: float | None) -> tuple[float | None, float]:
        """Like update(), also returning how much the total grew since the last reading.

        The usual reading (a value after a value) is worked out here in one pass: the slow
        poll's counters are 82 a GPU on an 18-link GPU."""
        last = self._last_raw.get(name)
        if raw is None or last is None:
            before = self.total(name)
            total = self.update(name, raw)
            if total is None or before is None:
                return total, 0.0
            return total, total - before
        offset = self._offset.get(name, 0)
        before = offset + last
        if raw < last:  # a reset: as update()
            offset = self._offset[name] = offset + last
            if self._seen_resets.get(name, 0) == self.resets:
                self.resets += 1
        self._last_raw[name] = raw
        self._seen_resets[name] = self.resets
        total = offset + raw
        return total, total - before

    def total(self, name: str) -> float | None:
        last = self._last_raw.get(name)
        return None if last is None else self._offset.get(name, 0) + last
