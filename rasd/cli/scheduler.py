"""``rasd scheduler ...``: the node's standing with the cluster's scheduler, the circuit
breaker's reset, and which jobs faults hit."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from rasd.cli.common import fail, print_json


def register(group: click.Group) -> None:
    group.add_command(scheduler)


def _socket(path: str | None, backend: str) -> str:
    if path:
        return path
    from rasd.paths import default_control_socket

    return default_control_socket(backend)


def _ask(sock: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    from rasd.control import ControlUnavailable, request

    try:
        reply = request(sock, payload)
    except ControlUnavailable:
        return None
    if not reply.get("ok", False):
        fail(f"the daemon refused: {reply.get('error', 'no reason given')}")
    return reply


def _ledger(db: str | None, backend: str) -> Any:
    from rasd import paths
    from rasd.scheduler.ledger import Ledger

    path = db or paths.default_state_path(backend)
    if not os.path.exists(path):
        fail(f"no rasd store at {path} and no daemon answers; pass --db PATH or --socket PATH")
    return Ledger(path)


_common = [
    click.option("--socket", "sock", default=None, metavar="PATH",
                 help="The daemon's control socket (default: the backend's)."),
    click.option("--db", default=None, metavar="PATH",
                 help="The store to use when no daemon answers."),
    click.option("--backend", type=click.Choice(["nvml", "fake"]), default="nvml",
                 show_default=True, help="Whose default socket and store to use."),
]


def _with_common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group()
def scheduler() -> None:
    """The node in the cluster's scheduler: drains, the disruption budget, the breaker."""


@scheduler.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_common
def status(as_json: bool, sock: str | None, db: str | None, backend: str) -> None:
    """Whether rasd took the node out and why, deferred decisions, the breaker."""
    reply = _ask(_socket(sock, backend), {"op": "scheduler.state"})
    if reply is None:
        fail(f"no rasd daemon answers on {_socket(sock, backend)}; start it, or pass --socket")
    reply.pop("ok", None)
    if as_json:
        print_json(reply)
        return
    click.echo(f"scheduler: {reply['kind']} node {reply['node']}"
               + ("" if reply["enforced"] else " (advisory: nothing is changed)"))
    if reply["out_by_rasd"]:
        click.echo(f"out of service by rasd since {_t(reply['out_since'])}: {reply['reason']}")
    else:
        click.echo("in service as far as rasd is concerned")
    sc = reply["scope"]
    if sc["nodes"] is not None:
        click.echo(f"scope: {sc['out_for_rasd']} of {sc['nodes']} nodes out for rasd's reasons "
                   f"(budget {sc['max_nodes_out']})")
    br = reply["breaker"]
    if br["tripped"]:
        click.echo(f"BREAKER TRIPPED since {_t(br['since'])}: {br['why']}; once the common cause "
                   "is understood: rasd scheduler reset-breaker")
    for d in reply["deferred"]:
        dec = d["decision"]
        click.echo(f"deferred ({d['why']}, {d['tries']} tries since {_t(d['since'])}): gpu "
                   f"{dec['gpu']} {dec['fault']} -> {dec['rung']}")


@scheduler.command("reset-breaker")
@_with_common
def reset_breaker(sock: str | None, db: str | None, backend: str) -> None:
    """Close a tripped circuit breaker: deferred decisions are tried again."""
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
    reply = _ask(_socket(sock, backend), {"op": "scheduler.reset_breaker", "by": who})
    if reply is None:  # no daemon: the next one reads the store
        led = _ledger(db, backend)
        try:
            was = led.get("breaker") or {}
            led.put("breaker", {"tripped": False, "reset": time.time(), "by": who,
                                "was": was.get("why", "")})
        finally:
            led.close()
        reply = {"was_tripped": bool(was.get("tripped")), "why": was.get("why", "")}
    if reply["was_tripped"]:
        click.echo(f"breaker reset (it had tripped: {reply['why']})")
    else:
        click.echo("the breaker was not tripped; nothing changed")


@scheduler.command("jobs")
@click.option("--gpu", type=int, default=None, help="Only this GPU index.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_with_common
def jobs(gpu: int | None, as_json: bool, sock: str | None, db: str | None,
         backend: str) -> None:
    """Which jobs each decision's fault hit, newest first."""
    reply = _ask(_socket(sock, backend), {"op": "scheduler.jobs", "gpu": gpu})
    if reply is None:
        led = _ledger(db, backend)
        try:
            rows = led.jobs(gpu)
        finally:
            led.close()
    else:
        rows = reply["jobs"]
    if as_json:
        print_json({"jobs": rows})
        return
    if not rows:
        click.echo("no jobs recorded" + (f" for GPU {gpu}" if gpu is not None else ""))
    for r in rows:
        from rasd.scheduler.ledger import job_label

        names = ", ".join(job_label(j) for j in r["jobs"]) or "no process on the GPU"
        click.echo(f"{_t(r['time'])} gpu={r['gpu']} fault={r['fault']}: {names}")


def _t(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
