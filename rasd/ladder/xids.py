"""Xid classification by the pinned catalog's buckets and workflows (pure).

Workflows that depend on history (13/31 repeats, 45 and 48 with companions, 74 repeats on a
link) read it from the ``Context``; messages are parsed for GPC/TPC, link and register fields.
This module classifies by bucket, keeps the findings that need no history, and dispatches to the
workflows: xidflows.py (13/31, 45, 48, 63/64 after a 48, 94/95, 154) and xidlinks.py (the NVLink
Xids, 74 and 144-150).
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from rasd.ladder import catalog as cat
from rasd.ladder.findings import (
    APPLICATION, DIAGNOSTICS, DRAIN, POWER_SMOOTHING, REPORT_BUG, SOFTWARE, TECHNICIAN, BadEvent,
    Context, Finding,
)
from rasd.ladder.findings import int_field as _int
from rasd.ladder.findings import with_ as _with
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xidflows import (
    _after_48, _repeat_flags, _wf_13_31, _wf_45, _wf_48, _wf_94_95, _wf_154, recovery_finding,
)
from rasd.ladder.xidlinks import _wf_74, _wf_nvlink5
from rasd.ladder.xidtext import (
    decode, parse_gpc_tpc, parse_link, parse_recovery_text, parse_registers,
)
from rasd.model import FaultEvent, Rung, Scope

__all__ = ["classify_xid", "known_static", "known_repeat", "known_after_48", "decode", "parse_gpc_tpc", "parse_link", "parse_recovery_text",
           "parse_registers", "recovery_finding"]

APP_BUCKETS = frozenset({"CHECK_APP/CUDA", "INVESTIGATE_SW", "XID_137_FLOW"})

# Xids 162-172: no bucket in the pinned revision, so rasd's own rule (rung, investigations).
UNBUCKETED: Mapping[int, tuple[Rung, tuple[str, ...], str]] = {
    162: (Rung.NONE, (POWER_SMOOTHING,), "power-smoothing circuitry back in service"),
    163: (Rung.NONE, (POWER_SMOOTHING,), "power smoothing unavailable until it re-engages"),
    164: (Rung.NONE, (POWER_SMOOTHING, TECHNICIAN), "plan a replacement of the smoothing circuitry"),
    165: (Rung.NONE, (POWER_SMOOTHING, TECHNICIAN), "power smoothing gone for good: service the board"),
    166: (Rung.EXCEPTION, (SOFTWARE,), "confidential-computing setup order problem"),
    167: (Rung.REBOOT_NODE, (DIAGNOSTICS,), "PCIe fatal timeout: the GPU needs the node rebooted"),
    168: (Rung.NONE, (SOFTWARE,), "enable ECC (row remapping) or reboot to shift the protected region"),
    169: (Rung.RESET_GPU, (), "micro-controller halt, as Xid 62"),
    170: (Rung.EXCEPTION, (SOFTWARE,), "confidential-computing interrupt"),
    171: (Rung.NONE, (), "detail of an Xid 48; the Xid 48 decides"),
    172: (Rung.NONE, (), "detail of an Xid 48; the Xid 48 decides"),
}


# Codes whose catalog entry asks for support once the reset or reboot it prescribes is done
# (investigatory CONTACT_SUPPORT after RESET_GPU / RESTART_*), and 119/120, whose trigger text
# says to follow the debug guidelines if the error comes back after a power cycle: diagnostics.
_SUPPORT_AFTER_REMEDY = frozenset(
    e.code for e in cat.XIDS.values()
    if e.immediate in (cat.RESET_GPU, cat.RESTART_BM, cat.RESTART_VM, cat.CHECK_MECHANICALS)
    and e.investigatory == cat.CONTACT_SUPPORT) | {119, 120}


# Workflows that read the history; every other Xid's finding follows from the code, the message,
# the link and the architecture alone, so it is computed once and kept (a replay sees the same
# lines again and again).
CONTEXTUAL = frozenset({13, 31, 45, 48, 63, 64, 74, *range(144, 151)})
_CACHE_SIZE = 8192
K = TypeVar("K")
V = TypeVar("V")
_static: dict[tuple[int, str | None, int | None, object], tuple[LadderSettings, Finding]] = {}
# Xid 13 and 31 read the history only as "repeated on this GPU?" and "seen on other GPUs?"
_REPEATS = frozenset({13, 31})
_repeat_static: dict[tuple[int, str | None, bool, bool], tuple[LadderSettings, Finding]] = {}
# Xid 63/64 read the history only to see whether an Xid 48 came just before
_AFTER_48 = frozenset({63, 64})
_after_48_static: dict[tuple[int, str | None], tuple[LadderSettings, Finding, str]] = {}


def known_static(code: int, message: str | None, link: int | None, architecture: object,
                 s: LadderSettings) -> Finding | None:
    """The kept finding of an Xid outside the workflows that read history (``CONTEXTUAL``:
    its code, message text or None, link and architecture decide it), or None: then
    ``classify_xid`` with the history's context judges it. Lets the escalator skip gathering a
    context that would not be read."""
    try:
        hit = _static.get((code, message, link, architecture))
    except TypeError:  # an architecture that is not text (a list): classify_xid refuses it
        return None
    if hit is not None and hit[0] is s:
        return hit[1]
    return None


def known_repeat(code: int, message: str | None, same_gpu: bool, other_gpus: bool,
                 s: LadderSettings) -> Finding | None:
    """Xid 13 or 31's kept finding for its two answers from the history (``_repeat_flags``:
    repeated on this GPU, seen on other GPUs), or None: then ``classify_xid`` judges it. Lets the
    escalator ask the history those two questions without gathering a whole context."""
    hit = _repeat_static.get((code, message, same_gpu, other_gpus))
    if hit is not None and hit[0] is s:
        return hit[1]
    return None


def known_after_48(code: int, message: str | None, s: LadderSettings) -> Finding | None:
    """Xid 63 or 64's kept finding when no Xid 48 came just before it on the GPU, or None: then
    ``classify_xid`` judges it. (The escalator asks the history about the Xid 48 itself.)"""
    hit = _after_48_static.get((code, message))
    if hit is not None and hit[0] is s:
        return hit[1]
    return None


def classify_xid(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding:
    d = event.details
    code = _int(d, "xid")
    message = d.get("message")
    if message is not None and not isinstance(message, str):
        raise BadEvent("message: must be text")
    arch = d.get("architecture")
    if arch is not None and not isinstance(arch, str):
        raise BadEvent(f"architecture: {arch!r} is not text (ampere, hopper or blackwell)")
    if code in _REPEATS:  # the history enters only as two yes/no answers: cache on them
        rkey = (code, message, *_repeat_flags(code, message, event, ctx, s))
        rhit = _repeat_static.get(rkey)
        if rhit is not None and rhit[0] is s:
            return rhit[1]
        return _keep(_repeat_static, rkey, (s, _classify(code, message, event, ctx, s)))[1]
    if code in _AFTER_48:  # the history enters only in the last step: keep what comes before
        akey = (code, message)
        ahit = _after_48_static.get(akey)
        if ahit is None or ahit[0] is not s:
            ahit = _keep(_after_48_static, akey, (s, *_bucketed(code, message, s)))
        return _after_48(event, ctx, s, ahit[1], ahit[2])
    if code in CONTEXTUAL:
        return _classify(code, message, event, ctx, s)
    key = (code, message, event.link, arch)
    hit = _static.get(key)
    if hit is not None and hit[0] is s:
        return hit[1]
    return _keep(_static, key, (s, _classify(code, message, event, ctx, s)))[1]


def _keep(cache: dict[K, V], key: K, value: V) -> V:
    """Store a classification in one of the bounded caches above (emptied when full) and return it."""
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _classify(code: int, message: str | None, event: FaultEvent, ctx: Context,
              s: LadderSettings) -> Finding:
    entry = cat.lookup(code)
    fault = f"xid:{code}"
    if entry is None:
        return Finding(Rung.RESTART_PROCESS, Scope.GPU, fault,
                       f"Xid {code} is not in the pinned catalog: restart the application, keep "
                       "the raw code", xid=code, uncatalogued=True, investigate=(REPORT_BUG,))
    base = Finding(Rung.NONE, Scope.GPU, fault, "", xid=code, buckets=entry.buckets)
    text = decode(code, message)
    where = text.summary()
    what = f"Xid {code} ({entry.description}{'; ' + where if where else ''})"
    special = _XID_WORKFLOWS.get(code)
    if special is not None:
        return special(event, ctx, s, base, what, message)
    if code in UNBUCKETED:
        rung, inv, why = UNBUCKETED[code]
        scope = Scope.NODE if rung is Rung.REBOOT_NODE else Scope.GPU
        return _with(base, rung=rung, scope=scope, investigate=inv,
                     reason=f"{what}: no bucket in the pinned catalog; {why}",
                     hardware=rung >= Rung.RESET_GPU)
    f = _support(code, _by_bucket(code, entry, s, base, what))
    if code in _AFTER_48:
        f = _after_48(event, ctx, s, f, what)
    return f


def _support(code: int, f: Finding) -> Finding:
    if code in _SUPPORT_AFTER_REMEDY and DIAGNOSTICS not in f.investigate:
        return _with(f, investigate=f.investigate + (DIAGNOSTICS,),
                     reason=f.reason + "; diagnostics, and contact support if it persists")
    return f


def _bucketed(code: int, message: str | None, s: LadderSettings) -> tuple[Finding, str]:
    """Xid 63/64 by its bucket, before the history is read (``_classify`` without the last
    step), and the text that names it."""
    entry = cat.lookup(code)
    assert entry is not None and code not in _XID_WORKFLOWS and code not in UNBUCKETED
    base = Finding(Rung.NONE, Scope.GPU, f"xid:{code}", "", xid=code, buckets=entry.buckets)
    where = decode(code, message).summary()
    what = f"Xid {code} ({entry.description}{'; ' + where if where else ''})"
    return _support(code, _by_bucket(code, entry, s, base, what)), what


def _by_bucket(code: int, entry: cat.XidEntry, s: LadderSettings, base: Finding,
               what: str) -> Finding:
    imm = entry.immediate
    if imm == cat.IGNORE:
        app = code in s.app_visible() or entry.investigatory in APP_BUCKETS
        rung = Rung.EXCEPTION if app else Rung.NONE
        inv = (APPLICATION,) if app else ()
        why = "the application sees an error it can handle" if app else "monitor only"
        return _with(base, rung=rung, investigate=inv, reason=f"{what}: {why}")
    if imm == cat.RESTART_APP:
        return _with(base, rung=Rung.RESTART_PROCESS, reason=f"{what}: restart the application")
    if imm == cat.RESET_GPU:
        return _with(base, rung=Rung.RESET_GPU, degradations=(DRAIN,), hardware=True,
                     reason=f"{what}: drain the GPU, then reset it")
    if imm in (cat.RESTART_VM, cat.RESTART_BM):
        return _with(base, rung=Rung.REBOOT_NODE, scope=Scope.NODE, hardware=True,
                     degradations=(DRAIN,), reason=f"{what}: drain and reboot the node")
    if imm == cat.CHECK_MECHANICALS:
        return _with(base, rung=Rung.REBOOT_NODE, scope=Scope.NODE, hardware=True,
                     degradations=(DRAIN,), investigate=(TECHNICIAN,),
                     reason=f"{what}: reboot the node; a technician checks seating and power cables")
    if imm == cat.UPDATE_SWFW:
        return _with(base, investigate=(SOFTWARE,),
                     reason=f"{what}: software or firmware mismatch; update, no hardware rung")
    if imm == cat.CHECK_UVM:
        return _with(base, reason=f"{what}: bare metal without vGPU/UVM: monitor only")
    # CONTACT_SUPPORT: the GPU is suspect, but one report does not send it back
    return _with(base, rung=Rung.RESET_GPU, degradations=(DRAIN,), investigate=(DIAGNOSTICS,),
                 rma_candidate=True, hardware=True,
                 reason=f"{what}: reset the GPU and run diagnostics; RMA if it recurs")


_Workflow = Callable[[FaultEvent, Context, LadderSettings, Finding, str, "str | None"], Finding]
_XID_WORKFLOWS: dict[int, _Workflow] = {13: _wf_13_31, 31: _wf_13_31, 45: _wf_45, 48: _wf_48, 74: _wf_74,
                  94: _wf_94_95, 95: _wf_94_95,
                  **{c: _wf_nvlink5 for c in range(144, 151)}, 154: _wf_154}
