"""The vocabulary of classification: findings, the history context, investigations, degradations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from rasd.model import RecoveryAction, Rung, Scope

# Investigations a decision may ask for.
SDC_CHECK = "sdc_check"
TECHNICIAN = "technician"
DIAGNOSTICS = "diagnostics"
COOLING = "cooling"
POWER_SMOOTHING = "power_smoothing"
SOFTWARE = "software_update"
APPLICATION = "application"
REPORT_BUG = "report_bug"

# Degradations that avoid or postpone a rung.
DRAIN = "drain"
STOP_P2P = "stop_p2p"
DISABLE_LINK = "disable_link"
EXCLUDE_GPU = "exclude_gpu"

# NVML field 230 / Xid 154 recovery actions (model.RecoveryAction) on the ladder.
_RECOVERY_RUNGS: Mapping[RecoveryAction, tuple[Rung, tuple[str, ...]]] = {
    RecoveryAction.NONE: (Rung.NONE, ()),
    RecoveryAction.GPU_RESET: (Rung.RESET_GPU, ()),
    RecoveryAction.NODE_REBOOT: (Rung.REBOOT_NODE, ()),
    RecoveryAction.DRAIN_P2P: (Rung.NONE, (STOP_P2P,)),
    RecoveryAction.DRAIN_AND_RESET: (Rung.RESET_GPU, (DRAIN,)),
    # the IMEX domain (multi-node NVLink memory sharing) needs recovering, not the GPU: stop
    # peer traffic until the domain's daemons have recovered it
    RecoveryAction.RECOVER_IMEX_DOMAIN: (Rung.NONE, (STOP_P2P,)),
    # a PCIe bus reset re-initialises the GPU like a GPU reset does, so it needs the GPU idle
    RecoveryAction.BUS_RESET: (Rung.RESET_GPU, (DRAIN,)),
    RecoveryAction.SYSTEM_REBOOT: (Rung.REBOOT_NODE, ()),
}
RECOVERY_ACTIONS: Mapping[str, tuple[Rung, tuple[str, ...]]] = {
    a.label: v for a, v in _RECOVERY_RUNGS.items()
}
RECOVERY_ACTION_CODES = {int(a): a.label for a in RecoveryAction}


class XidSeen(NamedTuple):
    """An earlier Xid on this node, as classification needs to know it. A named tuple, not a
    frozen dataclass: one is kept per Xid line of a replay, and a tuple is built in a fraction of
    the time."""

    time_wall: float
    gpu: int
    xid: int
    key: str | None = None  # Xid 13: "gpc<N>/tpc<M>" when the message names them
    burst: float | None = None  # when the burst this line belongs to began


_NO_REPEATS: Mapping[str, int] = MappingProxyType({})


class Context(NamedTuple):
    """What the history says, gathered by the escalator for one event (earlier events only).
    A named tuple, as ``XidSeen``: one is gathered for every event that reads the history."""

    recent_xids: tuple[XidSeen, ...] = ()  # node-wide, newest last
    link_downs: tuple[float, ...] = ()  # earlier downs of this event's link (Unix s)
    link_parity_hits: int = 0  # earlier Xid 74 ECC/parity reports on this event's link
    retired_dbe: tuple[tuple[float, int], ...] = ()  # earlier (time, double-bit page total)
    pcie_last_time: float | None = None  # earlier pcie_replay event of this GPU
    burst_start: float | None = None  # Xid: when this line's burst began (earlier lines of it
    # are this same occurrence, never a repeat)
    repeats: Mapping[str, int] = _NO_REPEATS  # earlier occurrences per repeat key on this
    # event's component ("if seen repeatedly" rules; a burst once)


@dataclass(frozen=True, slots=True)
class Finding:
    rung: Rung
    scope: Scope
    fault: str  # fault class key: same key on the same component = the same fault
    reason: str
    link: int | None = None
    investigate: tuple[str, ...] = ()
    degradations: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()
    xid: int | None = None
    rma_candidate: bool = False  # CONTACT_SUPPORT: RMA once recurrence or a diagnostic confirms
    uncatalogued: bool = False
    hardware: bool = False  # recurrence of this fault points at the hardware
    link_parity: bool = False  # Xid 74 ECC/parity bits: counted per link
    repeat_key: str | None = None  # an "if seen repeatedly" rule: occurrences counted per key


class BadEvent(ValueError):
    """An event whose details do not fit its kind (message says which field and why)."""


# --------------------------------------------------------------------------- helpers


def with_(f: Finding, **changes: Any) -> Finding:
    return replace(f, **changes)


def int_field(d: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = d.get(key, default)
    if type(v) is int and v >= 0:  # the common case, first (replay speed)
        return v
    if v is None:
        raise BadEvent(f"{key}: missing")
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise BadEvent(f"{key}: {v!r} is not a whole number")
    if v < 0:
        raise BadEvent(f"{key}: {v} must not be negative")
    return v


def bool_field(d: Mapping[str, Any], key: str) -> bool:
    v = d.get(key, False)
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0
    raise BadEvent(f"{key}: {v!r} is not true or false")
