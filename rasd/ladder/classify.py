"""Classification: one fault event -> the cheapest cure and the smallest scope (pure).

No I/O, no clock: what the history says (earlier Xids on the node, earlier downs of a link,
earlier retired-page counts) arrives in a ``Context`` built by the escalator. The result is a
``Finding``; escalate.py turns findings into decisions (recurrence, cures that did not hold,
superseding). Xids are classified in xids.py.
"""

from __future__ import annotations

from typing import Any, Callable

from rasd.ladder.findings import (
    COOLING, DISABLE_LINK, DRAIN, EXCLUDE_GPU, RECOVERY_ACTION_CODES, RECOVERY_ACTIONS,
    SDC_CHECK, STOP_P2P, TECHNICIAN, BadEvent, Context, Finding, XidSeen,
)
from rasd.ladder.findings import bool_field as _bool
from rasd.ladder.findings import int_field as _int
from rasd.ladder.settings import LadderSettings
from rasd.ladder.xids import classify_xid, parse_link, recovery_finding
from rasd.model import FaultEvent, FaultKind, Rung, Scope

__all__ = ["classify", "Context", "Finding", "XidSeen", "BadEvent"]


def classify(event: FaultEvent, ctx: Context, settings: LadderSettings) -> Finding | None:
    """The cure for one event, or None when the event needs no decision (a link coming up,
    an ECC report with zero uncorrected errors, a remedy or an SDC clearance: escalate.py
    handles the last two)."""
    fn = JUDGES.get(event.kind._value_)  # by value: an Enum member hashes slowly
    if fn is None:
        return None
    return fn(event, ctx, settings)



# --------------------------------------------------------------------------- other kinds


