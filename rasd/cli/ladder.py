"""CLI of the repair ladder: explain an Xid, replay an event log, show history and rungs."""

from __future__ import annotations

import gc
import heapq
import os
import sys
import time
from typing import Any, Callable, Iterator

import click

from rasd.cli.common import fail, print_json
from rasd.ladder import catalog
from rasd.ladder.classify import Context, classify
from rasd.ladder.decision import Decision
from rasd.ladder.replay import (
    EXPECTED, Names, Numbered, ReadStats, ReplayError, in_time_order, parse_time, read_events, run,
)
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind


def register(group: click.Group) -> None:
    group.add_command(explain)
    group.add_command(replay_cmd)
    group.add_command(history)
    group.add_command(ladder)


@click.group()
def explain() -> None:
    """Explain how rasd classifies a fault."""


@explain.command("xid")
@click.argument("code", type=int)
@click.option("--message", default=None, help="The driver's Xid message text (link, GPC/TPC, registers).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def explain_xid(code: int, message: str | None, as_json: bool) -> None:
    """Rung, scope and reason for Xid CODE seen once on a GPU with no history."""
    if code < 0:
        fail(f"Xid {code} is negative; give the code as printed by the driver, e.g. 79")
    f = classify(FaultEvent(0.0, 0, FaultKind.XID, None, {"xid": code, "message": message}),
                 Context(), LadderSettings())
    assert f is not None
    entry = catalog.lookup(code)
    out = {
        "xid": code,
        "rung": f.rung.label,
        "scope": f.scope.value,
        "link": f.link,
        "reason": f.reason,
        "investigate": list(f.investigate),
        "degradations": list(f.degradations),
        "buckets": {"immediate": entry.immediate if entry else None,
                    "investigatory": entry.investigatory if entry else None},
        "mnemonic": entry.mnemonic if entry else None,
        "description": entry.description if entry else None,
        "catalogued": entry is not None,
        "rma_candidate": f.rma_candidate,
        "catalog_sha256": catalog.CATALOG_SHA256,
    }
    if as_json:
        print_json(out)
        return
    click.echo(f"Xid {code}: {out['description'] or 'not in the pinned catalog'}")
    click.echo(f"  rung:    {f.rung.label} (scope {f.scope.value}"
               + (f", link {f.link})" if f.link is not None else ")"))
    click.echo(f"  reason:  {f.reason}")
    if entry:
        click.echo(f"  buckets: immediate {entry.immediate or '-'}, "
                   f"investigatory {entry.investigatory or '-'}")
    if f.degradations:
        click.echo(f"  degrade: {', '.join(f.degradations)}")
    if f.investigate:
        click.echo(f"  investigate: {', '.join(f.investigate)}")
    click.echo(f"  catalog: sha256 {catalog.CATALOG_SHA256[:12]}...")


def _fmt_time(t: float) -> str:
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t)[:6]


def _line(d: Decision, host: str = "", name: str | None = None) -> str:
    link = "-" if d.link is None else str(d.link)
    inv = ",".join(d.investigate) or "-"
    where = f"host={host} " if host else ""
    return (f"{_fmt_time(d.time_wall)} {where}gpu={name or d.gpu} link={link} "
            f"rung={d.rung.label} scope={d.scope.value} fault={d.fault} investigate={inv} "
            f"{d.reason}")


def _decision_json(d: Decision, host: str, names: Names) -> dict:
    out = d.to_dict()
    name = names.name(host, d.gpu)
    if host:
        out["host"] = host
    if name is not None:
        out["gpu"] = name  # the log named it by PCI bus id only
    return out


def _open_lines(path: str) -> tuple[Iterator[str], Callable[[], None], int | None]:
    try:
        fh = click.open_file(path, "r", encoding="utf-8", errors="strict")
    except OSError as e:
        fail(f"cannot read {path} ({e.strerror}); check the path")
    size = None
    if path != "-":
        try:
            size = os.path.getsize(path)
        except OSError:
            size = None
    return iter(fh), fh.close, size


def _guarded(lines: Iterator[str], path: str, progress: Any) -> Iterator[str]:
    done = 0
    n = 0
    try:
        for text in lines:
            if progress is not None:
                done += len(text)
                n += 1
                if n & 8191 == 0:
                    progress.update(done)
                    done = 0
            yield text
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text; give a JSON-lines event log or a kernel log")
    if progress is not None and done:
        progress.update(done)


@click.command("replay")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="One object with the decisions and closures.")
@click.option("--year", type=int, default=None,
              help="Year of syslog lines (they carry none); default: the file's modification year.")
@click.option("--boot-time", default=None, metavar="TIME",
              help="When the node booted (Unix seconds or RFC 3339), for dmesg's seconds-since-"
              "boot stamps; default: the epoch (times then read as time since boot).")
