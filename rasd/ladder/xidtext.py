"""What an Xid message says, as the catalog's workflows need it (pure).

The driver's text after the code names the failing unit: GPC/TPC/SM for an SM exception (Xid 13),
the channel and engine and the MMU fault type (31, 43, 45), the reset flags of a contained or
uncontained memory error (94/95), the earlier Xid that caused a channel teardown (45), the NVLink
link and unit (74, 144-150), the register dump (74) and the driver's recovery action (154).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from rasd.ladder.findings import RECOVERY_ACTION_CODES

# Xid 154's recovery-action names as the driver prints them.
XID154_TEXT = {"none": "none", "drain p2p": "drain_p2p", "drain and reset": "drain_and_reset",
                "gpu reset required": "gpu_reset", "node reboot required": "node_reboot"}

_GPC_TPC = re.compile(r"GPC\s*(\d+)\s*,\s*TPC\s*(\d+)(?:\s*,\s*SM\s*(\d+))?", re.I)
_LINK = re.compile(r"\blink\s*[:#]?\s*(\d+)", re.I)
_REGS = re.compile(r"\(\s*(0x[0-9a-fA-F]+(?:[\s,]+0x[0-9a-fA-F]+){1,7})\s*\)")
_REC154 = re.compile(r"to\s+0x([0-9a-fA-F]+)\s*\(([^)]*)\)", re.I)
_CHANNEL = re.compile(r"\b(?:ChID|Ch|channel|chid)\s*[:=]?\s*(?:0x)?([0-9a-fA-F]+)\b")
_ENGINE = re.compile(r"\bENGINE\s+([A-Z][A-Z0-9_]*)")
_ENGMASK = re.compile(r"\bengmask\s+(?:0x)?([0-9a-fA-F]+)", re.I)
_FAULT_TYPE = re.compile(r"\b(FAULT_[A-Z_]+)")
_ACCESS = re.compile(r"\b(ACCESS_TYPE_[A-Z_]+)")
_RST = re.compile(r"(?<![-\w])RST:\s*(Yes|No)", re.I)
_DRST = re.compile(r"\bD-RST:\s*(Yes|No)", re.I)
_CAUSE = re.compile(r"previous\s+Xid\s*(\d+)|caused\s+by\s+Xid\s*(\d+)", re.I)
_UNIT = re.compile(r"^\s*([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b")
_NVLINK5_UNITS = {144: "SAW", 145: "RLW", 146: "TLW", 147: "TREX", 148: "NVLPW", 149: "NETIR",
                  150: "MSE"}


@dataclass(frozen=True, slots=True)
class XidText:
    """Fields one Xid message carries (None where it does not say)."""

    gpc: int | None = None
    tpc: int | None = None
    sm: int | None = None
    channel: int | None = None
    engine: str | None = None
    mmu_fault: str | None = None  # e.g. "FAULT_PDE ACCESS_TYPE_VIRT_READ"
    reset_required: bool | None = None  # Xid 94/95 "RST: Yes"
    drain_and_reset: bool | None = None  # Xid 94/95 "D-RST: Yes"
    caused_by: int | None = None  # Xid 45: "... previous Xid N"
    link: int | None = None
    unit: str | None = None  # NVLink unit or sub-component (RLW, RLW_REMAP, ...)
    registers: tuple[int, ...] | None = None
    recovery_action: str | None = None  # Xid 154

    def summary(self) -> str:
        """The fields that name where it happened, for a decision's reason."""
        parts = []
        if self.gpc is not None:
            parts.append(f"GPC {self.gpc}, TPC {self.tpc}" + (f", SM {self.sm}"
                                                             if self.sm is not None else ""))
        if self.engine:
            parts.append(f"engine {self.engine}")
        if self.mmu_fault:
            parts.append(self.mmu_fault)
        if self.channel is not None:
            parts.append(f"channel {self.channel:#x}")
        if self.unit:
            parts.append(f"unit {self.unit}")
        return ", ".join(parts)


