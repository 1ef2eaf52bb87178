"""Which decisions take the node out of service, and the reason rasd writes for them."""

from __future__ import annotations

from rasd.ladder.decision import Decision
from rasd.model import Rung
from rasd.scheduler.cluster import REASON_PREFIX
from rasd.scheduler.settings import SchedulerSettings


def needs_node_out(d: Decision, s: SchedulerSettings) -> bool:
    """True when acting on ``d`` takes capacity away: a reboot or RMA, an explicit drain, a
    GPU reset that needs the GPU idle, or a GPU the scheduler cannot hold back alone."""
    if d.rung >= Rung.REBOOT_NODE or "drain" in d.degradations:
        return True
    if d.rung is Rung.RESET_GPU and s.reset_needs_drain:
        return True
    return "exclude_gpu" in d.degradations and s.exclude_gpu_drains_node


def reason_for(d: Decision) -> str:
    """``rasd: xid 79 gpu 3 -> reboot_node`` (Slurm's reason, the condition's message)."""
    where = f"gpu {d.gpu}" if d.link is None else f"gpu {d.gpu} link {d.link}"
    return f"{REASON_PREFIX} {d.fault.replace(':', ' ')} {where} -> {d.rung.label}"
