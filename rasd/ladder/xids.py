"""Xid classification by the pinned catalog's buckets and workflows (pure).

Workflows that depend on history (13/31 repeats, 45 and 48 with companions, 74 repeats on a
link) read it from the ``Context``; messages are parsed for GPC/TPC, link and register fields.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, TypeVar

from rasd.ladder import catalog as cat
from rasd.ladder import nvlink5
from rasd.ladder.findings import (
    APPLICATION, DIAGNOSTICS, DISABLE_LINK, DRAIN, EXCLUDE_GPU, POWER_SMOOTHING,
    RECOVERY_ACTIONS, REPORT_BUG, SDC_CHECK, SOFTWARE, STOP_P2P,
    TECHNICIAN, BadEvent, Context, Finding,
)
from rasd.ladder.findings import int_field as _int
from rasd.ladder.findings import with_ as _with
from rasd.ladder.settings import LadderSettings
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


def _after_48(event: FaultEvent, ctx: Context, s: LadderSettings, f: Finding, what: str) -> Finding:
    """WORKFLOW_XID_48 read from the other side: the driver prints the double-bit error first and
    the row remap (63) or its failure (64) just after, so a 63/64 that follows a 48 on the same GPU
    turns the pair into "drain, then reset" (the 48's own finding saw no companion yet)."""
    since = event.time_wall - s.xid_companion_seconds
    if not any(x.gpu == event.gpu and x.xid == 48 and x.time_wall >= since for x in ctx.recent_xids):
        return f
    return _with(f, rung=max(f.rung, Rung.RESET_GPU), degradations=tuple(dict.fromkeys((*f.degradations, DRAIN))),
                 hardware=True, reason=f"{what} after Xid 48 on this GPU: drain, then reset the GPU")


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


# Xid 74 register bits (catalog's NVLink workflow): (register index, bits) per class.
_R74_PARITY = ((0, {4, 5}), (2, {0, 1, 2, 6}), (4, {18, 19, 21, 22, 24, 25, 27, 28}))
_R74_MECH = ((0, {8, 9, 12, 16, 17, 24, 28}),)
_R74_SI = ((0, {21, 22}),)
_R74_BENIGN = ((0, {0, 1, 20, 23, 30}), (3, {16, 17, 18}), (4, {20, 23, 26, 29}))
_R74_UNEXPECTED = ((2, {13}),)  # not expected in production: report at once
_R74_DIAG_IF_REPEATED = ((2, {16, 19}),)
_R74_BUG_IF_REPEATED = ((0, {27, 29}), (2, {17, 18}))
_R74_ALL = (_R74_PARITY, _R74_MECH, _R74_SI, _R74_BENIGN, _R74_UNEXPECTED,
            _R74_DIAG_IF_REPEATED, _R74_BUG_IF_REPEATED)
# which registers the catalog's decode covers, per architecture (Xid 74 is A100/H100 only):
# "the first, third, fourth and fifth registers are valid for Hopper"; on Ampere only the first
# is decoded; an unknown architecture is decoded as Hopper, the current generation of the Xid
_R74_VALID = {"hopper": frozenset({0, 2, 3, 4}), "ampere": frozenset({0}),
              "blackwell": frozenset()}


_RegSpec = tuple[tuple[int, set[int]], ...]


def _bits(regs: tuple[int, ...], spec: _RegSpec) -> bool:
    return any(i < len(regs) and any(regs[i] >> b & 1 for b in bits) for i, bits in spec)


def _unexplained(regs: tuple[int, ...]) -> int:
    """Register bits the catalog does not explain (reported as a bug)."""
    mask = [0] * len(regs)
    for spec in _R74_ALL:
        for i, bits in spec:
            if i < len(regs):
                for b in bits:
                    mask[i] |= 1 << b
    return sum(bin(r & ~m).count("1") for r, m in zip(regs, mask))


def _valid_registers(regs: tuple[int, ...], arch: object) -> tuple[int, ...]:
    valid = _R74_VALID.get(str(arch).lower() if arch else "hopper", _R74_VALID["hopper"])
    return tuple(r if i in valid else 0 for i, r in enumerate(regs))


def _wf_74(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
           message: str | None) -> Finding:
    link = event.link if event.link is not None else parse_link(message)
    scope = Scope.LINK if link is not None else Scope.GPU
    base = _with(base, link=link, scope=scope)
    on = f" on link {link}" if link is not None else ""
    p2p = (STOP_P2P,) if link is not None else (DRAIN,)
    arch = event.details.get("architecture")
    regs = parse_registers(message)
    if regs and arch is not None and str(arch).lower() == "blackwell":
        what += " (no register decode: Xid 74 is an Ampere/Hopper report)"
    regs = _valid_registers(regs, arch) if regs else regs
    if not regs or not any(regs):
        return _with(base, rung=Rung.RESET_GPU, degradations=p2p, hardware=True,
                     reason=f"{what}{on}: stop peer-to-peer over it, reset the GPU when convenient")
    if _bits(regs, _R74_PARITY):
        base = _with(base, link_parity=True)
        if ctx.link_parity_hits + 1 > s.nvlink_parity_repeats:
            return _with(base, rung=Rung.RESET_GPU, degradations=p2p + (DISABLE_LINK,),
                         investigate=(TECHNICIAN,), hardware=True,
                         reason=f"{what}{on}: ECC/parity error seen "
                         f"{ctx.link_parity_hits + 1} times: link hardware; disable the link")
        return _with(base, rung=Rung.RESET_GPU, degradations=p2p, hardware=True,
                     reason=f"{what}{on}: ECC/parity error; reset the GPU when convenient")
    if _bits(regs, _R74_MECH):
        seen = ctx.repeats.get("xid74:mechanical", 0) + 1
        inv = (TECHNICIAN, DIAGNOSTICS) if seen > 1 else (TECHNICIAN,)
        return _with(base, rung=Rung.RESET_GPU, degradations=p2p, investigate=inv,
                     hardware=True, repeat_key="xid74:mechanical",
                     reason=f"{what}{on}: possible link hardware; check and reseat the link's "
                     + ("connections; it persists: run diagnostics" if seen > 1 else
                        "connections, diagnostics if it persists"))
    if _bits(regs, _R74_SI):
        return _with(base, rung=Rung.RESET_GPU, degradations=p2p,
                     investigate=(TECHNICIAN, DIAGNOSTICS), hardware=True,
                     reason=f"{what}{on}: marginal signal integrity; check connections, diagnostics")
    if _unexplained(regs) or _bits(regs, _R74_UNEXPECTED):
        return _with(base, rung=Rung.RESET_GPU, degradations=p2p, investigate=(REPORT_BUG,),
                     reason=f"{what}{on}: register bits the catalog does not expect; report it")
    if _bits(regs, _R74_DIAG_IF_REPEATED):
        return _if_repeated(base, ctx, "xid74:diag", (DIAGNOSTICS, REPORT_BUG),
                            f"{what}{on}", "run field diagnostics and report it")
    if _bits(regs, _R74_BUG_IF_REPEATED):
        return _if_repeated(base, ctx, "xid74:bug", (REPORT_BUG,), f"{what}{on}", "report it")
    return _with(base, reason=f"{what}{on}: secondary or threshold bits only; continue, monitor")


def _if_repeated(base: Finding, ctx: Context, key: str, investigate: tuple[str, ...],
                 what: str, todo: str) -> Finding:
    """The catalog's "if seen repeatedly": occurrences counted per link (a burst once)."""
    seen = ctx.repeats.get(key, 0) + 1
    if seen > 1:
        return _with(base, investigate=investigate, repeat_key=key,
                     reason=f"{what}: seen {seen} times: {todo}")
    return _with(base, repeat_key=key, reason=f"{what}: first time; {todo} if it repeats")


# the catalog's investigatory buckets of the 144-150 decode, as rasd's investigations
_NVLINK5_INVESTIGATE: Mapping[str, tuple[str, ...]] = {
    "CONTACT_SUPPORT": (DIAGNOSTICS,),
    "INVESTIGATE_LINK_SI": (TECHNICIAN,),
    "INVESTIGATE_LINK_SI_AND_CABLES": (TECHNICIAN,),
    "INVESTIGATE_PEER_DEVICE": (TECHNICIAN,),
    "INVESTIGATE_HOST": (TECHNICIAN,),
    "INVESTIGATE_SW_USER": (SOFTWARE,),
    "INVESTIGATE_SW/USER": (SOFTWARE,),
    "INVESTIGATE_SW_USER_LINK_SI": (SOFTWARE, TECHNICIAN),
}


def _wf_nvlink5(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
                message: str | None) -> Finding:
    link = event.link if event.link is not None else parse_link(message)
    scope = Scope.LINK if link is not None else Scope.GPU
    on = f" on link {link}" if link is not None else ""
    base = _with(base, link=link, scope=scope)
    arch = event.details.get("architecture")
    row = None
    if arch is None or str(arch).lower() == "blackwell":  # NVLink5: Blackwell's decode
        row = nvlink5.decode(base.xid or 0, parse_registers(message))
    if row is not None:
        return _nvlink5_row(event, ctx, s, base, f"{what}{on} [{row.unit}, {row.severity}]", row,
                            link)
    text = (message or "").lower()
    fatal = re.search(r"\bfatal\b", text) is not None and "nonfatal" not in text \
        and "non-fatal" not in text
    if fatal:
        return _with(base, rung=Rung.RESET_GPU, hardware=True,
                     degradations=(STOP_P2P,) if link is not None else (DRAIN,),
                     reason=f"{what}{on}: fatal; reset the GPU")
    return _with(base, investigate=(DIAGNOSTICS,) if message else (),
                 reason=f"{what}{on}: non-fatal (or not decoded); monitor")


def _nvlink5_row(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
                 row: nvlink5.Nvlink5Row, link: int | None) -> Finding:
    inv = _NVLINK5_INVESTIGATE.get(row.investigatory, ())
    since = event.time_wall - s.xid_companion_seconds
    if row.immediate == "RESET_GPU":
        return _with(base, rung=Rung.RESET_GPU, hardware=True, investigate=inv,
                     degradations=(STOP_P2P,) if link is not None else (DRAIN,),
                     reason=f"{what}: reset the GPU")
    if row.immediate == "XID_154_EVAL":
        # with an Xid 154 its recovery action decides; without one, restart the application
        if any(x.gpu == event.gpu and x.xid == 154 and x.time_wall >= since
               for x in ctx.recent_xids):
            return _with(base, reason=f"{what}: the accompanying Xid 154 decides")
        return _with(base, rung=Rung.RESTART_PROCESS, investigate=inv,
                     reason=f"{what}: no Xid 154 with it; restart the application")
    if row.investigatory == "CHECK_NVLINK_FAILURE_FLOW":
        downs = [t for t in ctx.link_downs if t >= event.time_wall - 30.0]
        if downs:
            return _with(base, reason=f"{what}: a link went down just before; a by-product")
        return _with(base, investigate=(REPORT_BUG,),
                     reason=f"{what}: no link went down in the last 30 s; report it")
    if row.investigatory == "IGNORE":
        return _with(base, reason=f"{what}: no action")
    return _with(base, investigate=inv if "Fatal" in row.severity else (),
                 reason=f"{what}: continue; " + (
                     f"{row.investigatory.lower().replace('_', ' ')}"
                     if row.investigatory else "monitor"))


def _wf_154(event: FaultEvent, ctx: Context, s: LadderSettings, base: Finding, what: str,
            message: str | None) -> Finding:
    action = parse_recovery_text(message)
    if action is None:
        return _with(base, reason=f"{what}: the message names no recovery action; the "
                     "accompanying Xid decides")
    return recovery_finding(base, action, f"{what}: driver asks for {action}")


_Workflow = Callable[[FaultEvent, Context, LadderSettings, Finding, str, "str | None"], Finding]
_XID_WORKFLOWS: dict[int, _Workflow] = {13: _wf_13_31, 31: _wf_13_31, 45: _wf_45, 48: _wf_48, 74: _wf_74,
                  94: _wf_94_95, 95: _wf_94_95,
                  **{c: _wf_nvlink5 for c in range(144, 151)}, 154: _wf_154}


def recovery_finding(base: Finding, action: str, reason: str) -> Finding:
    rung, degr = RECOVERY_ACTIONS[action]
    scope = Scope.NODE if rung is Rung.REBOOT_NODE else Scope.GPU
    return _with(base, rung=rung, scope=scope, degradations=degr, reason=reason,
                 hardware=rung >= Rung.RESET_GPU)


