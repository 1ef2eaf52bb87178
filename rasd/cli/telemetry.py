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
    backend_options,
    fail,
    load_config_or_fail,
    open_backend_or_fail,
    print_json,
    setup_logging,
)
from rasd.model import GpuState, Health, XidEvent
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
    from rasd.daemon import Daemon, with_listen

    cfg = load_config_or_fail(config_path)
    if listen is not None:
        try:
            config_mod.parse_listen(listen)
        except ValueError as e:
            fail(f"--listen: {e}")
        cfg = with_listen(cfg, listen)
    setup_logging(log_level or cfg.daemon.log_level)
    be = open_backend_or_fail(backend, scenario)
    daemon = Daemon(cfg, be, config_path=config_path, serve_metrics=serve)
    try:
        daemon.start()
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
def status(backend: str | None, scenario: str | None, as_json: bool) -> None:
    """One table of every GPU's health from a one-shot poll."""
    be = open_backend_or_fail(backend, scenario)
    try:
        node = be.adapter.node_identity(_hostname(), be.name)
        states, _ = one_shot(be)
        jobs = _jobs(be)
    finally:
        be.close()
    if as_json:
        print_json({"node": _node_json(node),
                    "gpus": [dict(_gpu_json(s), jobs=jobs.get(s.index, [])) for s in states]})
    else:
        click.echo(
            f"{node.hostname}  backend={node.backend}  driver={node.driver_version or '-'}  "
            f"nvml={node.nvml_version or '-'}  cuda={node.cuda_driver_version or '-'}"
        )
        click.echo(_table(states))
        from rasd.scheduler.ledger import job_label

        for gpu, refs in sorted(jobs.items()):
            named = [job_label(j) for j in refs if j["kind"] != "none"]
            if named:
                click.echo(f"GPU {gpu} jobs: {', '.join(named)}")
    if any(s.health is not Health.UP for s in states):
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


def _node_json(n: Any) -> dict[str, Any]:
    return {
        "hostname": n.hostname, "backend": n.backend, "driver_version": n.driver_version,
        "nvml_version": n.nvml_version, "cuda_driver_version": n.cuda_driver_version,
    }


def _links(st: GpuState) -> tuple[int, int] | None:
    if st.sample is None or not st.sample.nvlinks:
        return None
    return sum(1 for ln in st.sample.nvlinks if ln.up), len(st.sample.nvlinks)


def _gpu_json(st: GpuState) -> dict[str, Any]:
    s = st.sample
    ident = st.identity
    links = _links(st)
    return {
        "gpu": st.index,
        "uuid": ident.uuid if ident else None,
        "name": ident.name if ident else None,
        "pci_bus_id": ident.pci_bus_id if ident else None,
        "health": st.health.value,
        "power_watts": s.power_instant_watts if s else None,
        "power_limit_watts": s.power_limit_watts if s else None,
        "temperature_gpu_celsius": s.temperature_gpu_celsius if s else None,
        "temperature_memory_celsius": s.temperature_memory_celsius if s else None,
        "ecc_volatile_corrected": s.ecc_volatile_corrected if s else None,
        "ecc_volatile_uncorrected": s.ecc_volatile_uncorrected if s else None,
        "remapped_rows_correctable": s.remapped_rows_correctable if s else None,
        "remapped_rows_uncorrectable": s.remapped_rows_uncorrectable if s else None,
        "remap_pending": s.remap_pending if s else None,
        "remap_failure": s.remap_failure if s else None,
        "nvlinks_up": links[0] if links else None,
        "nvlinks_total": links[1] if links else None,
        "recent_xids": [{"time": x.time_wall, "xid": x.xid, "message": x.message} for x in st.recent_xids],
        "unsupported": sorted(st.unsupported),
        "errors": {f"{r}:{k}": n for (r, k), n in st.errors.items()},
    }


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec)


def _table(states: list[GpuState]) -> str:
    head = ("GPU", "NAME", "HEALTH", "POWER W", "LIMIT W", "GPU C", "MEM C", "ECC C/U", "REMAP C/U", "PEND/FAIL", "LINKS", "RECENT XIDS")
    rows = [head]
    for st in states:
        s = st.sample
        lost = st.health is Health.LOST
        name = st.identity.name if st.identity else "-"
        links = _links(st)
        ecc = f"{_fmt(s.ecc_volatile_corrected)}/{_fmt(s.ecc_volatile_uncorrected)}" if s and not lost else "-"
        remap = f"{_fmt(s.remapped_rows_correctable)}/{_fmt(s.remapped_rows_uncorrectable)}" if s and not lost else "-"
        pf = f"{_fmt(s.remap_pending)}/{_fmt(s.remap_failure)}" if s and not lost else "-"
        xids = ",".join(str(x.xid) for x in st.recent_xids[-5:]) or "-"
        rows.append((
            str(st.index), name, st.health.value,
            _fmt(s.power_instant_watts, ".0f") if s and not lost else "-",
            _fmt(s.power_limit_watts, ".0f") if s and not lost else "-",
            _fmt(s.temperature_gpu_celsius, ".0f") if s and not lost else "-",
            _fmt(s.temperature_memory_celsius, ".0f") if s and not lost else "-",
            ecc, remap, pf,
            f"{links[0]}/{links[1]}" if links and not lost else "-",
            xids,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

