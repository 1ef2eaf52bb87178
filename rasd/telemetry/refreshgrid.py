"""When an instant-power update was made, where NVML stamps each read with the read's own time.

Drivers that stamp field 186 with its refresh (A100/H100 as measured by Yang et al., the fake
node) give each update its refresh's time. An H200 on driver 580 (and NVIDIA's mock) stamps every
read with the time of the read instead, and the sampler knows an update only by its new value,
first read 0 to one read period after the driver refreshed it. Timed at the read, two refreshes
100 ms apart can look 20 or 180 ms apart: ramp rates from such updates came out about a quarter
too steep at the 95th percentile (training steps read at 12.5 Hz, in simulation).

The driver refreshes on a grid (every 100 ms: 95-106 ms between value changes on the H200, 10th
to 90th percentile, a spread this assumes to be jitter around the grid rather than a wandering
period; with the period wandering freely only the typical spacing improves). Each update's refresh lies
between the read before it, which still saw the old value, and its own read: the spans of all
updates share the grid's phase. ``RefreshGrid`` keeps the phases every recent span allows (arcs of
the refresh period's circle); once they narrow to one arc, each update is timed at the grid point
in its span taken at that arc's middle. The offset that leaves (the arc's width: reads at 12.5 Hz
take five phases 20 ms apart, so up to 10 ms) is the same for every update, so the spacing of
the updates, and every ramp and period taken from it, is the driver's. A grid that drifts against
the host's clock is followed: the arcs widen by DRIFT_PPM as time passes and the phase moves
to the nearest phase they allow. A read that caught a transient empties them in time: they
start again from the next span. A span of a whole period or more (a failed read between) says
nothing, but the update is still placed on the pinned grid.
"""

from __future__ import annotations

PERIOD_US = 100_000  # NVML's instant-power refresh (rasd.telemetry.power.NVML_REFRESH_HZ)
# One arc left pins the phase down: every update placed at a phase inside it lies in its own span
# (the arc lies in every span), so all carry one offset. Read at 15 Hz the reads take three
# phases 33 ms apart and the arc never narrows below that.
LOCK_US = 60_000
SLIVER_SHARE = 4  # an arc under a quarter of the longest is a sliver
DRIFT_PPM = 500  # how fast the grid may drift against the host's clock (the H200's: about 200)
MAX_ARCS = 8  # more pieces than this: the spans say too little yet (start again)
# Read faster than the refresh, some reads must find the value unchanged (at 12.5 Hz one in five
# where every refresh changes it). A value that changes on every read for this many updates in a
# row has no refresh grid (NVIDIA's mock varies power per read): nothing is placed until a read
# repeats one. 24 allows reading as slowly as 11 Hz.
ALL_NEW_UPDATES = 24

Arc = tuple[int, int]  # (start, length) in microseconds on the period's circle, half-open [s, s + l)


class RefreshGrid:
    """One GPU's refresh grid, from its value-judged updates' spans (microseconds, NVML clock)."""

    __slots__ = ("arcs", "phase", "since_repeat", "last_us")

    def __init__(self) -> None:
        self.arcs: list[Arc] = []  # the phases every span since the last start allows
        self.phase: int | None = None  # where updates are placed on the grid (us in the period)
        self.since_repeat = ALL_NEW_UPDATES + 1  # updates since a read found the value unchanged
        self.last_us: int | None = None  # the last update's read

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RefreshGrid):
            return NotImplemented
        return ((self.arcs, self.phase, self.since_repeat, self.last_us)
                == (other.arcs, other.phase, other.since_repeat, other.last_us))

    def __repr__(self) -> str:
        return f"RefreshGrid(arcs={self.arcs}, phase={self.phase}, since_repeat={self.since_repeat})"

    def repeat(self) -> None:
        """A read found the value unchanged: the value follows refreshes, not reads."""
        self.since_repeat = 0

    def place(self, prev_us: int, ts_us: int) -> int:
        """The time (us) of the refresh behind an update read at ``ts_us`` whose previous read,
        at ``prev_us``, still had the old value: a grid point in ``(prev_us, ts_us]``, or
        ``ts_us`` itself while the grid is not pinned down (or the span says nothing)."""
        self.since_repeat += 1
        if self.since_repeat > ALL_NEW_UPDATES:
            self.arcs, self.phase, self.last_us = [], None, None
            return ts_us
        length = ts_us - prev_us
        if length <= 0:
            return ts_us
        if self.last_us is not None and self.arcs:
            # the grid may drift against the host's clock: what the spans allowed widens with time
            grow = (ts_us - self.last_us) * DRIFT_PPM // 1_000_000 + 1
            self.arcs = [(a - grow, la + 2 * grow) for a, la in self.arcs if la + 2 * grow < PERIOD_US]
        self.last_us = ts_us
        if length < PERIOD_US:  # else any phase fits: the span says nothing
            span = ((prev_us + 1) % PERIOD_US, length)
            arcs = _intersect(self.arcs, span) if self.arcs else [span]
            if not arcs or len(arcs) > MAX_ARCS:
                arcs = [span]  # start again (a transient read, a jump of the grid)
            elif len(arcs) > 1:
                # slivers left where the widening let spans overlap at their ends (reads on fixed
                # phases of the grid): far narrower than the refresh's own arc, they go
                longest = max(la for _, la in arcs)
                arcs = [(a, la) for a, la in arcs if la * SLIVER_SHARE >= longest]
            self.arcs = arcs
        arcs = self.arcs
        # the phase moves only when it must, and as little as it must (a drifting grid): each
        # move changes one spacing by as much
        phase = self.phase
        if phase is not None and not any((phase - a) % PERIOD_US < la for a, la in arcs):
            phase = _nearest(phase, arcs[0]) if len(arcs) == 1 else None
        if phase is None and len(arcs) == 1 and arcs[0][1] <= LOCK_US:
            phase = (arcs[0][0] + arcs[0][1] // 2) % PERIOD_US
        self.phase = phase
        if phase is None:
            return ts_us
        placed = ts_us - (ts_us - phase) % PERIOD_US  # the grid point at or before the read
        return placed if placed > prev_us else ts_us


def _nearest(phase: int, arc: Arc) -> int:
    """The point of ``arc`` nearest to ``phase`` round the period's circle."""
    start, length = arc
    to_start = (start - phase) % PERIOD_US  # forward from the phase to the arc
    to_end = (phase - (start + length - 1)) % PERIOD_US  # back from the phase to the arc's end
    return start % PERIOD_US if to_start <= to_end else (start + length - 1) % PERIOD_US


def _intersect(arcs: list[Arc], span: Arc) -> list[Arc]:
    """The parts of ``arcs`` inside ``span`` (all on the period's circle)."""
    out: list[Arc] = []
    b, lb = span
    for a, la in arcs:
        # unroll the span near the arc: it may sit one period before or after it
        for shift in (-PERIOD_US, 0, PERIOD_US):
            lo = max(a, b + shift)
            hi = min(a + la, b + shift + lb)
            if hi > lo:
                out.append((lo % PERIOD_US, hi - lo))
    return out
