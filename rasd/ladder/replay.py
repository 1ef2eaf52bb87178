"""`rasd replay`: an event log or a raw kernel log through classification and escalation.

Each file is detected on its own: JSON lines (one event object a line: ``time`` as Unix seconds or
RFC 3339 with an offset, ``kind``, ``gpu``, optional ``link`` and ``host``, and the kind's fields),
or a kernel log in any form rasd.telemetry.kmsg understands (dmesg, dmesg -T, journal, syslog,
short-iso, bare NVRM lines). In an event log a line that does not parse stops the replay with its
line number; in a kernel log lines that are not NVIDIA driver reports are skipped and counted.

Events stream through (memory stays flat in their number): a bounded reorder window puts a log
gathered from several sources back in time order, and each host gets its own ladder. The report
judges a bounded chunk of events at a time, host by host (``run_grouped``): the same steps in the
same order, with each host's ladder kept in the CPU's caches while its events are judged.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import math
import re
import sys
import zlib
from array import array
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence, cast

from rasd.ladder.decision import Decision
from rasd.ladder.escalate import Escalator, Step
from rasd.ladder.findings import BadEvent
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind
from rasd.store import Store
from rasd.telemetry.kmsg import SyslogYear, bus_name, is_nvidia, parse_xid_line, split_record

_REQUIRED = {
    FaultKind.XID: ("xid",),
    FaultKind.NVLINK: ("link",),
    FaultKind.PCIE_REPLAY: ("count",),
    FaultKind.RECOVERY_ACTION: ("action",),
    FaultKind.SDC: ("verdict",),
    FaultKind.REMEDY: ("action", "result"),
    FaultKind.NVSWITCH: ("sxid",),
}
_places = functools.partial(array, "I")  # a new array of places (unsigned, 32 bits or more)
REORDER_WINDOW = 65_536  # at most this many events held back to restore time order
REORDER_SECONDS = 300.0  # an event is held until the log is this far past it
# events judged host by host at a time (memory vs the CPU's caches: a host's ladder is fetched
# from memory once a chunk); with each waiting event kept small (one string a host, compact
# details, places as machine integers) this many take less memory than 131,072 took before
CHUNK_EVENTS = 196_608
SWEEP_EVERY = 32  # events between two host-ladder sweeps of a replay (memory vs time)
BARE_SPACING_SECONDS = 60.0  # bare driver lines carry no time: one minute apart, a burst together
EXPECTED = ("JSON-lines events, or kernel log lines with NVIDIA driver reports (NVRM: Xid / "
            "SXid) as dmesg, dmesg -T, journalctl (short, short-iso) or syslog print them")


class ReplayError(ValueError):
    def __init__(self, line: int, why: str, source: int | None = None):
        self.line = line
        self.source = source  # which file, when several are replayed together
        super().__init__(f"line {line}: {why}" if line else why)


# An event with where it came from: (time, line, event, host, source), where time is the event's
# time_wall, host "" when the log names none, and source which of the files replayed together it
# came from. A plain tuple, read by position: one is built per event of a replay, and a plain
# tuple is built by one instruction (a named tuple's constructor is a call, and the tuple is
# built twice). The time comes first and the line second, so that the tuple itself is the
# reorder window's key (time, then the file's order), with no second tuple built around it.
Numbered = tuple[float, int, FaultEvent, str, int]


@dataclass(slots=True)
class ReadStats:
    """What a file held: its detected form, the events read, the lines skipped and why."""

    form: str = ""  # "events" or "kernel log"
    lines: int = 0
    events: int = 0
    record_forms: Counter[str] = field(default_factory=Counter)  # kernel-log line forms seen
    skipped_other: int = 0  # not NVIDIA driver lines (or not in a known form)
    skipped_nvidia: int = 0  # NVIDIA driver lines that report no Xid
    out_of_order: int = 0  # events later than the reorder window could put right

    @property
    def recognised(self) -> bool:
        return self.events > 0 or sum(self.record_forms.values()) > 0


class Names:
    """GPU numbers for devices a kernel log names by PCI bus id, per host (first seen, first
    numbered), and the names to print for them."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}  # (host, name) -> GPU number
        self._names: dict[tuple[str, int], str] = {}

    def number(self, host: str, name: str) -> int:
        key = (host, name)
        n = self.ids.get(key)
        if n is None:
            n = sum(1 for h, _ in self.ids if h == host)
            self.ids[key] = n
            self._names[(host, n)] = name
        return n

    def name(self, host: str, gpu: int) -> str | None:
        return self._names.get((host, gpu))

    def __bool__(self) -> bool:
        return bool(self.ids)


