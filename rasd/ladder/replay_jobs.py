"""`rasd replay` over files, in one process or spread over worker processes by host.

Each host has its own ladder, so hosts can be judged apart: with ``jobs`` > 1 every worker reads
the files, judges the hosts that fall to it (``replay.shard``) and writes its report lines with
their order key (event time, file, line) to a spool file; the parent merges the spools in that
order, so the report is the same as one process writes. Memory stays flat in the number of
events in every process: events stream, report lines go to disk.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

from rasd.ladder.decision import Decision
from rasd.model import Rung
from rasd.ladder.escalate import Closure, Step
from rasd.ladder.replay import (
    Names, Numbered, ReadStats, ReplayError, in_time_order, read_events, run_grouped, shard,
)

Progress = Callable[[int], None]  # characters read since the last call
_BLOCK_CHARS = 1 << 16  # lines read at a time: about as many characters as this


@dataclass(frozen=True, slots=True)
class Options:
    year: int | None = None  # syslog year; None: each file's modification year
    boot_time: float = 0.0  # Unix time of boot, for seconds-since-boot stamps
    architecture: str | None = None


@dataclass(slots=True)
class Outcome:
    stats: list[tuple[str, ReadStats]] = field(default_factory=list)
    decisions: int = 0
    closed: int = 0
    error: str | None = None  # "PATH: line N: why"


_DAY = 86_400
_days: dict[int, str] = {}  # day number -> "YYYY-MM-DDT" (bounded: cleared when full)
_HM = ["%02d:%02d:" % divmod(m, 60) for m in range(1440)]  # minute of the day -> "HH:MM:"
_SZ = ["%02dZ" % s for s in range(60)]


_minutes: dict[int, str] = {}  # minute number -> "YYYY-MM-DDTHH:MM:" (bounded as _days)


def fmt_time(t: float) -> str:
    """UTC, to the second (as ``time.gmtime``: floor). The text up to the minute is formatted
    once a minute and kept (a report names each minute of its events' times again and again: a
    closure's line names two, the decision's and its end's), the seconds are looked up."""
    if 0 <= t < 253_402_300_800:  # 0001..9999: gmtime's own range is wider, its text the same
        s = int(t)
        minute = _minutes.get(s // 60)
        if minute is None:
            minute = _minute(s // 60)
        return minute + _SZ[s % 60]
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t)[:6]


def _minute(m: int) -> str:
    day, in_day = divmod(m, 1440)
    date = _days.get(day)
    if date is None:
        if len(_days) >= 4096:
            _days.clear()
        date = _days[day] = "%04d-%02d-%02dT" % time.gmtime(day * _DAY)[:3]
    if len(_minutes) >= 32_768:  # (three weeks of minutes: a decision's window and more)
        _minutes.clear()
    text = _minutes[m] = date + _HM[in_day]
    return text


_LABEL = {r: r.label for r in Rung}  # an enum property costs more than a dict look-up


def decision_line(d: Decision, host: str = "", name: str | None = None) -> str:
    link = "-" if d.link is None else str(d.link)
    inv = ",".join(d.investigate) or "-"
    where = f"host={host} " if host else ""
    return (f"{fmt_time(d.time_wall)} {where}gpu={name or d.gpu} link={link} "
            f"rung={_LABEL[d.rung]} scope={d.scope._value_} fault={d.fault} investigate={inv} "
            f"{d.reason}")


def closed_line(c: Closure, host: str, name: str | None = None) -> str:
    where = f"host={host} " if host else ""
    d = c.decision
    return (f"{fmt_time(c.time_wall)} {where}gpu={name or d.gpu} "
            f"fault={d.fault} closed={c.outcome} (opened "
            f"{fmt_time(d.time_wall)} at {_LABEL[d.rung]})")


def decision_json(d: Decision, host: str, names: Names) -> dict[str, Any]:
    out = d.to_dict()
    name = names.name(host, d.gpu)
    if host:
        out["host"] = host
    if name is not None:
        out["gpu"] = name  # the log named it by PCI bus id only
    return out


def mtime_year(path: str) -> int:
    try:
        return time.localtime(os.path.getmtime(path)).tm_year
    except (OSError, ValueError):
        return time.localtime().tm_year


def _lines(path: str, progress: Progress | None) -> Iterator[str]:
    """A file's lines (``-``: stdin), reporting progress once a block of lines."""
    # read a block of lines at a time and flattened by itertools in C: a generator of our own
    # between file and parser would be resumed once a line, about 1% of a replay
    return itertools.chain.from_iterable(_blocks(path, progress))


def _blocks(path: str, progress: Progress | None) -> Iterator[list[str]]:
    import sys

    fh: IO[str] = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="strict")
    try:
        read = fh.readlines
        while True:
            block = read(_BLOCK_CHARS)
            if not block:
                return
            if progress is not None:
                progress(sum(map(len, block)))
            yield block
    finally:
        if fh is not sys.stdin:
            fh.close()


def _tagged(items: Iterator[Numbered], source: int, host: str | None) -> Iterator[Numbered]:
    """Mark each event with its file; ``host`` names the host of a log that names none."""
    for x in items:
        yield x[0], x[1], x[2], x[3] or host or "", source


def _from_file(source: int, items: Iterator[Numbered]) -> Iterator[Numbered]:
    """A file's events; a bad line's error says which file."""
    try:
        yield from items
    except ReplayError as e:
        if e.source is None:
            e.source = source
        raise


def error_text(paths: list[str], e: ReplayError) -> str:
    return f"{paths[e.source or 0]}: {e}"


def steps(paths: list[str], opts: Options, out: Outcome, names: Names,
          keep: Callable[[str], bool] | None = None,
          progress: Progress | None = None) -> Iterator[tuple[Numbered, Step]]:
    """(event, step) in report order (event time, then file, then line), for the hosts
    ``keep`` accepts."""
    streams = []
    for i, path in enumerate(paths):
        st = ReadStats()
        out.stats.append((path, st))
        year = opts.year if opts.year is not None else mtime_year(path)
        items = read_events(_lines(path, progress), st, names, year=year,
                            boot_time=opts.boot_time, architecture=opts.architecture, keep=keep)
        if len(paths) > 1:
            items = _tagged(items, i, os.path.basename(path))
            streams.append(_from_file(i, in_time_order(items, st)))
        else:  # one file: a bad line's error names file 0 as it is
            streams.append(in_time_order(items, st))
    merged = streams[0] if len(streams) == 1 else heapq.merge(
        *streams, key=lambda x: (x[0], x[4]))  # (time, file)
    return run_grouped(merged)


def report(paths: list[str], opts: Options, write: Callable[[str], object],
           progress: Progress | None = None, keep: Callable[[str], bool] | None = None,
           keyed: bool = False) -> Outcome:
    """Judge the files and write the report lines (``keyed``: each prefixed with its order key
    for a merge). Stops at the first bad line of an event log (``Outcome.error``)."""
    out = Outcome()
    names = Names()
    buf: list[str] = []
    decisions = 0
    add = buf.append
    named = names.ids  # (the names so far: a dict's truth is asked without a call)
    lines = 0  # report lines written before those in ``buf``
    try:
        for item, step in steps(paths, opts, out, names, keep, progress):
            host = item[3]  # (by position: a named field is looked up on the class)
            if keyed or named:
                key = f"{item[0]!r}\t{item[4]}\t{item[1]}\t" if keyed else ""
                # only kernel logs name GPUs by bus id (None: by number)
                for d in step.opened:
                    add(key + decision_line(d, host, names.name(host, d.gpu)))
                for c in step.closed:
                    add(key + closed_line(c, host, names.name(host, c.decision.gpu)))
            else:
                for d in step.opened:
                    add(decision_line(d, host))
                for c in step.closed:
                    add(closed_line(c, host))
            decisions += len(step.opened)  # (the rest of the lines are closures)
            if len(buf) >= 2048:  # one write per line would cost more than the replay
                lines += len(buf)
                write("\n".join(buf) + "\n")
                buf.clear()
    except ReplayError as e:
        out.error = error_text(paths, e)
    except UnicodeDecodeError:
        path = out.stats[-1][0] if out.stats else ""
        out.error = f"{path} is not UTF-8 text; give a JSON-lines event log or a kernel log"
    out.decisions, out.closed = decisions, lines + len(buf) - decisions
    if buf:
        write("\n".join(buf) + "\n")
    return out


# --------------------------------------------------------------------------- workers


def _work(paths: list[str], opts: Options, k: int, jobs: int, spool: str, counter: Any) -> None:
    """A worker process (forked: the counter is inherited): judge its hosts, spool the report,
    leave its outcome beside the spool."""
    def progress(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        with open(spool, "w", encoding="utf-8") as fh:
            out = report(paths, opts, fh.write, progress,
                         keep=lambda host: shard(host, jobs) == k, keyed=True)
    except Exception as e:  # noqa: BLE001 - reported by the parent, never lost in a child
        out = Outcome(error=f"worker {k}: {type(e).__name__}: {e}")
    with open(spool + ".outcome", "wb") as done:
        pickle.dump(out, done)


def report_parallel(paths: list[str], opts: Options, write: Callable[[str], object], jobs: int,
                    progress: Progress | None = None) -> Outcome:
    """As ``report``, with the hosts spread over ``jobs`` worker processes."""
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    with tempfile.TemporaryDirectory(prefix="rasd-replay-") as tmp:
        spools = [os.path.join(tmp, f"{k}.txt") for k in range(jobs)]
        procs = [ctx.Process(target=_work, args=(paths, opts, k, jobs, spools[k], counter),
                             name=f"rasd-replay-{k}") for k in range(jobs)]
        for p in procs:
            p.start()
        seen = 0
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(0.2)
            if progress is not None:
                now = counter.value // jobs  # every worker reads every file
                progress(now - seen)
                seen = now
        results = []
        for k, p in enumerate(procs):
            try:
                with open(spools[k] + ".outcome", "rb") as fh:
                    results.append(pickle.load(fh))
            except OSError:
                results.append(Outcome(error=f"worker {k} ended without a report "
                                             f"(exit code {p.exitcode})"))
        out = _combine(results)
        if out.error is None:
            _merge(spools, write)
    return out


def _combine(results: list[Outcome]) -> Outcome:
    out = Outcome(decisions=sum(r.decisions for r in results),
                  closed=sum(r.closed for r in results))
    errors = sorted((r.error for r in results if r.error), key=_error_line)
    out.error = errors[0] if errors else None
    for i, (path, _) in enumerate(results[0].stats):
        total = ReadStats()
        for r in results:
            if i >= len(r.stats):
                continue
            st = r.stats[i][1]
            total.form = total.form or st.form
            total.lines = max(total.lines, st.lines)
            total.events += st.events
            total.record_forms.update(st.record_forms)
            total.skipped_other += st.skipped_other
            total.skipped_nvidia += st.skipped_nvidia
            total.out_of_order += st.out_of_order
        out.stats.append((path, total))
    return out


def _error_line(error: str) -> int:
    for word in error.split():
        if word.rstrip(":").isdigit():
            return int(word.rstrip(":"))
    return 0


def _merge(spools: list[str], write: Callable[[str], object]) -> None:
    """The workers' report lines in order of (event time, file, line)."""
    files = [open(p, encoding="utf-8") for p in spools]
    try:
        def keyed(fh: IO[str]) -> Iterator[tuple[float, int, int, str]]:
            for text in fh:
                t, src, line, rest = text.split("\t", 3)
                yield float(t), int(src), int(line), rest

        buf: list[str] = []
        for _, _, _, rest in heapq.merge(*(keyed(f) for f in files), key=lambda x: x[:3]):
            buf.append(rest)
            if len(buf) >= 4096:
                write("".join(buf))
                buf.clear()
        if buf:
            write("".join(buf))
    finally:
        for f in files:
            f.close()