@click.option("--arch", type=click.Choice(["ampere", "hopper", "blackwell"]), default=None,
              help="GPU architecture, for register decodes that apply to one architecture only.")
def replay_cmd(files: tuple[str, ...], as_json: bool, year: int | None, boot_time: str | None,
               arch: str | None) -> None:
    """Feed event logs or kernel logs (dmesg, journalctl, syslog) through classification and
    escalation; print every decision and every decision that ended.

    Each FILE is detected on its own: JSON lines, or a kernel log in any form dmesg, dmesg -T,
    journalctl (short, short-iso, short-monotonic) or syslog write, or bare NVRM lines."""
    boot = 0.0
    if boot_time is not None:
        try:
            boot = parse_time(float(boot_time) if _is_number(boot_time) else boot_time)
        except ValueError as e:
            fail(f"--boot-time: {e}")
    names = Names()
    streams = []
    all_stats: list[tuple[str, ReadStats]] = []
    closers = []
    sizes = []
    opened = []
    for path in files:
        lines, close, size = _open_lines(path)
        closers.append(close)
        sizes.append(size)
        opened.append((path, lines))
    total = sum(x for x in sizes if x) if all(sizes) else None
    progress = None
    if total and sys.stderr.isatty() and not as_json:
        progress = click.progressbar(length=total, label="replay", file=sys.stderr,
                                     show_eta=True, show_percent=True)
        progress.__enter__()
    for path, lines in opened:
        stats = ReadStats()
        all_stats.append((path, stats))
        y = year if year is not None else _mtime_year(path)
        items = read_events(_guarded(lines, path, progress), stats, names, year=y,
                            boot_time=boot, architecture=arch)
        if len(files) > 1:
            items = _default_host(items, os.path.basename(path))
        streams.append(in_time_order(items, stats))
    merged = streams[0] if len(streams) == 1 else heapq.merge(
        *streams, key=lambda x: x.event.time_wall)
    decisions: list[dict] = []
    closed: list[dict] = []
    n_dec = n_closed = 0
    out: list[str] = []  # written in blocks: one write per line costs more than the replay
    write = click.get_text_stream("stdout").write
    # the replay allocates many short-lived objects and few cycles: collect rarely
    gc_thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        for host, step in run(merged):
            for d in step.opened:
                n_dec += 1
                if as_json:
                    decisions.append(_decision_json(d, host, names))
                else:
                    out.append(_line(d, host, names.name(host, d.gpu)))
            for c in step.closed:
                n_closed += 1
                if as_json:
                    closed.append({"decision": _decision_json(c.decision, host, names),
                                   "outcome": c.outcome, "time": c.time_wall})
                else:
                    name = names.name(host, c.decision.gpu) or c.decision.gpu
                    where = f"host={host} " if host else ""
                    out.append(f"{_fmt_time(c.time_wall)} {where}gpu={name} "
                               f"fault={c.decision.fault} closed={c.outcome} (opened "
                               f"{_fmt_time(c.decision.time_wall)} at {c.decision.rung.label})")
            if len(out) >= 2048:
                write("\n".join(out) + "\n")
                out.clear()
    except ReplayError as e:
        path = _which(all_stats)
        fail(f"{path}: {e}; fix or remove that line")
    finally:
        gc.set_threshold(*gc_thresholds)
        if out:
            write("\n".join(out) + "\n")
        if progress is not None:
            progress.__exit__(None, None, None)
        for close in closers:
            close()
    for path, stats in all_stats:
        if not stats.recognised and stats.lines:
            fail(f"{path}: nothing recognisable in {stats.lines} lines; expected {EXPECTED}")
    events = sum(st.events for _, st in all_stats)
    if as_json:
        print_json({"events": events, "decisions": decisions, "closed": closed,
                    "files": [_stats_json(p, st) for p, st in all_stats]})
        return
    for path, st in all_stats:
        click.echo(_stats_line(path, st), err=True)
    click.echo(f"{events} events, {n_dec} decisions, {n_closed} closed", err=True)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mtime_year(path: str) -> int:
    try:
        return time.localtime(os.path.getmtime(path)).tm_year
    except (OSError, ValueError):
        return time.localtime().tm_year


def _default_host(items: Iterator[Numbered], host: str) -> Iterator[Numbered]:
    for x in items:
        yield x if x.host else Numbered(x.line, x.event, host)


def _which(all_stats: list[tuple[str, ReadStats]]) -> str:
    return all_stats[-1][0] if len(all_stats) == 1 else ", ".join(p for p, _ in all_stats)