# --------------------------------------------------------------------------- JSON lines


def parse_time(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("time: expected Unix seconds or an RFC 3339 timestamp")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("time: must be finite")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            raise ValueError(f"time: {value!r} is not RFC 3339 (e.g. 2025-01-31T12:00:00Z)") \
                from None
        if dt.tzinfo is None:
            raise ValueError(f"time: {value!r} has no UTC offset; add Z or +HH:MM")
        return dt.timestamp()
    raise ValueError("time: expected Unix seconds or an RFC 3339 timestamp")


_loads: Callable[[str], Any]
try:  # orjson parses an event line about three times faster than the standard library
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - a dependency; the standard library still works
    _loads = json.loads

_KINDS = {k.value: k for k in FaultKind}
_NVLINK = FaultKind.NVLINK
_MISSING = object()
_REQUIRED_BY_VALUE = {k.value: v for k, v in _REQUIRED.items()}  # an enum hashes in Python
# kind's value -> (kind, its one required field or ""), for the kinds with at most one other
# than the link: a line of one of them with no link key has little more to check than its
# top-level fields (the kind and its field in one look-up)
_ONE_FIELD = {k.value: (k, _REQUIRED.get(k, ("",))[0]) for k in FaultKind
              if len(_REQUIRED.get(k, ())) <= 1 and _REQUIRED.get(k, ("",))[0] != "link"}


def parse_object(obj: Any) -> tuple[FaultEvent, str]:
    """One decoded JSON object -> (event, host). The object is consumed: what is left of it
    becomes the details."""
    # The exact-type test is the cheap one, true for every line json and orjson decode; a dict
    # subclass (another decoder's) is checked only when it fails.
    if type(obj) is not dict and not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    # the top-level keys come out of the object, which becomes the details (cheaper than a copy)
    pop = obj.pop
    t = pop("time", _MISSING)
    kind_value = pop("kind", _MISSING)
    gpu = pop("gpu", _MISSING)
    # (a well-formed line passes one test: a finite float time, a known kind, a GPU index; any
    # other is looked at field by field below, for its error or its conversion)
    kind = _KINDS.get(kind_value) if type(kind_value) is str else None
    if type(t) is not float or t - t != 0.0 or kind is None or type(gpu) is not int or gpu < 0:
        if t is _MISSING or kind_value is _MISSING or gpu is _MISSING:
            raise ValueError("missing " + repr("time" if t is _MISSING else "kind"
                                               if kind_value is _MISSING else "gpu"))
        if type(t) is not float or t - t != 0.0:  # (not a finite float: NaN and inf give NaN)
            t = parse_time(t)  # a float from here on
        if kind is None:
            raise ValueError(f"kind: {kind_value!r} is not one of "
                             f"{', '.join(k.value for k in FaultKind)}")
        if type(gpu) is not int or gpu < 0:
            raise ValueError(f"gpu: {gpu!r} is not a GPU index")
    link = pop("link", _MISSING)
    if link is _MISSING:
        link = None
        has_link = False
    else:
        has_link = True
        if link is not None and (type(link) is not int or link < 0):
            raise ValueError(f"link: {link!r} is not a link number")
    required = _REQUIRED_BY_VALUE.get(kind_value)
    if required is not None:
        for key in required:
            if key not in obj and not (key == "link" and has_link):
                raise ValueError(f"missing {key!r} for kind {kind_value}")
    host = pop("host", "")
    if type(host) is not str:
        raise ValueError(f"host: {host!r} is not a host name")
    if kind is _NVLINK:
        obj["link"] = link
    # (a copy of what is left, as the reader's own path makes: see ``_json_events``)
    return _new_event(t, gpu, kind, link, dict(obj.items())), host


def parse_line(text: str) -> FaultEvent:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    return parse_object(obj)[0]


class _EventDraft:
    """A FaultEvent written as a plain slotted object, then made a FaultEvent (as decision.py's
    ``_DecisionDraft``: the same slots in the same order, so the class can be swapped): the
    reader builds one for every line."""

    __slots__ = FaultEvent.__slots__  # type: ignore[attr-defined]

    def __init__(self, time_wall: float, gpu: int, kind: FaultKind, link: int | None,
                 details: dict[str, Any]) -> None:
        self.time_wall = time_wall
        self.gpu = gpu
        self.kind = kind
        self.link = link
        self.details = details
        self.__class__ = FaultEvent  # type: ignore[assignment]


_new_event = cast(Callable[[float, int, FaultKind, "int | None", "dict[str, Any]"], FaultEvent],
                  _EventDraft)


_HOST_RE = re.compile(r'"host"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _json_events(lines: Iterable[tuple[int, str]], stats: ReadStats,
                 keep: Callable[[str], bool] | None = None) -> Iterator[Numbered]:
    loads = _loads
    parse = parse_object
    host_re = _HOST_RE.search
    new_event = _new_event
    one_field = _ONE_FIELD
    # a host's name is kept as one string for all its events (the decoder makes one a line):
    # a chunk of events waiting to be judged holds one copy, not one an event, and the look-ups
    # by host (the chunk's groups, the ladders) find it by identity
    intern = sys.intern
    n = stats.lines
    events = 0  # (counted here, written to the stats when the file ends or fails)
    try:
        for n, text in lines:
            if keep is not None:  # another worker's host: skip it before parsing it
                m = host_re(text)
                host = m.group(1) if m else ""
                if "\\" in host:
                    host = json.loads(f'"{host}"')
                if not keep(host):
                    continue
            try:
                obj = loads(text)
            except json.JSONDecodeError:
                if not text or text.isspace():
                    continue  # a blank line (asked here, of the few lines that are not JSON)
                raise ReplayError(n, _not_json(text)) from None
            # (parse_object, inline for a well-formed line of a kind with at most one required
            # field and no link: most lines of a fleet's log; any other line, and any that fails
            # a check here, goes through parse_object itself, read again for its error)
            if type(obj) is dict and "link" not in obj:
                pop = obj.pop
                t = pop("time", None)
                kind_value = pop("kind", None)
                gpu = pop("gpu", None)
                host = pop("host", "")
                # (a kind that is not a string may not be hashable: not looked up)
                spec = one_field.get(kind_value) if type(kind_value) is str else None
                if (spec is not None and type(t) is float and t - t == 0.0 and type(gpu) is int
                        and gpu >= 0 and type(host) is str and (not spec[1] or spec[1] in obj)):
                    events += 1
                    # (the details are a copy of what is left: the decoded object keeps the
                    # table of all its keys after four are taken out, 352 bytes against 184
                    # for the copy, and a chunk keeps 196,608 events waiting to be judged)
                    yield t, n, new_event(t, gpu, spec[0], None, dict(obj.items())), \
                        intern(host), 0
                    continue
                obj = loads(text)  # (the checks took its fields: parse_object reads them all)
            try:
                event, host = parse(obj)
            except ValueError as e:
                raise ReplayError(n, str(e)) from None
            events += 1
            yield event.time_wall, n, event, intern(host), 0
    finally:
        stats.lines = n
        stats.events += events


def _not_json(text: str) -> str:
    """Why a line is not JSON, its column counted without the line end (the line is read with
    it, and a parser that reaches the end would count the line end as a line of its own)."""
    try:
        _loads(text.rstrip("\n"))
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg} at column {e.colno})"
    return "not JSON"


