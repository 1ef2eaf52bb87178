"""`rasd replay`: a timestamped event log through classification and escalation.

One JSON object a line: ``time`` (Unix seconds or RFC 3339 with an offset), ``kind``, ``gpu``,
optional ``link``, and the kind's fields (see FaultEvent). A line that does not parse, or whose
fields do not fit its kind, stops the replay with its line number: nothing is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from rasd.ladder.decision import Decision
from rasd.ladder.escalate import Escalator
from rasd.ladder.findings import BadEvent
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind
from rasd.store import Store

_REQUIRED = {
    FaultKind.XID: ("xid",),
    FaultKind.NVLINK: ("link",),
    FaultKind.PCIE_REPLAY: ("count",),
    FaultKind.RECOVERY_ACTION: ("action",),
    FaultKind.SDC: ("verdict",),
    FaultKind.REMEDY: ("action", "result"),
}


class ReplayError(ValueError):
    def __init__(self, line: int, why: str):
        self.line = line
        super().__init__(f"line {line}: {why}")


@dataclass(frozen=True, slots=True)
class Numbered:
    line: int
    event: FaultEvent


def parse_time(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("time: expected Unix seconds or an RFC 3339 timestamp")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("time: must be finite")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            raise ValueError(f"time: {value!r} is not RFC 3339 (e.g. 2025-01-31T12:00:00Z)") \
                from None
        if dt.tzinfo is None:
            raise ValueError(f"time: {value!r} has no UTC offset; add Z or +HH:MM")
        return dt.timestamp()
    raise ValueError("time: expected Unix seconds or an RFC 3339 timestamp")


def parse_line(text: str) -> FaultEvent:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    for key in ("time", "kind", "gpu"):
        if key not in obj:
            raise ValueError(f"missing {key!r}")
    t = parse_time(obj["time"])
    try:
        kind = FaultKind(obj["kind"])
    except ValueError:
        raise ValueError(f"kind: {obj['kind']!r} is not one of "
                         f"{', '.join(k.value for k in FaultKind)}") from None
    gpu = obj["gpu"]
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise ValueError(f"gpu: {gpu!r} is not a GPU index")
    link = obj.get("link")
    if link is not None and (isinstance(link, bool) or not isinstance(link, int) or link < 0):
        raise ValueError(f"link: {link!r} is not a link number")
    for key in _REQUIRED.get(kind, ()):
        if key not in obj:
            raise ValueError(f"missing {key!r} for kind {kind.value}")
    details = {k: v for k, v in obj.items() if k not in ("time", "kind", "gpu", "link")}
    if kind is FaultKind.NVLINK:
        details["link"] = link if link is not None else obj.get("link")
    return FaultEvent(t, gpu, kind, link, details)


def parse_lines(lines: Iterable[str]) -> list[Numbered]:
    out = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            out.append(Numbered(n, parse_line(text)))
        except ValueError as e:
            raise ReplayError(n, str(e)) from None
    # a log gathered from several sources may interleave: replay in time order (stable)
    out.sort(key=lambda x: x.event.time_wall)
    return out


def replay(events: Sequence[Numbered], settings: LadderSettings | None = None,
           store: Store | None = None) -> list[Decision]:
    """Every decision, in order, from a fresh escalator (and into ``store`` when given: each
    event with its step in one transaction)."""
    esc = Escalator(settings)
    out: list[Decision] = []
    for item in events:
        try:
            step = esc.feed(item.event)
        except BadEvent as e:
            raise ReplayError(item.line, str(e)) from None
        if store is not None:
            store.record_step(item.event, [d.to_dict() for d in step.opened],
                              [(c.decision.time_wall, c.decision.gpu, c.decision.link,
                                c.decision.fault, c.outcome, c.time_wall) for c in step.ended])
        out.extend(step.opened)
    return out