def _recovery_action(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    action = event.details.get("action")
    if isinstance(action, int) and not isinstance(action, bool):
        action = RECOVERY_ACTION_CODES.get(action, action)
    if not isinstance(action, str) or action not in RECOVERY_ACTIONS:
        raise BadEvent(f"action: {action!r} is not one of {', '.join(RECOVERY_ACTIONS)}")
    base = Finding(Rung.NONE, Scope.GPU, "recovery_action", "")
    return recovery_finding(base, action, f"NVML recovery action (field 230) asks for {action}")


# Findings are immutable: the ones that depend only on a small key are built once and shared
# (a fleet replay classifies millions of routine reports; building each costs more than judging
# it). Each cache is bounded: past the bound a finding is simply built again.
_CACHE_MAX = 4096
_CORRECTED: dict[int, Finding] = {}
_WITHIN_LIMITS: dict[tuple[int, int], Finding] = {}
_CRC_MONITOR: dict[tuple[int, int], Finding] = {}


def _cached(cache: dict[Any, Finding], key: Any, make: Callable[[], Finding]) -> Finding:
    f = cache.get(key)
    if f is None:
        f = make()
        if len(cache) < _CACHE_MAX:
            cache[key] = f
    return f


def _ecc(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    d = event.details
    unc = d.get("volatile_uncorrected", 0)
    if type(unc) is not int or unc < 0:  # (a well-formed count skips the call: replay speed)
        unc = _int(d, "volatile_uncorrected", 0)
    cor = d.get("volatile_corrected", 0)
    if type(cor) is not int or cor < 0:
        cor = _int(d, "volatile_corrected", 0)
    if unc > 0:
        return Finding(Rung.RESET_GPU, Scope.GPU, "ecc_uncorrected",
                       f"{unc} volatile uncorrected ECC error(s): reset the GPU",
                       degradations=(DRAIN,), hardware=True)
    if cor > 0:
        # (the cache asked first: no closure built for a count seen before)
        return _CORRECTED.get(cor) or _cached(_CORRECTED, cor, lambda: Finding(
            Rung.NONE, Scope.GPU, "ecc_corrected", f"{cor} corrected ECC error(s): monitor"))
    return None


def _remap(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    if _bool(event.details, "failure"):
        return Finding(Rung.RMA, Scope.GPU, "remap_failure",
                       "row remapping failed: the GPU is out of spare rows (RMA criterion)",
                       degradations=(EXCLUDE_GPU,), investigate=(TECHNICIAN,), hardware=True)
    if _bool(event.details, "pending"):
        return Finding(Rung.RESET_GPU, Scope.GPU, "remap_pending",
                       "row remap pending: drain, then reset the GPU at a convenient time",
                       degradations=(DRAIN,), hardware=True)
    return None


def _retired(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    sbe = _int(event.details, "single_bit", 0)
    dbe = _int(event.details, "double_bit", 0)
    if sbe + dbe >= s.retired_pages_limit:
        return Finding(Rung.RMA, Scope.GPU, "retired_pages",
                       f"{sbe + dbe} retired pages (limit {s.retired_pages_limit}): RMA",
                       degradations=(EXCLUDE_GPU,), investigate=(TECHNICIAN,), hardware=True)
    since = event.time_wall - s.retired_dbe_recent_seconds
    before = [n for t, n in ctx.retired_dbe if t < since]
    recent_new = dbe - (max(before) if before else 0)
    if dbe > s.retired_dbe_pages_limit and recent_new > s.retired_dbe_recent_limit:
        return Finding(Rung.RMA, Scope.GPU, "retired_pages",
                       f"{dbe} double-bit retired pages, {recent_new} in the last week: RMA",
                       degradations=(EXCLUDE_GPU,), investigate=(TECHNICIAN,), hardware=True)
    if dbe or sbe:
        return _cached(_WITHIN_LIMITS, (sbe, dbe), lambda: Finding(
            Rung.NONE, Scope.GPU, "retired_pages",
            f"{sbe} single-bit and {dbe} double-bit retired pages: within limits"))
    return None


def _nvlink(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    d = event.details
    link = event.link if event.link is not None else d.get("link")
    if type(link) is not int and (not isinstance(link, int) or isinstance(link, bool)) \
            or link < 0:
        raise BadEvent("link: an NVLink event needs the link number")
    state = d.get("state", "down")
    if state != "up" and state != "down":
        raise BadEvent(f"state: {state!r} is not up or down")
    # (each count checked in turn, as ``_int`` would, with the call only for an odd value)
    replay = d.get("replay_errors", 0)
    if type(replay) is not int or replay < 0:
        replay = _int(d, "replay_errors", 0)
    recovery = d.get("recovery_errors", 0)
    if type(recovery) is not int or recovery < 0:
        recovery = _int(d, "recovery_errors", 0)
    flit = d.get("crc_flit_errors", 0)
    if type(flit) is not int or flit < 0:
        flit = _int(d, "crc_flit_errors", 0)
    data = d.get("crc_data_errors", 0)
    if type(data) is not int or data < 0:
        data = _int(d, "crc_data_errors", 0)
    rate = d.get("rate_per_second")
    if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool)):
        raise BadEvent("rate_per_second: must be a number")
    if state == "down":
        downs = [t for t in ctx.link_downs if t >= event.time_wall - s.link_flap_window_seconds]
        if len(downs) + 1 >= s.link_flap_count:
            return Finding(Rung.RESET_GPU, Scope.LINK, "nvlink_flap",
                           f"link {link} went down {len(downs) + 1} times within "
                           f"{s.link_flap_window_seconds:g} s: disable it; technician",
                           link=link, degradations=(STOP_P2P, DISABLE_LINK),
                           investigate=(TECHNICIAN,), hardware=True)
        return Finding(Rung.RESET_GPU, Scope.LINK, "nvlink_down",
                       f"link {link} is down: stop peer-to-peer over it, reset the GPU when "
                       "convenient", link=link, degradations=(STOP_P2P,), hardware=True)
    if replay or recovery:
        return Finding(Rung.RESET_GPU, Scope.LINK, "nvlink_errors",
                       f"link {link}: {replay} replay and "
                       f"{recovery} recovery errors (DCGM fails on any): stop "
                       "peer-to-peer over it, reset the GPU when convenient",
                       link=link, degradations=(STOP_P2P,), hardware=True)
    crc = flit + data
    if crc:
        if rate is not None and rate >= s.nvlink_crc_fail_per_second:
            return Finding(Rung.RESET_GPU, Scope.LINK, "nvlink_crc",
                           f"link {link}: CRC errors at {rate:g}/s (limit "
                           f"{s.nvlink_crc_fail_per_second:g}/s): stop peer-to-peer over it, "
                           "reset the GPU when convenient",
                           link=link, degradations=(STOP_P2P,), hardware=True)
        return _CRC_MONITOR.get((link, crc)) or _cached(_CRC_MONITOR, (link, crc), lambda: Finding(
            Rung.NONE, Scope.LINK, "nvlink_crc",
            f"link {link}: {crc} CRC errors below the failure rate: monitor", link=link))
    return None


def _pcie(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    d = event.details
    count, lanes, gen = d.get("count"), d.get("lanes", 16), d.get("gen", 4)
    if type(count) is not int or type(lanes) is not int or type(gen) is not int \
            or count < 0 or lanes < 0 or gen < 0:
        count, lanes, gen = _int(d, "count"), _int(d, "lanes", 16), _int(d, "gen", 4)
    window = d.get("seconds")
    if window is None:
        window = (event.time_wall - ctx.pcie_last_time) if ctx.pcie_last_time is not None \
            else s.pcie_default_window_seconds
    window = max(float(window), 1.0)
    per_lane = (s.pcie_replay_per_lane_per_minute_gen5 if gen >= 5
                else s.pcie_replay_per_lane_per_minute_gen4)
    limit = lanes * per_lane
    per_minute = count * 60.0 / window
    if per_minute > limit:
        return Finding(Rung.NONE, Scope.GPU, "pcie_replay",
                       f"{per_minute:.1f} PCIe replays/min over the limit {limit:.1f} (Gen{gen} "
                       f"x{lanes}): a technician checks the slot and riser",
                       investigate=(TECHNICIAN,))
    return None


_THERMAL = Finding(Rung.NONE, Scope.GPU, "thermal",
                   "thermal slowdown: check the cooling", investigate=(COOLING,))


LOST_FAULT = "gpu_lost"  # the fault key of a lost GPU's decision


def _gpu_lost(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    # NVML's own words (GPU is lost, or why the GPU could not be opened) go with the decision
    why = event.details.get("reason")
    said = f" ({why})" if isinstance(why, str) and why else ""
    return Finding(Rung.REBOOT_NODE, Scope.NODE, LOST_FAULT,
                   f"GPU lost or fallen off the bus{said}: drain and reboot the node",
                   degradations=(DRAIN,), hardware=True)


def _thermal(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    return _THERMAL


def _sdc(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    verdict = event.details.get("verdict")
    if verdict == "confirmed":
        return Finding(Rung.RMA, Scope.GPU, "sdc",
                       "silent data corruption confirmed: exclude the GPU and send it back",
                       degradations=(EXCLUDE_GPU,), investigate=(TECHNICIAN,), hardware=True)
    if verdict in ("suspect", "inconclusive"):
        return Finding(Rung.NONE, Scope.GPU, "sdc",
                       f"silent data corruption {verdict}: exclude the GPU until the deep "
                       "check ends", degradations=(EXCLUDE_GPU,), investigate=(SDC_CHECK,))
    if verdict == "cleared":
        return None
    raise BadEvent(f"verdict: {verdict!r} is not suspect, confirmed, cleared or inconclusive")


def _nvswitch(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    """An NVSwitch SXid (the "gpu" is the switch's number in the log). Fatal: the fabric needs
    the node's GPUs and switches reset, so drain and reboot the node; non-fatal: monitor, and a
    technician looks at the switch when the same SXid keeps coming back."""
    code = _int(event.details, "sxid")
    message = event.details.get("message") or ""
    if not isinstance(message, str):
        raise BadEvent("message: must be text")
    link = parse_link(message)
    on = f" link {link}" if link is not None else ""
    text = message.lower()
    fatal = text.lstrip().startswith("fatal") or (" fatal" in text and "non-fatal" not in text)
    what = f"NVSwitch SXid {code}{on}"
    if fatal:
        return Finding(Rung.REBOOT_NODE, Scope.NODE, f"sxid:{code}",
                       f"{what}: fatal fabric error; drain and reset the node's GPUs and "
                       "switches (reboot)", degradations=(DRAIN,), hardware=True)
    key = f"sxid:{code}"
    seen = ctx.repeats.get(key, 0) + 1
    if seen > 1:
        return Finding(Rung.NONE, Scope.GPU, key, f"{what}: non-fatal, seen {seen} times: a "
                       "technician checks the switch and its cables", investigate=(TECHNICIAN,),
                       repeat_key=key)
    return Finding(Rung.NONE, Scope.GPU, key, f"{what}: non-fatal; monitor", repeat_key=key)


def _none(event: FaultEvent, ctx: Context, s: LadderSettings) -> Finding | None:
    return None


_BY_KIND: dict[FaultKind, Callable[[FaultEvent, Context, LadderSettings], Finding | None]] = {
    FaultKind.XID: classify_xid,
    FaultKind.ECC: _ecc,
    FaultKind.REMAP: _remap,
    FaultKind.RETIRED_PAGES: _retired,
    FaultKind.NVLINK: _nvlink,
    FaultKind.PCIE_REPLAY: _pcie,
    FaultKind.RECOVERY_ACTION: _recovery_action,
    FaultKind.GPU_LOST: _gpu_lost,
    FaultKind.THERMAL: _thermal,
    FaultKind.SDC: _sdc,
    FaultKind.REMEDY: _none,
    FaultKind.NVSWITCH: _nvswitch,
}
# each kind's classification, by the kind's value (the escalator calls them directly)
JUDGES: dict[str, Callable[[FaultEvent, Context, LadderSettings], Finding | None]] = {
    k.value: fn for k, fn in _BY_KIND.items()}
