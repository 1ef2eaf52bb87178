"""CLI of the repair ladder: explain an Xid, replay an event log, show history and rungs."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import click

from rasd.cli.common import fail, print_json
from rasd.ladder import catalog
from rasd.ladder.classify import Context, classify
from rasd.ladder.decision import Decision
from rasd.ladder.replay import ReplayError, parse_lines, replay
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
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(d: Decision) -> str:
    link = "-" if d.link is None else str(d.link)
    inv = ",".join(d.investigate) or "-"
    return (f"{_fmt_time(d.time_wall)} gpu={d.gpu} link={link} rung={d.rung.label} "
            f"scope={d.scope.value} fault={d.fault} investigate={inv} {d.reason}")


@click.command("replay")
@click.argument("events", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="One object with the list of decisions.")
def replay_cmd(events: str, as_json: bool) -> None:
    """Feed EVENTS.jsonl through classification and escalation; print every decision."""
    try:
        with click.open_file(events, "r", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as e:
        fail(f"cannot read {events} ({e.strerror}); check the path")
    except UnicodeDecodeError:
        fail(f"{events} is not UTF-8 text; give a JSON-lines event log")
    try:
        items = parse_lines(lines)
        decisions = replay(items)
    except ReplayError as e:
        fail(f"{events}: {e}; fix or remove that line")
    if as_json:
        print_json({"events": len(items), "decisions": [d.to_dict() for d in decisions]})
        return
    for d in decisions:
        click.echo(_line(d))
    click.echo(f"{len(items)} events, {len(decisions)} decisions", err=True)


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
    store = _open(db, backend)
    try:
        rows = store.decisions(gpu=gpu)
        actions = store.actions(gpu=gpu)
    finally:
        store.close()
    if as_json:
        print_json({
            "decisions": [dict(r.body, state=r.state, closed=r.closed_wall) for r in rows],
            "actions": [{"time": a.time_wall, "gpu": a.gpu, "link": a.link, "kind": a.kind,
                         "argv": list(a.argv), "result": a.result, "exit_code": a.exit_code,
                         "seconds": a.seconds, "output_tail": a.output_tail} for a in actions],
        })
        return
    if not rows:
        click.echo("no decisions stored" + (f" for GPU {gpu}" if gpu is not None else ""))
    for r in rows:
        click.echo(f"{_line(Decision.from_dict(r.body))} [{r.state}]")
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