def _stats_json(path: str, st: ReadStats) -> dict:
    return {"file": path, "form": st.form, "lines": st.lines, "events": st.events,
            "line_forms": dict(st.record_forms), "skipped_not_nvidia": st.skipped_other,
            "skipped_nvidia_without_xid": st.skipped_nvidia, "out_of_order": st.out_of_order}


def _stats_line(path: str, st: ReadStats) -> str:
    text = f"{path}: {st.form or 'empty'}, {st.events} events from {st.lines} lines"
    if st.record_forms:
        text += " (" + ", ".join(f"{k} {v}" for k, v in st.record_forms.most_common()) + ")"
    if st.skipped_other or st.skipped_nvidia:
        text += (f"; skipped {st.skipped_other} lines not from NVIDIA drivers and "
                 f"{st.skipped_nvidia} NVIDIA lines without an Xid")
    if st.out_of_order:
        text += f"; {st.out_of_order} events out of time order beyond the reorder window"
    return text


def _db_path(db: str | None, backend: str) -> str:
    if db:
        path = db
    else:
        from rasd import paths

        path = paths.default_state_path(backend)
    if not os.path.exists(path):
        fail(f"no rasd history at {path}; start rasd with --backend {backend} first, or pass "
             "--db PATH")
    return path


def _open(db: str | None, backend: str):
    from rasd.store import Store, StoreError

    try:
        return Store(_db_path(db, backend))
    except StoreError as e:
        fail(str(e))


_db_options = [
    click.option("--db", default=None, metavar="PATH", help="The SQLite store to read."),
    click.option("--backend", type=click.Choice(["nvml", "fake"]), default="nvml",
                 show_default=True, help="Whose default store to read when --db is not given."),
]


def _with_db(f):
    for opt in reversed(_db_options):
        f = opt(f)
    return f


@click.command()
@click.option("--gpu", type=int, default=None, help="Only this GPU index.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_db
def history(gpu: int | None, as_json: bool, db: str | None, backend: str) -> None:
    """Stored decisions, oldest first, with whether each is still open."""
    from rasd.scheduler.ledger import decision_key, job_label, jobs_by_decision

    store = _open(db, backend)
    try:
        rows = store.decisions(gpu=gpu)
        actions = store.actions(gpu=gpu)
        hit = jobs_by_decision(store.path, gpu)  # which jobs each decision's fault hit
    finally:
        store.close()
    if as_json:
        print_json({
            "decisions": [dict(r.body, state=r.state, closed=r.closed_wall,
                               jobs=hit.get(decision_key(r.body), [])) for r in rows],
            "actions": [{"time": a.time_wall, "gpu": a.gpu, "link": a.link, "kind": a.kind,
                         "argv": list(a.argv), "result": a.result, "exit_code": a.exit_code,
                         "seconds": a.seconds, "output_tail": a.output_tail} for a in actions],
        })
        return
    if not rows:
        click.echo("no decisions stored" + (f" for GPU {gpu}" if gpu is not None else ""))
    for r in rows:
        jobs = hit.get(decision_key(r.body), [])
        click.echo(f"{_line(Decision.from_dict(r.body))} [{r.state}]"
                   + (f" jobs: {', '.join(job_label(j) for j in jobs)}" if jobs else ""))
    for a in actions:
        click.echo(f"{_fmt_time(a.time_wall)} gpu={a.gpu} action={a.kind} result={a.result} "
                   f"exit_code={a.exit_code}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_db
def ladder(as_json: bool, db: str | None, backend: str) -> None:
    """The rung in force for each GPU and link, rebuilt from the stored history."""
    from rasd.ladder.actions import Actuator
    from rasd.ladder.service import LadderService
    from rasd.ladder.settings import ActionSettings

    store = _open(db, backend)
    try:
        svc = LadderService(LadderSettings(), ActionSettings(), store, hostname="",
                            actuator=Actuator(ActionSettings(), synchronous=True))
        st = svc.state()
    finally:
        store.close()
    if as_json:
        print_json(st.to_dict())
        return
    click.echo(f"node: {st.node_rung.label}")
    for g, c in sorted(st.gpus.items()):
        flags = [f for f, on in (("excluded", g in st.excluded), ("sdc-suspect", g in st.suspect))
                 if on]
        click.echo(f"gpu {g}: {c.rung.label} ({c.scope.value}) {c.reason or '-'}"
                   + (f" [{', '.join(flags)}]" if flags else ""))
    for (g, ln), c in sorted(st.links.items()):
        click.echo(f"gpu {g} link {ln}: {c.rung.label} {c.reason or '-'}")
    for i, r in enumerate(st.rma_queue, 1):
        click.echo(f"rma #{i}: gpu {r.gpu} {r.fault} ({r.reason})")
    for reason in st.node_technician:
        click.echo(f"technician: {reason}")
