"""CLI of the repair ladder: explain an Xid, replay an event log, show history and rungs, close
decisions a person handled."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from rasd.cli.common import fail, print_json
from rasd.ladder import catalog
from rasd.ladder.classify import Context, classify
from rasd.ladder.decision import Decision
from rasd.ladder.replay import EXPECTED, Names, ReadStats, ReplayError, parse_time
from rasd.ladder.replay_jobs import (
    Options, Outcome, decision_json, decision_line, error_text, fmt_time, report, report_parallel,
    steps,
)
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind

if TYPE_CHECKING:
    from rasd.store import StoredDecision


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


_fmt_time = fmt_time


_line = decision_line


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
@click.option("--jobs", type=click.IntRange(1, 256), default=None,
              help="Worker processes, hosts spread over them (default: the CPUs, up to 8, for "
              "files over 32 MiB; else 1). The report is the same for any number where the log "
              "is in time order to within the reorder window (300 s, 65,536 events); beyond it "
              "each worker restores the order of its own hosts' events only, so it can differ.")
def replay_cmd(files: tuple[str, ...], as_json: bool, year: int | None, boot_time: str | None,
               arch: str | None, jobs: int | None) -> None:
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
    paths = list(files)
    for path in paths:
        if path != "-" and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable"
            fail(f"cannot read {path} ({why}); check the path")
    opts = Options(year, boot, arch)
    if as_json:
        _replay_json(paths, opts)
        return
    sizes = [os.path.getsize(p) if p != "-" else None for p in paths]
    total = sum(x for x in sizes if x) if all(x is not None for x in sizes) else None
    if jobs is None:
        big = total is not None and total > 32 * 2**20
        jobs = min(os.cpu_count() or 1, 8) if big and "-" not in paths else 1
    bar = None
    if total and sys.stderr.isatty():
        bar = click.progressbar(length=total, label="replay", file=sys.stderr, show_eta=True,
                                show_percent=True)
        bar.__enter__()
    write = sys.stdout.write  # click.get_text_stream is deprecated from click 8.5
    # the replay allocates millions of objects and no reference cycles (a collection after a
    # month of a 16k-GPU fleet's events finds none): the cycle collector would only cost time,
    # about 5% of it; reference counting frees everything the replay drops.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if jobs > 1 and "-" not in paths:
            out = report_parallel(paths, opts, write, jobs, bar.update if bar else None)
        else:
            out = report(paths, opts, write, bar.update if bar else None)
    finally:
        if was_enabled:
            gc.enable()
        if bar is not None:
            bar.__exit__(None, None, None)
    if out.error:
        fail(f"{out.error}; fix or remove that line")
    _check_recognised(out)
    for path, st in out.stats:
        click.echo(_stats_line(path, st), err=True)
    events = sum(st.events for _, st in out.stats)
    click.echo(f"{events} events, {out.decisions} decisions, {out.closed} closed", err=True)


def _replay_json(paths: list[str], opts: Options) -> None:
    out = Outcome()
    names = Names()
    decisions: list[dict] = []
    closed: list[dict] = []
    try:
        for item, step in steps(paths, opts, out, names):
            host = item[3]  # (time, line, event, host, source)
            decisions.extend(decision_json(d, host, names) for d in step.opened)
            closed.extend({"decision": decision_json(c.decision, host, names),
                           "outcome": c.outcome, "time": c.time_wall} for c in step.closed)
    except ReplayError as e:
        fail(f"{error_text(paths, e)}; fix or remove that line")
    except UnicodeDecodeError:
        fail(f"{out.stats[-1][0]} is not UTF-8 text; give a JSON-lines event log or a kernel log")
    _check_recognised(out)
    print_json({"events": sum(st.events for _, st in out.stats), "decisions": decisions,
                "closed": closed, "files": [_stats_json(p, st) for p, st in out.stats]})


def _check_recognised(out: Outcome) -> None:
    for path, stats in out.stats:
        if not stats.recognised and stats.lines:
            fail(f"{path}: nothing recognisable in {stats.lines} lines; expected {EXPECTED}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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


def _db_path(db: str | None, backend: str, config_path: str | None) -> str:
    """--db, else the running daemon's store (asked through its socket), else the configured or
    default one; says on stderr which store it reads, and why."""
    if db:
        path, why = db, "--db"
    else:
        from rasd.cli.common import ask_daemon, daemon_paths, load_config_or_fail

        sock, state = daemon_paths(load_config_or_fail(config_path), backend)
        reply = ask_daemon(sock, state, {"op": "ping"}, denied_ok=True)
        if reply is not None and reply.get("state"):
            path, why = reply["state"], f"the store of the running daemon (pid {reply.get('pid')})"
        else:
            path, why = state, f"no daemon answered on {sock}"
    if not os.path.exists(path):
        fail(f"no rasd history at {path}; start rasd with --backend {backend} first, or pass "
             "--db PATH")
    if not db:  # the user named it: nothing to explain
        click.echo(f"rasd: reading {path} ({why})", err=True)
    return path


def _open(db: str | None, backend: str, config_path: str | None = None):
    from rasd.store import Store, StoreError

    try:
        return Store(_db_path(db, backend, config_path))
    except StoreError as e:
        fail(str(e))


_db_options = [
    click.option("--db", default=None, metavar="PATH", help="The SQLite store to read."),
    click.option("--backend", type=click.Choice(["nvml", "fake"]), default="nvml",
                 show_default=True, help="Whose default store to read when --db is not given."),
    click.option("--config", "config_path", default=None, metavar="PATH",
                 type=click.Path(dir_okay=False),
                 help="TOML configuration whose daemon.control_socket and state_path to use."),
]


def _with_db(f):
    for opt in reversed(_db_options):
        f = opt(f)
    return f


@click.command()
@click.option("--gpu", type=int, default=None, help="Only this GPU index.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_db
def history(gpu: int | None, as_json: bool, db: str | None, backend: str, config_path: str | None) -> None:
    """Stored decisions, oldest first, with whether each is still open."""
    from rasd.scheduler.ledger import decision_key, job_label, jobs_by_decision

    store = _open(db, backend, config_path)
    try:
        rows = store.decisions(gpu=gpu)
        actions = store.actions(gpu=gpu)
        hit = jobs_by_decision(store.path, gpu)  # which jobs each decision's fault hit
        # a person's closes, by (gpu, when): the reason and who gave it
        closes = {(c.event.gpu, c.event.time_wall): c.event.details
                  for c in store.operator_closes(gpu)}
    finally:
        store.close()

    def closed_by(r: StoredDecision) -> dict[str, str]:
        if r.state != "closed_by_operator":
            return {}
        d = closes.get((r.body["gpu"], r.closed_wall), {})
        return {"close_reason": d.get("reason", ""), "closed_by": d.get("by", "")}

    if as_json:
        print_json({
            "decisions": [dict(r.body, state=r.state, closed=r.closed_wall,
                               jobs=hit.get(decision_key(r.body), []), **closed_by(r))
                          for r in rows],
            "actions": [{"time": a.time_wall, "gpu": a.gpu, "link": a.link, "kind": a.kind,
                         "argv": list(a.argv), "result": a.result, "exit_code": a.exit_code,
                         "seconds": a.seconds, "output_tail": a.output_tail} for a in actions],
        })
        return
    if not rows:
        click.echo("no decisions stored" + (f" for GPU {gpu}" if gpu is not None else ""))
    for r in rows:
        jobs = hit.get(decision_key(r.body), [])
        by = closed_by(r)
        state = r.state if not by else (
            f"{r.state} {_fmt_time(r.closed_wall)}: {by['close_reason']}"
            + (f" (by {by['closed_by']})" if by["closed_by"] else ""))
        click.echo(f"{_line(Decision.from_dict(r.body))} [{state}]"
                   + (f" jobs: {', '.join(job_label(j) for j in jobs)}" if jobs else ""))
    for a in actions:
        click.echo(f"{_fmt_time(a.time_wall)} gpu={a.gpu} action={a.kind} result={a.result} "
                   f"exit_code={a.exit_code}")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_db
@click.pass_context
def ladder(ctx: click.Context, as_json: bool, db: str | None, backend: str,
           config_path: str | None) -> None:
    """The rung in force for each GPU and link, rebuilt from the stored history; `rasd ladder
    close` closes decisions a person handled."""
    if ctx.invoked_subcommand is not None:
        return
    from rasd.ladder.actions import Actuator
    from rasd.ladder.service import LadderService
    from rasd.ladder.settings import ActionSettings

    store = _open(db, backend, config_path)
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


@ladder.command("close")
@click.option("--gpu", type=int, required=True, help="The GPU index, as rasd status shows it.")
@click.option("--link", type=int, default=None,
              help="Only this NVLink port's decisions (default: the GPU's and all its links').")
@click.option("--reason", required=True, metavar="TEXT",
              help='What was done, kept in the history, e.g. "board replaced (serial ...)".')
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--backend", type=click.Choice(["nvml", "fake"]), default="nvml",
              show_default=True, help="Whose daemon and store, when --config names none.")
@click.option("--config", "config_path", default=None, metavar="PATH",
              type=click.Path(dir_okay=False),
              help="TOML configuration whose daemon.control_socket and state_path to use.")
def close_cmd(gpu: int, link: int | None, reason: str, as_json: bool, backend: str,
              config_path: str | None) -> None:
    """Close the open decisions of GPU N (its links included), or of one link, that a person
    has handled: the board replaced, a reboot run by hand. RMAs too: nothing else ends them.

    The close is kept in the history with the reason and who gave it (rasd history shows it,
    as closed_by_operator); a restart does not restore what was closed, and the next fault on
    that GPU starts from the bottom of the ladder. Once nothing open needs the node out, the
    scheduler integration brings it back as after a cure (never a node a person drained).

    With a daemon running, the close goes through it (its ladder and its store change
    together). Without one, the store is changed directly, under the daemon's lock so that
    none can start meanwhile, and the daemon reads the close when it starts. Nothing open
    there, no such GPU or an empty reason: one line, exit 2, nothing changed."""
    from rasd.cli.common import ask_daemon, daemon_paths, load_config_or_fail

    if gpu < 0:
        fail(f"--gpu {gpu} is negative; GPU indexes start at 0")
    if link is not None and link < 0:
        fail(f"--link {link} is negative; NVLink ports start at 0")
    if not reason.strip():
        fail('--reason is empty; say what was done, e.g. --reason "board replaced (serial ...)"')
    cfg = load_config_or_fail(config_path)
    sock, state = daemon_paths(cfg, backend)
    req = {"op": "ladder.close", "gpu": gpu, "link": link, "reason": reason, "by": _user()}
    reply = ask_daemon(sock, state, req, timeout=10.0)
    if reply is not None:
        closed = [Decision.from_dict(b) for b in reply.get("closed", [])]
        via = "the running daemon"
    else:
        closed = _close_offline(cfg, state, gpu, link, reason, str(req["by"]))
        via = f"the store {state} (no daemon answered on {sock}; it reads the close at start)"
    if as_json:
        print_json({"gpu": gpu, "link": link, "reason": reason.strip(), "by": req["by"],
                    "via": "daemon" if reply is not None else "store",
                    "closed": [d.to_dict() for d in closed]})
        return
    click.echo(f"rasd: closed through {via}", err=True)
    on = f"GPU {gpu}" + (f" link {link}" if link is not None else "")
    click.echo(f"closed {len(closed)} decision{'s' if len(closed) != 1 else ''} on {on}:")
    for d in closed:
        click.echo(f"  {_line(d)}")


def _close_offline(cfg: Any, state: str, gpu: int, link: int | None, reason: str,
                   by: str) -> list[Decision]:
    """The close on the store itself, with no daemon running: the same ladder rebuilt as the
    daemon rebuilds it at start, under the daemon's instance lock."""
    from rasd.instance import AlreadyRunning, InstanceLock, LockUnavailable
    from rasd.ladder.actions import Actuator
    from rasd.ladder.service import LadderService
    from rasd.ladder.settings import ActionSettings
    from rasd.store import Store, StoreError

    if not os.path.exists(state):
        fail(f"no rasd history at {state}, so nothing to close; pass the --config (or --backend) "
             "the daemon runs with")
    try:
        lock = InstanceLock(state).acquire()
    except AlreadyRunning:
        fail(f"a rasd daemon started on {state} meanwhile; run this again to close through it")
    except LockUnavailable as e:
        fail(str(e))
    try:
        try:
            store = Store(state)
        except StoreError as e:
            fail(str(e))
        try:
            svc = LadderService(cfg.ladder or LadderSettings(), ActionSettings(), store,
                                hostname="", actuator=Actuator(ActionSettings(), synchronous=True))
            try:
                return svc.close_by_operator(gpu, link, reason, by)
            except ValueError as e:
                fail(str(e))
        finally:
            store.close()
    finally:
        lock.release()


def _user() -> str:
    """Who closes: the login name (the one behind sudo, where sudo ran it)."""
    import pwd

    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {name})" if sudo and sudo != name else name
