"""`rasd run` (the daemon) and `rasd status` (a one-shot poll of every GPU)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import click

from rasd import config as config_mod
from rasd.backends import Backend
from rasd.cli.common import (
    EXIT_FAIL,
    ask_daemon,
    backend_options,
    config_option,
    daemon_paths,
    fail,
    load_config_or_fail,
    open_backend_or_fail,
    print_json,
    setup_logging,
)
from rasd.model import GpuState, Health, XidEvent
from rasd.statusview import gpu_json, node_json
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller
from rasd.telemetry.xid import XidWatcher

STATUS_DEADLINE_SECONDS = 5.0
STATUS_XID_WAIT_SECONDS = 0.3


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(status)


@click.command()
@backend_options
@click.option("--listen", metavar="HOST:PORT", default=None, help=f"Where /metrics is served (default 127.0.0.1:{config_mod.DEFAULT_PORT}).")
@click.option("--config", "config_path", metavar="PATH", default=None, type=click.Path(dir_okay=False), help="TOML configuration (default: none; /etc/rasd/rasd.toml under systemd).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False), default=None, help="Overrides [daemon].log_level.")
def run(backend: str | None, scenario: str | None, listen: str | None, config_path: str | None, log_level: str | None) -> None:
    """Run the daemon: poll every GPU, decide repairs, check, smooth power, serve /metrics."""
    from exporters.prometheus import serve
    from rasd.control import ControlSocketError
    from rasd.daemon import Daemon, with_listen
    from rasd.instance import AlreadyRunning, LockUnavailable
    from rasd.store import StoreError

    cfg = load_config_or_fail(config_path)
    if listen is not None:
        try:
            config_mod.parse_listen(listen)
        except ValueError as e:
            fail(f"--listen: {e}")
        cfg = with_listen(cfg, listen)
    if log_level is not None:  # over the file's, at start and at every reload
        cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, log_level=log_level.lower()))
    setup_logging(cfg.daemon.log_level)
    be = open_backend_or_fail(backend, scenario)
    try:
        daemon = Daemon(cfg, be, config_path=config_path, serve_metrics=serve)
    except AlreadyRunning as e:
        be.close()
        fail(str(e), EXIT_FAIL)
    except (LockUnavailable, StoreError) as e:
        be.close()
        fail(str(e))
    try:
        daemon.start()
    except ControlSocketError as e:
        daemon.stop()
        fail(str(e))
    except OSError as e:
        daemon.stop()
        fail(f"cannot serve /metrics on {cfg.daemon.listen} ({e.strerror or e}); choose another address with --listen HOST:PORT")
    click.echo(
        f"rasd: serving http://{cfg.daemon.listen}/metrics for {len(daemon.gpus)} GPUs ({be.name} backend); Ctrl-C stops",
        err=True,
    )
    daemon.run_forever()


def one_shot(be: Backend, deadline: float = STATUS_DEADLINE_SECONDS) -> tuple[list[GpuState], list[XidEvent]]:
    """Poll every GPU once in parallel (a hung GPU is reported stale after ``deadline``)."""
    pollers = [GpuPoller(g, 1.0, deadline) for g in be.adapter.gpus()]
    threads = [threading.Thread(target=p.poll_once, daemon=True) for p in pollers]
    xw = XidWatcher(be.adapter, be.kernel_log(""), wait_ms=100)
    xw.start()
    for t in threads:
        t.start()
    end = time.monotonic() + deadline
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    time.sleep(STATUS_XID_WAIT_SECONDS)
    xw.stop()
    xids = xw.drain()
    agg = Aggregator()
    agg.add_xids(xids)
    states = []
    for p, t in zip(pollers, threads):
        view = p.view()
        if t.is_alive():
            view = dataclasses.replace(view, stalled=True)
        st, _ = agg.update(view, time.time())
        states.append(st)
    return states, xids


@click.command()
@backend_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@config_option
def status(backend: str | None, scenario: str | None, as_json: bool, config_path: str | None) -> None:
    """One table of every GPU's health: the running daemon's view, or a one-shot poll without one."""
    view = None
    if scenario is None:
        cfg = load_config_or_fail(config_path)
        sock, state = daemon_paths(cfg, backend)
        reply = ask_daemon(sock, state, {"op": "status"}, denied_ok=True)
        if reply is not None and reply.get("node") is not None:
            view = reply
            source = f"the daemon's last health poll (pid {reply.get('pid')}, {sock})"
    if view is None:
        be = open_backend_or_fail(backend, scenario)
        try:
            node = be.adapter.node_identity(_hostname(), be.name)
            states, _ = one_shot(be)
            jobs = _jobs(be)
        finally:
            be.close()
        view = {"node": node_json(node), "gpus": [dict(gpu_json(st), jobs=jobs.get(st.index, [])) for st in states]}
        source = f"a one-shot poll ({be.name} backend; no daemon answered)"
    gpus = view["gpus"]
    if as_json:
        print_json({"node": view["node"], "gpus": gpus, "source": source})
    else:
        n = view["node"]
        click.echo(
            f"{n['hostname']}  backend={n['backend']}  driver={n['driver_version'] or '-'}  "
            f"nvml={n['nvml_version'] or '-'}  cuda={n['cuda_driver_version'] or '-'}  from {source}"
        )
        click.echo(_table(gpus))
        from rasd.scheduler.ledger import job_label

        for g in gpus:
            if g.get("lost_reason"):  # why a lost GPU is lost, in NVML's words
                click.echo(f"GPU {g['gpu']} lost: {g['lost_reason']} ({g.get('lost_detail') or '-'})")
        for g in gpus:
            named = [job_label(j) for j in g.get("jobs", []) if j["kind"] != "none"]
            if named:
                click.echo(f"GPU {g['gpu']} jobs: {', '.join(named)}")
    if any(g["health"] != Health.UP.value for g in gpus):
        raise SystemExit(EXIT_FAIL)


def _jobs(be: Any) -> dict[int, list[dict[str, Any]]]:
    """The jobs (Slurm) or pods (Kubernetes) with processes on each GPU; a GPU that cannot
    list its processes has none."""
    from rasd.scheduler.jobs import jobs_on

    out: dict[int, list[dict[str, Any]]] = {}
    for g in be.adapter.gpus():
        try:
            pids = g.running_pids()
        except Exception:  # noqa: BLE001 - lost GPU or no permission: nothing to name
            continue
        out[g.index] = [r.to_dict() for r in jobs_on(pids)]
    return out


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec)


def _table(gpus: list[dict[str, Any]]) -> str:
    head = ("GPU", "NAME", "HEALTH", "POWER W", "LIMIT W", "GPU C", "MEM C", "ECC C/U", "REMAP C/U", "PEND/FAIL", "LINKS", "RECENT XIDS")
    rows = [head]
    for g in gpus:
        lost = g["health"] == Health.LOST.value

        def pair(a: str, b: str, g: dict[str, Any] = g, lost: bool = lost) -> str:
            return "-" if lost or (g[a] is None and g[b] is None) else f"{_fmt(g[a])}/{_fmt(g[b])}"

        def one(key: str, g: dict[str, Any] = g, lost: bool = lost) -> str:
            return "-" if lost else _fmt(g[key], ".0f")

        xids = ",".join(str(x["xid"]) for x in g["recent_xids"][-5:]) or "-"
        links = "-" if lost or g["nvlinks_total"] is None else f"{g['nvlinks_up']}/{g['nvlinks_total']}"
        rows.append((
            str(g["gpu"]), g["name"] or "-", g["health"],
            one("power_watts"), one("power_limit_watts"), one("temperature_gpu_celsius"),
            one("temperature_memory_celsius"),
            pair("ecc_volatile_corrected", "ecc_volatile_uncorrected"),
            pair("remapped_rows_correctable", "remapped_rows_uncorrectable"),
            pair("remap_pending", "remap_failure"),
            links, xids,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