# --------------------------------------------------------------------------- kernel logs


def _kernel_events(lines: Iterable[tuple[int, str]], stats: ReadStats, names: Names, *,
                   year: int, boot_time: float, architecture: str | None,
                   keep: Callable[[str], bool] | None = None) -> Iterator[Numbered]:
    years = SyslogYear(year)
    last_t = boot_time
    last_key: tuple[str, str, int] | None = None
    for n, text in lines:
        stats.lines = n
        if not text or text.isspace():
            continue
        rec = split_record(text, years.for_line(text))
        if rec is None:
            if keep is None or keep(""):  # counted once, by the worker of host ""
                stats.skipped_other += 1
            continue
        if keep is not None and not keep(rec.host):
            continue
        stats.record_forms[rec.form] += 1
        x = parse_xid_line(rec.text)
        if x is None:
            if is_nvidia(rec.text):
                stats.skipped_nvidia += 1
            else:
                stats.skipped_other += 1
            continue
        bus = bus_name(x.pci)
        key = (rec.host, bus, x.xid)
        if rec.time_wall is not None:
            t = rec.time_wall
        elif rec.boot_seconds is not None:
            t = boot_time + rec.boot_seconds
        else:  # a bare line: the burst it continues, or the next minute
            t = last_t if key == last_key else last_t + BARE_SPACING_SECONDS
        last_t, last_key = t, key
        details: dict[str, Any] = {"message": x.message, "pci_bus_id": bus}
        if x.gpu_instance is not None:
            details["gpu_instance"] = x.gpu_instance
        if x.compute_instance is not None:
            details["compute_instance"] = x.compute_instance
        if x.pid is not None:
            details["pid"] = x.pid
        if x.process:
            details["process"] = x.process
        if x.switch is not None:
            details.update(sxid=x.xid, switch=x.switch)
            gpu = names.number(rec.host, f"{x.switch} {bus}")
            event = FaultEvent(t, gpu, FaultKind.NVSWITCH, None, details)
        else:
            details["xid"] = x.xid
            if architecture:
                details["architecture"] = architecture
            event = FaultEvent(t, names.number(rec.host, bus), FaultKind.XID, None, details)
        stats.events += 1
        yield t, n, event, rec.host, 0


