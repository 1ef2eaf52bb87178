"""The kernel-log catch-up at start: the Xids the kernel logged while rasd was down.

On start rasd reads the kernel log it can reach (the /dev/kmsg ring, or the journal) for the
time since the newest stored event, and hands the ladder the Xids it has not stored (``judge``:
the service's ``ingest``), as the live path would have. Functions over the store and the parsed
log lines; the judging itself is the service's.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

from rasd.ladder.escalate import OPERATOR_CLOSE
from rasd.model import FaultEvent, FaultKind
from rasd.store import Store
from rasd.telemetry.kmsg import LoggedXid, backlog

log = logging.getLogger("rasd.ladder")

CATCH_UP_SLACK_SECONDS = 2.0

# the ladder's door for the events found: (events, now_wall Unix s)
Judge = Callable[[Sequence[FaultEvent], float], object]
# (PCI domain, bus, device) -> the GPU index NVML enumerates there now
GpuOf = Mapping[tuple[int, int, int], int]


def catch_up_from(store: Store, judge: Judge, kernel_log: str, gpu_of: GpuOf,
                  now_wall: float) -> int:
    """On start: read the kernel log rasd can reach (the /dev/kmsg ring, or the journal)
    for the Xids of the time it was down, and judge the unseen ones."""
    since = store.last_fault_time()
    if since is None or not kernel_log:
        return 0
    try:
        logged, source = backlog(kernel_log, since, now_wall)
    except OSError as e:
        log.warning("event=kernel_log_backlog_unreadable path=%s error=%r", kernel_log,
                    e.strerror)
        return 0
    n = catch_up(store, judge, logged, gpu_of, now_wall, since)
    log.info("event=kernel_log_catch_up source=%s logged=%d new=%d since=%.0f", source,
             len(logged), n, since)
    return n


def catch_up(store: Store, judge: Judge, logged: Sequence[LoggedXid], gpu_of: GpuOf,
             now_wall: float, since_wall: float | None = None) -> int:
    """Judge the Xids the kernel logged while rasd was down: those after the newest stored
    event (``since_wall``), except any the store already holds (the same GPU and code within
    ``CATCH_UP_SLACK_SECONDS``: the live path stamps when NVML signalled, the kernel when it
    printed). Returns how many were new."""
    since = store.last_fault_time() if since_wall is None else since_wall
    if since is None:
        return 0  # a first start: the history begins now, older lines are not ours to judge
    recent = store.faults(since=since - CATCH_UP_SLACK_SECONDS)
    stored = {(f.event.gpu, f.event.details.get("xid"), f.event.time_wall)
              for f in recent if f.event.kind is FaultKind.XID}
    # a GPU a person closed while rasd was down (the board replaced): what the kernel logged
    # of it before the close is the old board's
    closed = {f.event.gpu: f.event.time_wall for f in recent
              if f.event.kind is FaultKind.REMEDY and f.event.link is None
              and f.event.details.get("action") == OPERATOR_CLOSE}
    events = []
    for x in logged:
        if not since < x.time_wall <= now_wall:
            continue
        gpu = gpu_of.get(x.line.pci)
        if gpu is None or x.time_wall <= closed.get(gpu, since):
            continue  # not one of this node's GPUs as NVML enumerates them now, or closed
        if any(g == gpu and c == x.line.xid and abs(t - x.time_wall) <= CATCH_UP_SLACK_SECONDS
               for g, c, t in stored):
            continue
        events.append(FaultEvent(x.time_wall, gpu, FaultKind.XID, None, {
            "xid": x.line.xid, "message": x.line.message, "source": "kernel_log_backlog"}))
    if events:
        log.info("xids_while_down count=%d since=%.0f", len(events), since)
        judge(events, now_wall)
    return len(events)
