"""The catalog's workflows for the Xids whose finding needs more than their bucket (pure):
13/31 by whether they repeat on one GPU or spread over several, 45 and 48 by their companions
(and 63/64 after a 48), 94/95 by the driver's reset flags, 154 by the recovery action it names.
The NVLink Xids' workflows are in xidlinks.py; xids.py dispatches to both.
"""

from __future__ import annotations

from rasd.ladder.findings import (
    APPLICATION, DIAGNOSTICS, DRAIN, EXCLUDE_GPU, RECOVERY_ACTIONS, SDC_CHECK, Context, Finding,
)
from rasd.ladder.findings import with_ as _with
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xidtext import decode, parse_gpc_tpc, parse_recovery_text
from rasd.model import FaultEvent, Rung, Scope


def _after_48(event: FaultEvent, ctx: Context, s: LadderSettings, f: Finding, what: str) -> Finding:
    """WORKFLOW_XID_48 read from the other side: the driver prints the double-bit error first and
    the row remap (63) or its failure (64) just after, so a 63/64 that follows a 48 on the same GPU
    turns the pair into "drain, then reset" (the 48's own finding saw no companion yet)."""
    since = event.time_wall - s.xid_companion_seconds
    if not any(x.gpu == event.gpu and x.xid == 48 and x.time_wall >= since for x in ctx.recent_xids):
        return f
    return _with(f, rung=max(f.rung, Rung.RESET_GPU), degradations=tuple(dict.fromkeys((*f.degradations, DRAIN))),
                 hardware=True, reason=f"{what} after Xid 48 on this GPU: drain, then reset the GPU")


def _wf_13_31(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
              message: str | None) -> Finding:
    code = base.xid or 0
    key = parse_gpc_tpc(message) if code == 13 else None
    same_gpu, other_gpus = _repeat_flags(code, message, event, ctx, s)
    if same_gpu and not other_gpus:
        where = f" on the same {key}" if key else ""
        return _with(base, rung=Rung.RESTART_PROCESS, investigate=(SDC_CHECK,), hardware=True,
                     degradations=(EXCLUDE_GPU,),
                     reason=f"{what} repeated on this GPU{where}: possible hardware; restart the "
                     "application and run an in-depth SDC check of the GPU")
    spread = " (also on other GPUs: the application)" if other_gpus else ""
    return _with(base, rung=Rung.RESTART_PROCESS, investigate=(APPLICATION,),
                 reason=f"{what}: an application problem{spread}; restart the application")


def _repeat_flags(code: int, message: str | None, event: FaultEvent, ctx: Context,
                  s: LadderSettings) -> tuple[bool, bool]:
    """Xid 13/31: (an earlier occurrence on this GPU within the repeat window, for Xid 13 on
    the same GPC/TPC when both name one; the same Xid on another GPU within the window)."""
    key = parse_gpc_tpc(message) if code == 13 else None
    since = event.time_wall - s.xid_repeat_window_seconds
    burst = ctx.burst_start
    gpu = event.gpu
    # lines of the current burst (one SM exception prints several) are this occurrence
    same_gpu = any(x.xid == code and x.gpu == gpu and x.time_wall >= since
                   and (burst is None or x.burst != burst)
                   and (code != 13 or key is None or x.key is None or x.key == key)
                   for x in ctx.recent_xids)
    other_gpus = any(x.xid == code and x.gpu != gpu and x.time_wall >= since
                     for x in ctx.recent_xids)
    return same_gpu, other_gpus


def _wf_45(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
           message: str | None) -> Finding:
    cause = decode(45, message).caused_by
    if cause is not None:
        return _with(base, reason=f"{what}: caused by an earlier Xid {cause}, which decides")
    since = event.time_wall - s.xid_companion_seconds
    others = [x for x in ctx.recent_xids
              if x.gpu == event.gpu and x.xid != 45 and x.time_wall >= since]
    if others:
        return _with(base, reason=f"{what}: follows Xid {others[-1].xid}, which decides")
    return _with(base, rung=Rung.RESTART_PROCESS,
                 reason=f"{what} alone: restart the fabric manager / the aborted application")


def _wf_48(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
           message: str | None) -> Finding:
    since = event.time_wall - s.xid_companion_seconds
    with_remap = any(x.gpu == event.gpu and x.xid in (63, 64) and x.time_wall >= since
                     for x in ctx.recent_xids)
    if with_remap:
        return _with(base, rung=Rung.RESET_GPU, degradations=(DRAIN,), hardware=True,
                     reason=f"{what} with Xid 63/64: drain, then reset the GPU")
    return _with(base, rung=Rung.RESET_GPU, investigate=(DIAGNOSTICS,), hardware=True,
                 reason=f"{what} alone: reset the GPU, then field diagnostics")


def _wf_94_95(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
              message: str | None) -> Finding:
    """Contained (94) and uncontained (95) memory errors: the driver's RST / D-RST flags say
    whether the GPU needs a reset, and whether to drain it first."""
    t = decode(base.xid or 0, message)
    if t.drain_and_reset:
        return _with(base, rung=Rung.RESET_GPU, degradations=(DRAIN,), hardware=True,
                     reason=f"{what}: the driver asks to drain and reset the GPU (D-RST)")
    if base.xid == 95 or t.reset_required:
        why = "the driver asks for a reset (RST)" if t.reset_required else \
            "every application on the GPU is affected"
        return _with(base, rung=Rung.RESET_GPU, degradations=(DRAIN,), hardware=True,
                     reason=f"{what}: {why}; drain, then reset the GPU")
    flags = " (RST: No)" if t.reset_required is False else ""
    return _with(base, rung=Rung.RESTART_PROCESS,
                 reason=f"{what}{flags}: restart the affected application; reset the GPU when "
                 "convenient")


def _wf_154(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
            message: str | None) -> Finding:
    action = parse_recovery_text(message)
    if action is None:
        return _with(base, reason=f"{what}: the message names no recovery action; the "
                     "accompanying Xid decides")
    return recovery_finding(base, action, f"{what}: driver asks for {action}")


def recovery_finding(base: Finding, action: str, reason: str) -> Finding:
    rung, degr = RECOVERY_ACTIONS[action]
    scope = Scope.NODE if rung is Rung.REBOOT_NODE else Scope.GPU
    return _with(base, rung=rung, scope=scope, degradations=degr, reason=reason,
                 hardware=rung >= Rung.RESET_GPU)