# --------------------------------------------------------------------------- the replay


def read_events(lines: Iterable[str], stats: ReadStats, names: Names, *, year: int = 1970,
                boot_time: float = 0.0, architecture: str | None = None,
                keep: Callable[[str], bool] | None = None) -> Iterator[Numbered]:
    """Detect the file's form from its first non-empty line, then stream its events. Lines
    may keep their line ends (every reader ignores them)."""
    rest = iter(lines)
    first: tuple[int, str] | None = None
    for n, text in enumerate(rest, 1):
        if text.strip():
            first = (n, text)
            break
    if first is None:
        return iter(())
    # (numbered by enumerate and chained in C: no generator of our own between file and parser)
    numbered = enumerate(itertools.chain((first[1],), rest), first[0])
    if first[1].lstrip().startswith("{"):
        stats.form = "events"
        return _json_events(numbered, stats, keep)
    stats.form = "kernel log"
    return _kernel_events(numbered, stats, names, year=year, boot_time=boot_time,
                          architecture=architecture, keep=keep)


def in_time_order(items: Iterable[Numbered], stats: ReadStats,
                  window: int = REORDER_WINDOW,
                  seconds: float = REORDER_SECONDS) -> Iterator[Numbered]:
    """Put one file's log back in time order (stable): an event waits until the log has moved
    ``seconds`` past it, or until ``window`` events wait (memory stays bounded). The events
    must come in the order of their lines (as a file is read): a tie in time goes by line.

    The waiting events are kept in two parts, each in (time, line) order: those that came in
    time order, in a queue (most of a log, at the cost of an append), and those that came after
    a later one, in a heap. The next event out is the earlier of the two heads. (The items are
    compared as the tuples they are, time then line: a file's lines differ, so the comparison
    never reaches the events.)"""
    ordered: deque[Numbered] = deque()
    late: list[Numbered] = []
    push, pop, popleft = heapq.heappush, heapq.heappop, ordered.popleft
    tail = float("-inf")  # the newest event in the queue
    last = float("-inf")  # the newest event emitted
    newest = float("-inf")  # the newest event read
    append = ordered.append
    for item in items:
        t = item[0]
        if t >= tail and not late:
            # (nearly always: this event and every waiting one came in time order, so this one
            # is the newest read, and the queue's head is the earliest waiting, no earlier than
            # the last emitted)
            append(item)
            tail = newest = t
            due = t - seconds
            while ordered[0][0] <= due or len(ordered) > window:
                head = popleft()
                last = head[0]
                yield head
                if not ordered:
                    break
            continue
        if t >= tail:
            append(item)
            tail = t
        else:
            push(late, item)
        if t > newest:
            newest = t
        due = newest - seconds
        while True:
            if late and (not ordered or late[0] < ordered[0]):
                head = late[0]
                if not (head[0] <= due or len(ordered) + len(late) > window):
                    break
                pop(late)
            elif ordered:
                head = ordered[0]
                if not (head[0] <= due or len(ordered) + len(late) > window):
                    break
                popleft()
            else:
                break
            if head[0] < last:
                stats.out_of_order += 1
            else:
                last = head[0]
            yield head
    while ordered or late:
        if late and (not ordered or late[0] < ordered[0]):
            head = pop(late)
        else:
            head = popleft()
        if head[0] < last:
            stats.out_of_order += 1
        else:
            last = head[0]
        yield head


