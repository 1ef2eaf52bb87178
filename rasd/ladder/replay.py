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

The readers live beside it: replay_json.py (event logs), replay_kmsg.py (kernel logs) and
replay_input.py (what they hand on); this module detects a file's form, puts its events back in
time order and judges them.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import zlib
from array import array
from collections import defaultdict, deque
from typing import Callable, Iterable, Iterator, Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.escalate import Escalator, Step
from rasd.ladder.findings import BadEvent
from rasd.ladder.replay_input import Names, Numbered, ReadStats, ReplayError
from rasd.ladder.replay_json import _json_events, parse_line, parse_lines, parse_object, parse_time
from rasd.ladder.replay_kmsg import BARE_SPACING_SECONDS, _kernel_events
from rasd.ladder.settings import LadderSettings
from rasd.store import Store

__all__ = ["BARE_SPACING_SECONDS", "CHUNK_EVENTS", "EXPECTED", "REORDER_SECONDS", "REORDER_WINDOW",
           "SWEEP_EVERY", "Names", "Numbered", "ReadStats", "ReplayError", "in_time_order",
           "parse_line", "parse_lines", "parse_object", "parse_time", "read_events", "replay",
           "run", "run_grouped", "shard"]

_places = functools.partial(array, "I")  # a new array of places (unsigned, 32 bits or more)
REORDER_WINDOW = 65_536  # at most this many events held back to restore time order
REORDER_SECONDS = 300.0  # an event is held until the log is this far past it
# events judged host by host at a time (memory vs the CPU's caches: a host's ladder is fetched
# from memory once a chunk); with each waiting event kept small (one string a host, compact
# details, places as machine integers) this many take less memory than 131,072 took before
CHUNK_EVENTS = 196_608
SWEEP_EVERY = 32  # events between two host-ladder sweeps of a replay (memory vs time)
EXPECTED = ("JSON-lines events, or kernel log lines with NVIDIA driver reports (NVRM: Xid / "
            "SXid) as dmesg, dmesg -T, journalctl (short, short-iso) or syslog print them")


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


def replay(events: Sequence[Numbered], settings: LadderSettings | None = None,
           store: Store | None = None) -> list[Decision]:
    """Every decision, in order, from fresh ladders."""
    return [d for _, step in run(events, settings, store) for d in step.opened]


def shard(host: str, jobs: int) -> int:
    """Which of ``jobs`` workers judges a host (each host's ladder lives in one worker)."""
    return zlib.crc32(host.encode()) % jobs
