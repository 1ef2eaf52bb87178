"""The catalog's workflows for the NVLink Xids (pure): 74 by its error registers (parity,
mechanical, signal integrity, benign and unexpected bits, per architecture; repeats counted per
link), 144-150 by the NVLink5 decode on Blackwell (nvlink5.py) or the message's fatal/non-fatal
word elsewhere. xids.py dispatches to them.
"""

from __future__ import annotations

import re
from typing import Mapping

from rasd.ladder import nvlink5
from rasd.ladder.findings import (
    DIAGNOSTICS, DISABLE_LINK, DRAIN, REPORT_BUG, SOFTWARE, STOP_P2P, TECHNICIAN, Context, Finding,
)
from rasd.ladder.findings import with_ as _with
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xidtext import parse_link, parse_registers
from rasd.model import FaultEvent, Rung, Scope


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