def run(items: Iterable[Numbered], settings: LadderSettings | None = None,
        store: Store | None = None) -> Iterator[tuple[Numbered, Step]]:
    """Each event's step, host by host each on its own ladder (into ``store`` when given: each
    event with its step in one transaction)."""
    s = settings or LadderSettings()
    ladders: dict[str, Escalator] = {}
    order: list[Escalator] = []  # sweep round: one host's ladder every SWEEP_EVERY events
    turn = 0
    for n, item in enumerate(items):
        event = item[2]  # (Numbered's fields by position: once per event)
        esc = ladders.get(item[3])
        if esc is None:
            esc = ladders[item[3]] = Escalator(s, sweep=False, components=False)
            order.append(esc)
        if not n % SWEEP_EVERY:
            # events arrive in time order: this event's time is safe for any host's ladder
            order[turn % len(order)].sweep(event.time_wall)
            turn += 1
        try:
            step = esc.feed(event)
        except BadEvent as e:
            raise ReplayError(item[1], str(e), item[4]) from None
        if store is not None:
            store.record_step(event, [d.to_dict() for d in step.opened],
                              [(c.decision.time_wall, c.decision.gpu, c.decision.link,
                                c.decision.fault, c.outcome, c.time_wall) for c in step.ended])
        if step.opened or step.superseded or step.closed:
            yield item, step


def run_grouped(items: Iterable[Numbered], settings: LadderSettings | None = None,
                chunk: int = CHUNK_EVENTS) -> Iterator[tuple[Numbered, Step]]:
    """As ``run`` (without a store), each host's events of a chunk fed together: the same steps
    in the same order. Hosts are judged apart, so only each host's own order matters; feeding
    one host's events one after another keeps its ladder in the CPU's caches (a fleet's events
    interleave thousands of hosts, and the ladder's objects would be fetched from memory for
    nearly every event). The steps come back in the order of the events that caused them."""
    s = settings or LadderSettings()
    ladders: dict[str, Escalator] = {}
    it = iter(items)
    while True:
        batch: list[Numbered] = []
        failed: Exception | None = None
        try:
            batch.extend(itertools.islice(it, chunk))  # (what was read stays on an error)
        except Exception as e:  # noqa: BLE001 - raised below, after the events before it
            failed = e
        if not batch and failed is None:
            return
        # host -> its events' places in the chunk, as an array of machine integers (a list
        # would keep an int object for each place: 36 bytes an event of the chunk against 4)
        groups: defaultdict[str, array[int]] = defaultdict(_places)
        for i, item in enumerate(batch):
            groups[item[3]].append(i)
        # every event fed so far is no later than this chunk's first: safe for any host's sweep
        t0 = batch[0][0] if batch else 0.0
        done: list[Step | None] = [None] * len(batch)  # each event's step, in stream order
        bad = len(batch)  # the first event (in stream order) the ladder refused
        bad_error: BadEvent | None = None
        for host, idx in groups.items():
            esc = ladders.get(host)
            if esc is None:
                esc = ladders[host] = Escalator(s, sweep=False, components=False)
            elif t0 >= esc.next_sweep:
                # a host's ladder is swept (memory stays flat) just before its events of the
                # chunk are judged: what the sweep reads, the judging reads next, so the host's
                # ladder is fetched from memory once for both
                esc.sweep(t0)
            feed = esc.feed
            # (after a refused event the replay stops: another host's later events may still be
            # fed here, and their steps are never yielded; not asked of every event)
            for i in idx:
                try:
                    step = feed(batch[i][2])
                except BadEvent as e:
                    if i < bad:  # (the earliest refusal of the chunk is the one reported)
                        bad, bad_error = i, e
                    break
                if step.opened or step.superseded or step.closed:
                    done[i] = step
        for i in range(bad):
            step_i = done[i]
            if step_i is not None:
                yield batch[i], step_i
        if bad_error is not None:
            item = batch[bad]
            raise ReplayError(item[1], str(bad_error), item[4]) from None
        if failed is not None:
            raise failed
        if len(batch) < chunk:
            return  # the events ran out


def parse_lines(lines: Iterable[str]) -> list[Numbered]:
    """A whole JSON-lines log, in time order (tests and small logs)."""
    stats = ReadStats()
    return sorted(_json_events(((n, t) for n, t in enumerate(lines, 1)), stats),
                  key=lambda x: x[0])


def replay(events: Sequence[Numbered], settings: LadderSettings | None = None,
           store: Store | None = None) -> list[Decision]:
    """Every decision, in order, from fresh ladders."""
    return [d for _, step in run(events, settings, store) for d in step.opened]


def shard(host: str, jobs: int) -> int:
    """Which of ``jobs`` workers judges a host (each host's ladder lives in one worker)."""
    return zlib.crc32(host.encode()) % jobs
