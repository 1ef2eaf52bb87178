"""``rasd validate`` and ``rasd accuse``: SDC checks through the daemon, or standalone."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import click

from rasd.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    ask_daemon,
    backend_options,
    daemon_paths,
    fail,
    load_config_or_fail,
    open_backend_or_fail,
    print_json,
)
from rasd.sdc.settings import LEVELS, SdcSettings

EXIT_INCONCLUSIVE = 3
_EXIT = {"pass": EXIT_OK, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}
_VERDICT_EXIT = {"cleared": EXIT_OK, "confirmed": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}
_POLL_SECONDS = 0.5


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(accuse)


class _Where:
    """The config's SDC settings and the daemon's socket and state paths (``--config``)."""

    def __init__(self, config_path: str | None, backend: str | None):
        cfg = load_config_or_fail(config_path)
        self.settings: SdcSettings = cfg.sdc
        self.socket, self.state = daemon_paths(cfg, backend)
        self.state_configured = bool(cfg.daemon.state_path)


def _parse_gpu(text: str) -> list[int] | str:
    if text.strip().lower() == "all":
        return "all"
    try:
        gpu = int(text)
    except ValueError:
        fail(f"--gpu {text!r} is not a GPU index; give a number such as 0, or all")
    if gpu < 0:
        fail(f"--gpu {gpu} is negative; GPU indexes start at 0")
    return [gpu]


def _daemon(where: _Where, scenario: str | None, payload: dict[str, Any], timeout: float = 5.0) -> dict | None:
    """The running daemon's answer, or None when none runs (a scenario always runs standalone).

    A daemon this user may not reach is an error naming the group to join, never a reason to
    check without it."""
    if scenario is not None:
        return None
    return ask_daemon(where.socket, where.state, payload, timeout)


def _open(backend: str | None, scenario: str | None) -> Any:
    # With no scenario the fake node would run a training workload on every GPU, so nothing
    # could be checked: validation gets idle GPUs.
    idle = backend == "fake" and scenario is None
    return open_backend_or_fail(backend, scenario, EXIT_USAGE, workload="idle" if idle else None)


def _validator(be: Any, settings: SdcSettings, lock_dir: str | None = None) -> Any:
    """``lock_dir``: where the daemon keeps its per-GPU check locks (beside its socket). Each
    run builds engines (on real GPUs, a CUDA context each) only for the GPUs it checks and the
    idle ones it takes as witnesses, never on a GPU running a job; EngineUnavailable is raised
    by the run then."""
    from rasd.sdc.engines import engines_for_backend
    from rasd.sdc.locks import GpuLocks
    from rasd.sdc.service import default_lock_dir
    from rasd.sdc.validation import Validator

    def build(gpus: Any) -> Any:
        return engines_for_backend(be, settings.seed, settings.numpy_memory_bytes, set(gpus))

    handles = {g.index: g for g in be.adapter.gpus()}
    return Validator(settings, handles, build, GpuLocks(lock_dir or default_lock_dir(be.name)))


def _answering(be: Any) -> list[int]:
    """The GPUs that answer (a lost GPU has nothing to check: the ladder has its fault)."""
    from rasd.backends.errors import GpuLost

    out = []
    for g in be.adapter.gpus():
        try:
            g.identity()
        except GpuLost:
            continue
        out.append(g.index)
    return out


class _Bar:
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        self._bar: Any = None
        self._enabled = enabled
        self._shown = 0

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self._enabled or total <= 0:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="validating", file=sys.stderr,
                                          item_show_func=lambda x: x)
            self._bar.__enter__()
        self._bar.update(max(0, done - self._shown), label)
        self._shown = max(self._shown, done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _cell(check: dict[str, Any]) -> str:
    gf = f" {check['gflops']:.0f}" if check.get("gflops") is not None else ""
    return f"{check['result']} {check['seconds']:.2f}s{gf}"


def render_table(report: dict[str, Any]) -> str:
    """Checks down, GPUs across; each cell: result, seconds, GFLOP/s."""
    gpus = report["gpus"]
    names: list[str] = []
    for g in gpus:
        for c in g["checks"]:
            if c["name"] not in names:
                names.append(c["name"])
    cols = [f"gpu {g['gpu']}" for g in gpus]
    rows = [[n] + [next((_cell(c) for c in g["checks"] if c["name"] == n), "-") for g in gpus] for n in names]
    rows.append(["result"] + [g["result"] for g in gpus])
    widths = [max(len(r[i]) for r in [["check", *cols], *rows]) for i in range(len(cols) + 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(["check", *cols], widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    lines.append(f"level {report['level']}, seed {report['seed']}, {report['seconds']:.1f}s; "
                 "cells: result, seconds, GFLOP/s")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    for g in gpus:
        for c in g["checks"]:
            if c["result"] != "pass":
                details = c.get("evidence", {}).get("details", [c.get("evidence", {})])
                first = details[0] if details else {}
                lines.append(f"gpu {g['gpu']} {c['name']} {c['result']}: {json.dumps(first, default=str)[:400]}")
    lines.append(f"result: {report['result']}")
    return "\n".join(lines)


@click.command("validate")
@backend_options
@click.option("--gpu", "gpu_text", default="all", show_default=True, metavar="N|all", help="Which GPU to check.")
@click.option("--level", type=click.Choice(LEVELS), default="quick", show_default=True,
              help="quick: seconds per GPU; standard: about 2 minutes per node; deep: [sdc].deep_seconds.")
@click.option("--force", is_flag=True, help="Check GPUs even while a job uses them.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option("--config", "config_path", metavar="PATH", default=None, type=click.Path(dir_okay=False),
              help="TOML configuration whose [sdc] table sets sizes and tolerances (default: built-in).")
def validate(backend: str | None, scenario: str | None, gpu_text: str, level: str, force: bool, as_json: bool,
             config_path: str | None) -> None:
    """Check GPUs for silent data corruption: golden GEMM, ABFT, Freivalds, memory, vote, throughput.

    Exit 0 when every check passes, 1 when any fails, 3 when none fail but some are inconclusive.
    Runs through the daemon when one is up (so checks never collide), standalone otherwise.
    """
    gpus = _parse_gpu(gpu_text)
    where = _Where(config_path, backend)
    bar = _Bar(sys.stderr.isatty() and not as_json)
    try:
        report = _validate_via_daemon(where, scenario, gpus, level, force, bar)
        if report is None:
            lock_dir = os.path.dirname(where.socket) if scenario is None else None
            report = _validate_standalone(backend, scenario, gpus, level, force, where.settings, bar, lock_dir)
    finally:
        bar.close()
    if as_json:
        print_json(report)
    else:
        click.echo(render_table(report))
    sys.exit(_EXIT[report["result"]])


def _validate_via_daemon(where: _Where, scenario: str | None, gpus: Any, level: str, force: bool,
                         bar: Callable[[int, int, str], None]) -> dict[str, Any] | None:
    reply = _daemon(where, scenario, {"op": "validate", "gpus": gpus, "level": level, "force": force})
    if reply is None:
        return None
    job = reply["job"]
    while True:
        status = _daemon(where, None, {"op": "validate", "job": job})
        if status is None:
            fail("the daemon went away during the check; rerun rasd validate", EXIT_INCONCLUSIVE)
        p = status["progress"]
        bar(p["done"], p["total"], p["step"])
        if status["done"]:
            if status.get("error"):
                fail(f"the daemon's check did not finish: {status['error']}", EXIT_INCONCLUSIVE)
            return status["report"]
        time.sleep(_POLL_SECONDS)


def _validate_standalone(backend: str | None, scenario: str | None, gpus: Any, level: str, force: bool,
                         settings: SdcSettings, bar: Callable[[int, int, str], None],
                         lock_dir: str | None) -> dict[str, Any]:
    be = _open(backend, scenario)
    try:
        from rasd.sdc.engines import EngineUnavailable

        v = _validator(be, settings, lock_dir)
        answering = _answering(be)
        targets = answering if gpus == "all" else gpus
        unknown = [g for g in targets if g not in v.gpus]
        if unknown:
            fail(f"no GPU {unknown[0]} on this node; choose one of {answering} or all")
        try:
            outcome = v.run(targets, level, force=force, progress=bar)
        except (ValueError, EngineUnavailable) as e:
            fail(str(e))
        return outcome.report.to_dict()
    finally:
        be.close()


@click.command("accuse")
@backend_options
@click.option("--gpu", type=int, required=True, metavar="N", help="The GPU the job suspects.")
@click.option("--reason", required=True, metavar="TEXT", help="What the job saw (e.g. 'loss spike at step 1200').")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--config", "config_path", metavar="PATH", default=None, type=click.Path(dir_okay=False),
              help="TOML configuration whose [sdc] table sets the deep check (default: built-in).")
def accuse(backend: str | None, scenario: str | None, gpu: int, reason: str, as_json: bool,
           config_path: str | None) -> None:
    """Accuse a GPU of silent data corruption: it is marked suspect and deep-checked.

    Through the daemon the check runs there (the verdict reaches the repair ladder); without one
    it runs here, against the history store, and prints the verdict (exit 0 cleared, 1 confirmed,
    3 inconclusive).
    """
    if not reason.strip():
        fail("--reason is empty; say what the job saw")
    where = _Where(config_path, backend)
    reply = _daemon(where, scenario, {"op": "accuse", "gpu": gpu, "reason": reason})
    if reply is not None:
        if as_json:
            print_json(reply)
        else:
            click.echo(f"GPU {gpu} is suspect (accusation {reply.get('accusation')}); the daemon is running a "
                       f"deep check{' (escalated: technician flagged)' if reply.get('escalated') else ''}")
        return
    _accuse_standalone(backend, scenario, gpu, reason, as_json, where)


def _accuse_standalone(backend: str | None, scenario: str | None, gpu: int, reason: str, as_json: bool,
                       where: _Where) -> None:
    from rasd.instance import holder_pid
    from rasd.sdc.accusation import AccusationWorkflow
    from rasd.sdc.history import SdcHistory
    from rasd.store import Store, StoreError

    settings = where.settings
    state = where.state
    if scenario is not None and not where.state_configured:
        from rasd.paths import default_state_path

        state = default_state_path("fake")
    pid = holder_pid(state)
    if pid is not None:  # its history is the daemon's to write; the check belongs there too
        fail(f"a rasd daemon (pid {pid}) runs on {state}; accuse through it (drop --scenario, or pass "
             "the --config it runs with)")
    be = _open(backend, scenario)
    try:
        from rasd.sdc.engines import EngineUnavailable

        v = _validator(be, settings, os.path.dirname(where.socket) if scenario is None else None)
        answering = _answering(be)
        if gpu not in answering:
            fail(f"no GPU {gpu} on this node; choose one of {answering}")
        try:
            store = Store(state)
        except StoreError as e:
            fail(str(e))
        try:
            wf = AccusationWorkflow(settings, v, SdcHistory(store), lambda events: None)
            bar = _Bar(sys.stderr.isatty() and not as_json)
            try:
                finding = wf.investigate(wf.open(gpu, reason), progress=bar)
            except EngineUnavailable as e:
                fail(str(e))
            finally:
                bar.close()
            for o in finding.outcomes:
                SdcHistory(store).record(o.report, time.time())
        finally:
            store.close()
    finally:
        be.close()
    out = {"gpu": gpu, "accusation": finding.ticket.accusation, "verdict": finding.verdict.value,
           "evidence": finding.evidence}
    if as_json:
        print_json(out)
    else:
        click.echo(f"GPU {gpu}: {finding.verdict.value} (accusation {finding.ticket.accusation}, rounds "
                   f"{' '.join(finding.evidence['rounds']) or 'none'})")
        for f in finding.evidence["failures"][:3]:
            click.echo(f"  {f['name']} {f['result']}: {json.dumps(f.get('evidence', {}), default=str)[:300]}")
    sys.exit(_VERDICT_EXIT[finding.verdict.value])
