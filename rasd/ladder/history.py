"""The fault history escalation weighs: one object for everything the ladder remembers.

Recent Xids (per GPU and per code), downs and ECC/parity reports per NVLink port, double-bit
retired-page readings and the last PCIe replay report per GPU, Xid recurrence counts (a burst
counting once), remedies that were applied and those that did not hold, and the node's remedies.
Each table is trimmed to its window as event time moves on, so memory is bounded by the number of
components, not by the number of events. Pure: event time is the only clock.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Callable

from rasd.ladder.findings import Context, Finding, XidSeen
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xids import parse_gpc_tpc, parse_link
from rasd.model import FaultEvent, FaultKind, Rung

Component = tuple[int, "int | None"]  # (gpu, None) for a GPU, (gpu, link) for one NVLink port
_XID = FaultKind.XID
_NVLINK, _RETIRED, _PCIE = FaultKind.NVLINK, FaultKind.RETIRED_PAGES, FaultKind.PCIE_REPLAY
# the kinds whose classification reads the context (the others are judged on their own)
_READS_HISTORY = frozenset(k.value for k in (FaultKind.XID, FaultKind.NVLINK,
                                             FaultKind.PCIE_REPLAY, FaultKind.RETIRED_PAGES,
                                             FaultKind.NVSWITCH))
_EMPTY = Context()  # what a history without tables says (shared: contexts are never changed)
_NO_REPEATS: dict[str, int] = {}
_new = tuple.__new__


class FaultHistory:
    """Feed it every classified event (``remember``) and every remedy (``remedy_applied``);
    ask it for the ``context`` of the next event and for the recurrence counts escalation needs."""

    def __init__(self, settings: LadderSettings, *, components: bool = True):
        """``components``: keep ``gpus_seen`` and ``links_seen`` (see ``Escalator``)."""
        self.s = settings
        self._components = components
        self._long_burst = settings.long_burst_codes()
        self._line_burst = settings.xid_line_burst_seconds
        self._recent_keep = max(settings.xid_repeat_window_seconds,
                                settings.xid_companion_seconds)
        # Xids seen lately, for classification's workflows (13/31 repeats, 45/48 companions)
        # (lists, not deques: a deque's first block is 640 bytes, and a fleet's replay keeps
        # these per GPU and per code for thousands of hosts, where memory is what costs time)
        self._recent_gpu: dict[int, list[XidSeen]] = defaultdict(list)
        self._recent_code: dict[int, list[XidSeen]] = defaultdict(list)
        # recurrence of one Xid on one GPU: occurrence times (bursts once) and the last line's time
        self._xid_counted: dict[tuple[int, int], list[float]] = defaultdict(list)
        self._xid_last: dict[tuple[int, int], float] = {}
        self._link_downs: dict[Component, list[float]] = defaultdict(list)
        self._parity: dict[Component, int] = defaultdict(int)
        self._dbe: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self._pcie_last: dict[int, float] = {}
        # the line burst of each (gpu, Xid): (last line's time, when the burst began)
        self._burst: dict[tuple[int, int], tuple[float, float]] = {}
        # "if seen repeatedly" rules: occurrence times per component and key (a burst once)
        self._repeats: dict[Component, dict[str, deque[float]]] = defaultdict(dict)
        # remedies: the last one per component and fault class, and those that did not hold
        self._remedied: dict[Component, dict[str, tuple[Rung, float]]] = defaultdict(dict)
        self._not_held: dict[Component, list[tuple[float, Rung]]] = defaultdict(list)
        self.node_remedies: deque[float] = deque()
        self.fault_times: dict[int, list[float]] = defaultdict(list)  # recurrence, per GPU
        self.gpus_seen: set[int] = set()
        self.links_seen: set[Component] = set()
        self.last_time = float("-inf")

    # ------------------------------------------------------------------ before classification

    def context(self, e: FaultEvent) -> Context:
        """What the history says about this event's component (earlier events only)."""
        kind = e.kind
        if kind is not _XID and kind._value_ not in _READS_HISTORY:
            return _EMPTY  # its classification asks nothing of the past
        details = e.details
        link = e.link if e.link is not None else details.get("link")
        if kind is not _XID:
            comp = (e.gpu, link)
            downs = self._link_downs.get(comp)
            parity = self._parity.get(comp, 0)
            dbe = self._dbe.get(e.gpu)
            pcie = self._pcie_last.get(e.gpu)
            repeats = self._repeat_counts(comp, e.time_wall)
            if not downs and not parity and not dbe and pcie is None and not repeats:
                return _EMPTY  # nothing on record: the shared empty context says the same
            return Context(
                link_downs=tuple(downs or ()),
                link_parity_hits=parity,
                retired_dbe=tuple(dbe or ()),
                pcie_last_time=pcie,
                repeats=repeats,
            )
        t = e.time_wall
        gpu = e.gpu
        code = details.get("xid")
        if type(code) is not int:
            code = xid_code(e)
        prev = self._burst.get((gpu, code))  # when this line's burst began (t: a new burst)
        burst = prev[1] if prev is not None and 0 <= t - prev[0] <= self._line_burst else t
        keep = t - self._recent_keep
        mine = self._recent_gpu.get(gpu)
        if mine and mine[0][0] < keep:
            _drop_seen(mine, keep)
        same = self._recent_code.get(code)
        if same and same[0][0] < keep:
            _drop_seen(same, keep)
        # classification asks about this GPU's Xids and the same code on other GPUs only
        recent = tuple(mine) if mine else ()
        if same:
            recent += tuple([x for x in same if x[1] != gpu])
        if link is None:
            link = parse_link(details.get("message"))
        comp = (gpu, link)
        downs = self._link_downs.get(comp)
        dbe = self._dbe.get(gpu)
        reps = self._repeats.get(comp)
        return Context(recent, tuple(downs) if downs else (), self._parity.get(comp, 0),
                       tuple(dbe) if dbe else (), self._pcie_last.get(gpu), burst,
                       self._repeat_counts(comp, t) if reps else _NO_REPEATS)

    def repeat_flags(self, gpu: int, code: int, t: float, key: str | None) -> tuple[bool, bool]:
        """Xid 13/31's two questions (``xidflows._repeat_flags`` over this line's ``context``),
        asked of the tables directly (a fleet's replay asks them for every fifth event, and
        gathering a whole context costs more): an earlier occurrence of ``code`` on this GPU
        within the repeat window, outside this line's burst (for Xid 13 on the same GPC/TPC
        ``key`` when both name one); the same code on another GPU within the window."""
        prev = self._burst.get((gpu, code))
        burst = prev[1] if prev is not None and 0 <= t - prev[0] <= self._line_burst else t
        keep = t - self._recent_keep
        since = t - self.s.xid_repeat_window_seconds
        same_gpu = other_gpus = False
        mine = self._recent_gpu.get(gpu)  # (every entry is this GPU's)
        if mine:
            if mine[0][0] < keep:
                _drop_seen(mine, keep)
            for x in mine:
                if x[2] == code and x[0] >= since and x[4] != burst and (
                        code != 13 or key is None or x[3] is None or x[3] == key):
                    same_gpu = True
                    break
        same = self._recent_code.get(code)  # (every entry is this code's)
        if same:
            if same[0][0] < keep:
                _drop_seen(same, keep)
            for x in same:
                if x[1] != gpu and x[0] >= since:
                    other_gpus = True
                    break
        return same_gpu, other_gpus

    def xid48_before(self, gpu: int, t: float) -> bool:
        """An Xid 48 on this GPU within the companion window before ``t`` (what Xid 63/64 ask
        of their context), asked of the table directly."""
        mine = self._recent_gpu.get(gpu)
        if not mine:
            return False
        keep = t - self._recent_keep
        if mine[0][0] < keep:
            _drop_seen(mine, keep)
        since = t - self.s.xid_companion_seconds
        for x in mine:
            if x[2] == 48 and x[0] >= since:
                return True
        return False

    def _repeat_counts(self, comp: Component, t: float) -> dict[str, int]:
        reps = self._repeats.get(comp)
        if not reps:
            return _NO_REPEATS
        repeats = {}
        cut = t - self.s.xid_repeat_window_seconds
        for key, times in reps.items():
            while times and times[0] < cut:
                times.popleft()
            # the current burst is this occurrence, not an earlier one
            n = len(times) - (1 if times and t - times[-1] <= self.s.xid_line_burst_seconds
                              else 0)
            if n > 0:
                repeats[key] = n
        return repeats

    # ------------------------------------------------------------------ after classification

    def remember(self, e: FaultEvent, f: Finding | None) -> None:
        """Add a classified event to the tables the next events' contexts read."""
        k = e.kind
        if k is _XID:
            t = e.time_wall
            gpu = e.gpu
            code = int(e.details["xid"])
            key = (gpu, code)
            prev = self._burst.get(key)
            start = prev[1] if prev is not None and 0 <= t - prev[0] <= self._line_burst else t
            self._burst[key] = (t, start)
            # (built as the plain tuple it is: XidSeen's own __new__ is a Python function)
            seen = _new(XidSeen, (t, gpu, code, parse_gpc_tpc(e.details.get("message"))
                                  if code == 13 else None, start))
            self._recent_gpu[gpu].append(seen)
            self._recent_code[code].append(seen)
        elif k is _NVLINK and e.details.get("state", "down") == "down" and f is not None:
            downs = self._link_downs[(e.gpu, f.link)]
            downs.append(e.time_wall)
            cut = e.time_wall - self.s.link_flap_window_seconds
            downs[:] = [t for t in downs if t >= cut]
        elif k is _RETIRED:
            hist = self._dbe[e.gpu]
            hist.append((e.time_wall, int(e.details.get("double_bit", 0))))
            cut = e.time_wall - 2 * self.s.retired_dbe_recent_seconds
            # keep one reading older than the week: it is the baseline for "new this week"
            while len(hist) > 1 and hist[1][0] < cut:
                hist.pop(0)
        elif k is _PCIE:
            self._pcie_last[e.gpu] = e.time_wall
        if f is None or (f.link is None and f.repeat_key is None and not f.link_parity):
            return  # (most findings: nothing per link, no repeat rule)
        if f.link_parity:
            self._parity[(e.gpu, f.link)] += 1
        if f.link is not None and self._components:
            self.links_seen.add((e.gpu, f.link))
        if f.repeat_key is not None:
            times = self._repeats[(e.gpu, f.link)].setdefault(f.repeat_key, deque())
            if not times or e.time_wall - times[-1] > self.s.xid_line_burst_seconds:
                times.append(e.time_wall)
            else:
                times[-1] = e.time_wall  # the burst goes on: one occurrence, its latest line

    def fault(self, e: FaultEvent) -> None:
        """A fault that asked for something: counted for the RMA queue's recurrence order."""
        times = self.fault_times[e.gpu]
        times.append(e.time_wall)
        cut = e.time_wall - self.s.node_remedy_window_seconds
        if times[0] < cut:
            drop_before(times, cut)

    def count_xid(self, gpu: int, xid: int, t: float) -> int:
        """Occurrences of one Xid on one GPU within the recurrence window, a burst counting once."""
        burst = self.s.xid_long_burst_seconds if xid in self._long_burst \
            else self.s.xid_burst_seconds
        key = (gpu, xid)
        counted = self._xid_counted[key]
        last = self._xid_last.get(key)
        self._xid_last[key] = t
        if last is None or t - last > burst:
            counted.append(t)
        cut = t - self.s.xid_recurrence_window_seconds
        if counted and counted[0] < cut:
            drop_before(counted, cut)
        return len(counted)

    # ------------------------------------------------------------------ remedies

    def remedy_applied(self, t: float) -> None:
        self.node_remedies.append(t)
        cut = t - self.s.node_remedy_window_seconds
        while self.node_remedies and self.node_remedies[0] < cut:
            self.node_remedies.popleft()

    def remedied(self, comp: Component, fault: str, rung: Rung, t: float) -> None:
        """A remedy closed this fault's decision: a recurrence within the cure window says the
        cure did not hold."""
        self._remedied[comp][fault] = (rung, t)

    def take_remedy(self, comp: Component, fault: str) -> tuple[Rung, float] | None:
        """The last remedy of this fault on this component, forgotten once asked about."""
        table = self._remedied.get(comp)
        return table.pop(fault, None) if table else None

    def not_holding(self, comp: Component, t: float, rung: Rung) -> int:
        """Record that a ``rung`` remedy did not hold; how many of that rung did not, lately."""
        hist = self._not_held[comp]
        hist.append((t, rung))
        cut = t - self.s.not_holding_memory_seconds
        hist[:] = [x for x in hist if x[0] >= cut]
        return sum(1 for _, r in hist if r == rung)

    def forget_gpu(self, gpu: int) -> None:
        """The GPU was replaced: its history belongs to the old board."""
        for table in self._component_tables():
            for comp in [c for c in table if c[0] == gpu]:
                del table[comp]
        for key in [k for k in self._xid_counted if k[0] == gpu]:
            del self._xid_counted[key]
            self._xid_last.pop(key, None)
        self._dbe.pop(gpu, None)
        for bkey in [k for k in self._burst if k[0] == gpu]:
            del self._burst[bkey]

    def forget_link(self, comp: Component) -> None:
        """A person handled the link's fault: what is kept of that link goes with it."""
        for table in self._component_tables():
            table.pop(comp, None)

    def _component_tables(self) -> tuple[dict[Component, Any], ...]:
        return (self._not_held, self._remedied, self._link_downs, self._parity, self._repeats)

    def sweep(self, t: float) -> None:
        """Drop what no window can reach any more at event time ``t`` (each table would ignore
        it anyway), so memory follows the components, not the length of the history."""
        s = self.s
        # (each cut computed once: a fleet replay sweeps a host every few dozen events)
        old = t - s.xid_recurrence_window_seconds
        for gk in [k for k, last in self._xid_last.items() if last < old]:
            del self._xid_last[gk]
            self._xid_counted.pop(gk, None)
        old = t - s.xid_line_burst_seconds
        for gk in [k for k, (last, _) in self._burst.items() if last < old]:
            del self._burst[gk]
        keep = t - self._recent_keep
        for recent in (self._recent_gpu, self._recent_code):
            for k in list(recent):
                seen = recent[k]
                if seen and seen[0][0] < keep:
                    _drop_seen(seen, keep)
                if not seen:
                    del recent[k]
        cut = t - s.xid_repeat_window_seconds
        # (most tables of most hosts are empty: asked first, a sweep costs less than a walk)
        for comp in list(self._repeats) if self._repeats else ():
            reps = self._repeats[comp]
            for rk in list(reps):
                times = reps[rk]
                while times and times[0] < cut:
                    times.popleft()
                if not times:
                    del reps[rk]
            if not reps:
                del self._repeats[comp]
        if self._link_downs:
            flap = t - s.link_flap_window_seconds
            _prune(self._link_downs, lambda x: x >= flap)
        if self._not_held:
            held = t - s.not_holding_memory_seconds
            _prune(self._not_held, lambda x: x[0] >= held)
        old = t - s.cure_window_seconds
        for comp in list(self._remedied) if self._remedied else ():
            table = self._remedied[comp]
            for fault in [f for f, (_, when) in table.items() if when < old]:
                del table[fault]
            if not table:
                del self._remedied[comp]
        cut = t - s.node_remedy_window_seconds
        for gpu in list(self.fault_times):
            ft = self.fault_times[gpu]
            if ft and ft[0] < cut:
                drop_before(ft, cut)
            if not ft:
                del self.fault_times[gpu]

    def node_remedies_since(self, t: float) -> int:
        return sum(1 for x in self.node_remedies if x >= t)


def drop_before(times: list[float], cut: float) -> None:
    """Drop the times before ``cut`` from the front (they are in the order they came)."""
    i, n = 0, len(times)
    while i < n and times[i] < cut:
        i += 1
    del times[:i]


def _drop_seen(seen: list[XidSeen], cut: float) -> None:
    """As ``drop_before``, for Xids seen (by their time)."""
    i, n = 0, len(seen)
    while i < n and seen[i][0] < cut:
        i += 1
    del seen[:i]


def _prune(table: dict[Component, list[Any]], keep: Callable[[Any], bool]) -> None:
    for comp in list(table):
        kept = [x for x in table[comp] if keep(x)]
        if kept:
            table[comp] = kept
        else:
            del table[comp]


def xid_code(e: FaultEvent) -> int:
    code = e.details.get("xid")
    return code if isinstance(code, int) and not isinstance(code, bool) else -1
