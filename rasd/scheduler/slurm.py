"""Slurm through its own commands: ``scontrol`` changes the node, ``sinfo`` reads the scope.

Drains use ``scontrol update nodename=N state=drain reason=...``: running jobs finish, no new
ones start. Reasons and their timestamps come back from ``sinfo -N -o`` (``%E`` the reason,
``%H`` when it was set), so rasd keeps no fleet state of its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from datetime import datetime

from rasd.scheduler.cluster import NodeOut, NodeView, SchedulerError, ScopeView
from rasd.scheduler.settings import SchedulerSettings

log = logging.getLogger("rasd.scheduler.slurm")

# Base states (sinfo %T, lower case, flags joined by "+") in which a node takes no new work.
_OUT_WORDS = ("drain", "drained", "draining", "down", "fail", "failing", "maint", "reboot")
_FORMAT = "%N|%T|%H|%E"  # the reason last: it may itself contain "|"


class SlurmCluster:
    kind = "slurm"

    def __init__(self, settings: SchedulerSettings, node: str):
        self.s = settings
        self.node_name = node
        self._env = dict(os.environ)
        if settings.slurm_conf:
            self._env["SLURM_CONF"] = settings.slurm_conf

    def _run(self, argv: Sequence[str]) -> str:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, env=self._env,
                               timeout=self.s.command_timeout_seconds, check=False,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SchedulerError(f"{argv[0]} timed out after {self.s.command_timeout_seconds:g} s "
                                 "(is slurmctld up?)") from None
        except OSError as e:
            raise SchedulerError(f"cannot run {argv[0]!r} ({e.strerror}); install slurm-client "
                                 "or set scheduler.scontrol / scheduler.sinfo") from None
        if p.returncode != 0:
            raise SchedulerError(f"{' '.join(argv[:3])} failed ({p.returncode}): "
                                 f"{p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def _rows(self, extra: Sequence[str]) -> dict[str, NodeOut | None]:
        """node -> NodeOut when out of service, None when in service (one row per node)."""
        out = self._run([self.s.sinfo, "-h", "-N", "-o", _FORMAT, *extra])
        rows: dict[str, NodeOut | None] = {}
        for line in out.splitlines():
            parts = line.split("|", 3)
            if len(parts) != 4:
                continue
            name, state, stamp, reason = parts
            words = state.lower().rstrip("*~#!%$@^-").split("+")
            is_out = any(w in _OUT_WORDS for w in words)
            reason = "" if reason == "none" else reason
            rows[name] = NodeOut(name, reason, _parse_time(stamp)) if is_out else None
        return rows

    def node(self) -> NodeView:
        rows = self._rows(["-n", self.node_name])
        if self.node_name not in rows:
            raise SchedulerError(f"Slurm does not know node {self.node_name!r}; set "
                                 "scheduler.node_name to the node's Slurm name")
        n = rows[self.node_name]
        return NodeView(self.node_name, n is not None, n.reason if n else "")

    def scope(self) -> ScopeView:
        rows = self._rows(["-p", self.s.partition] if self.s.partition else [])
        return ScopeView(len(rows), tuple(n for n in rows.values() if n is not None))

    def take_out(self, reason: str) -> None:
        self._run([self.s.scontrol, "update", f"nodename={self.node_name}", "state=drain",
                   f"reason={reason}"])
        log.info("event=slurm_drain node=%s reason=%r", self.node_name, reason)

    def bring_back(self) -> None:
        self._run([self.s.scontrol, "update", f"nodename={self.node_name}", "state=resume"])
        log.info("event=slurm_resume node=%s", self.node_name)

    def report(self, decision: dict[str, object], reason: str, out: bool) -> None:
        """Slurm has no event stream for this: the drain reason is the report."""


def _parse_time(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()  # local time, as Slurm prints it
    except ValueError:
        return None