@functools.lru_cache(maxsize=4096)  # one fault's burst repeats its lines
def decode(code: int, message: str | None) -> XidText:
    text = message or ""
    if not text:
        return XidText(unit=_NVLINK5_UNITS.get(code))
    gm = _GPC_TPC.search(text)
    cm = _CHANNEL.search(text)
    em = _ENGINE.search(text) or _ENGMASK.search(text)
    ft = _FAULT_TYPE.search(text)
    ac = _ACCESS.search(text)
    mmu = " ".join(x.group(1) for x in (ft, ac) if x) or None
    rst = _RST.search(text)
    drst = _DRST.search(text)
    cause = _CAUSE.search(text)
    unit = _NVLINK5_UNITS.get(code)
    um = _UNIT.match(text)
    if um and code in _NVLINK5_UNITS:
        unit = um.group(1)
    engine = None
    if em is not None:
        engine = em.group(1) if em.re is _ENGINE else f"mask {em.group(1)}"
    return XidText(
        gpc=int(gm.group(1)) if gm else None, tpc=int(gm.group(2)) if gm else None,
        sm=int(gm.group(3)) if gm and gm.group(3) else None,
        channel=int(cm.group(1), 16) if cm else None, engine=engine, mmu_fault=mmu,
        reset_required=rst.group(1).lower() == "yes" if rst else None,
        drain_and_reset=drst.group(1).lower() == "yes" if drst else None,
        caused_by=int(cause.group(1) or cause.group(2)) if cause else None,
        link=parse_link(text), unit=unit, registers=parse_registers(text),
        recovery_action=parse_recovery_text(text) if code == 154 else None)


def parse_gpc_tpc(message: str | None) -> str | None:
    if type(message) is str:
        return _gpc_tpc(message)
    if not isinstance(message, str):  # None, or a log line's field that is not text (the
        return None  # classification refuses that event by name; nothing to read here)
    m = _GPC_TPC.search(message)
    return f"gpc{m.group(1)}/tpc{m.group(2)}" if m else None


def parse_link(message: str | None) -> int | None:
    if type(message) is str:
        return _link(message)
    if not isinstance(message, str):  # (as parse_gpc_tpc)
        return None
    m = _LINK.search(message)
    return int(m.group(1)) if m else None


# A fleet's driver lines repeat a few hundred message texts millions of times: each text is
# searched once (bounded caches; the functions are pure).
@functools.lru_cache(maxsize=4096)
def _gpc_tpc(message: str) -> str | None:
    m = _GPC_TPC.search(message)
    return f"gpc{m.group(1)}/tpc{m.group(2)}" if m else None


@functools.lru_cache(maxsize=4096)
def _link(message: str) -> int | None:
    m = _LINK.search(message)
    return int(m.group(1)) if m else None


def parse_registers(message: str | None) -> tuple[int, ...] | None:
    m = _REGS.search(message or "")
    if not m:
        return None
    return tuple(int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]+", m.group(1)))


def parse_recovery_text(message: str | None) -> str | None:
    """Xid 154's "... changed from 0x0 (None) to 0x2 (Node Reboot Required)" -> "node_reboot"."""
    m = _REC154.search(message or "")
    if m:
        name = XID154_TEXT.get(m.group(2).strip().lower())
        if name:
            return name
        return RECOVERY_ACTION_CODES.get(int(m.group(1), 16))
    return None


def architecture(gpu_name: str | None) -> str | None:
    """The GPU architecture from NVML's product name (register decodes differ by it)."""
    name = (gpu_name or "").upper()
    for arch, marks in (("blackwell", ("B100", "B200", "B300", "GB200", "GB300")),
                        ("hopper", ("H100", "H200", "H800", "H20", "GH200")),
                        ("ampere", ("A100", "A800", "A30", "A40", "A10"))):
        if any(m in name for m in marks):
            return arch
    return None
