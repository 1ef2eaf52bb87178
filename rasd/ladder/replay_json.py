"""A JSON-lines event log read for a replay: one event object a line (``time`` as Unix seconds
or RFC 3339 with an offset, ``kind``, ``gpu``, optional ``link`` and ``host``, and the kind's
fields), each checked and made a fault event; a line that does not parse stops the replay with
its line number.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, cast

from rasd.ladder.replay_input import Numbered, ReadStats, ReplayError
from rasd.model import FaultEvent, FaultKind

_REQUIRED = {
    FaultKind.XID: ("xid",),
    FaultKind.NVLINK: ("link",),
    FaultKind.PCIE_REPLAY: ("count",),
    FaultKind.RECOVERY_ACTION: ("action",),
    FaultKind.SDC: ("verdict",),
    FaultKind.REMEDY: ("action", "result"),
    FaultKind.NVSWITCH: ("sxid",),
}


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


_loads: Callable[[str], Any]
try:  # orjson parses an event line about three times faster than the standard library
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - a dependency; the standard library still works
    _loads = json.loads

_KINDS = {k.value: k for k in FaultKind}
_NVLINK = FaultKind.NVLINK
_MISSING = object()
_REQUIRED_BY_VALUE = {k.value: v for k, v in _REQUIRED.items()}  # an enum hashes in Python
# kind's value -> (kind, its one required field or ""), for the kinds with at most one other
# than the link: a line of one of them with no link key has little more to check than its
# top-level fields (the kind and its field in one look-up)
_ONE_FIELD = {k.value: (k, _REQUIRED.get(k, ("",))[0]) for k in FaultKind
              if len(_REQUIRED.get(k, ())) <= 1 and _REQUIRED.get(k, ("",))[0] != "link"}


def parse_object(obj: Any) -> tuple[FaultEvent, str]:
    """One decoded JSON object -> (event, host). The object is consumed: what is left of it
    becomes the details."""
    # The exact-type test is the cheap one, true for every line json and orjson decode; a dict
    # subclass (another decoder's) is checked only when it fails.
    if type(obj) is not dict and not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    # the top-level keys come out of the object, which becomes the details (cheaper than a copy)
    pop = obj.pop
    t = pop("time", _MISSING)
    kind_value = pop("kind", _MISSING)
    gpu = pop("gpu", _MISSING)
    # (a well-formed line passes one test: a finite float time, a known kind, a GPU index; any
    # other is looked at field by field below, for its error or its conversion)
    kind = _KINDS.get(kind_value) if type(kind_value) is str else None
    if type(t) is not float or t - t != 0.0 or kind is None or type(gpu) is not int or gpu < 0:
        if t is _MISSING or kind_value is _MISSING or gpu is _MISSING:
            raise ValueError("missing " + repr("time" if t is _MISSING else "kind"
                                               if kind_value is _MISSING else "gpu"))
        if type(t) is not float or t - t != 0.0:  # (not a finite float: NaN and inf give NaN)
            t = parse_time(t)  # a float from here on
        if kind is None:
            raise ValueError(f"kind: {kind_value!r} is not one of "
                             f"{', '.join(k.value for k in FaultKind)}")
        if type(gpu) is not int or gpu < 0:
            raise ValueError(f"gpu: {gpu!r} is not a GPU index")
    link = pop("link", _MISSING)
    if link is _MISSING:
        link = None
        has_link = False
    else:
        has_link = True
        if link is not None and (type(link) is not int or link < 0):
            raise ValueError(f"link: {link!r} is not a link number")
    required = _REQUIRED_BY_VALUE.get(kind_value)
    if required is not None:
        for key in required:
            if key not in obj and not (key == "link" and has_link):
                raise ValueError(f"missing {key!r} for kind {kind_value}")
    host = pop("host", "")
    if type(host) is not str:
        raise ValueError(f"host: {host!r} is not a host name")
    if kind is _NVLINK:
        obj["link"] = link
    # (a copy of what is left, as the reader's own path makes: see ``_json_events``)
    return _new_event(t, gpu, kind, link, dict(obj.items())), host


def parse_line(text: str) -> FaultEvent:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    return parse_object(obj)[0]


class _EventDraft:
    """A FaultEvent written as a plain slotted object, then made a FaultEvent (as decision.py's
    ``_DecisionDraft``: the same slots in the same order, so the class can be swapped): the
    reader builds one for every line."""

    __slots__ = FaultEvent.__slots__  # type: ignore[attr-defined]

    def __init__(self, time_wall: float, gpu: int, kind: FaultKind, link: int | None,
                 details: dict[str, Any]) -> None:
        self.time_wall = time_wall
        self.gpu = gpu
        self.kind = kind
        self.link = link
        self.details = details
        self.__class__ = FaultEvent  # type: ignore[assignment]


_new_event = cast(Callable[[float, int, FaultKind, "int | None", "dict[str, Any]"], FaultEvent],
                  _EventDraft)


_HOST_RE = re.compile(r'"host"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _json_events(lines: Iterable[tuple[int, str]], stats: ReadStats,
                 keep: Callable[[str], bool] | None = None) -> Iterator[Numbered]:
    loads = _loads
    parse = parse_object
    host_re = _HOST_RE.search
    new_event = _new_event
    one_field = _ONE_FIELD
    # a host's name is kept as one string for all its events (the decoder makes one a line):
    # a chunk of events waiting to be judged holds one copy, not one an event, and the look-ups
    # by host (the chunk's groups, the ladders) find it by identity
    intern = sys.intern
    n = stats.lines
    events = 0  # (counted here, written to the stats when the file ends or fails)
    try:
        for n, text in lines:
            if keep is not None:  # another worker's host: skip it before parsing it
                m = host_re(text)
                host = m.group(1) if m else ""
                if "\\" in host:
                    host = json.loads(f'"{host}"')
                if not keep(host):
                    continue
            try:
                obj = loads(text)
            except json.JSONDecodeError:
                if not text or text.isspace():
                    continue  # a blank line (asked here, of the few lines that are not JSON)
                raise ReplayError(n, _not_json(text)) from None
            # (parse_object, inline for a well-formed line of a kind with at most one required
            # field and no link: most lines of a fleet's log; any other line, and any that fails
            # a check here, goes through parse_object itself, read again for its error)
            if type(obj) is dict and "link" not in obj:
                pop = obj.pop
                t = pop("time", None)
                kind_value = pop("kind", None)
                gpu = pop("gpu", None)
                host = pop("host", "")
                # (a kind that is not a string may not be hashable: not looked up)
                spec = one_field.get(kind_value) if type(kind_value) is str else None
                if (spec is not None and type(t) is float and t - t == 0.0 and type(gpu) is int
                        and gpu >= 0 and type(host) is str and (not spec[1] or spec[1] in obj)):
                    events += 1
                    # (the details are a copy of what is left: the decoded object keeps the
                    # table of all its keys after four are taken out, 352 bytes against 184
                    # for the copy, and a chunk keeps 196,608 events waiting to be judged)
                    yield t, n, new_event(t, gpu, spec[0], None, dict(obj.items())), \
                        intern(host), 0
                    continue
                obj = loads(text)  # (the checks took its fields: parse_object reads them all)
            try:
                event, host = parse(obj)
            except ValueError as e:
                raise ReplayError(n, str(e)) from None
            events += 1
            yield event.time_wall, n, event, intern(host), 0
    finally:
        stats.lines = n
        stats.events += events


def _not_json(text: str) -> str:
    """Why a line is not JSON, its column counted without the line end (the line is read with
    it, and a parser that reaches the end would count the line end as a line of its own)."""
    try:
        _loads(text.rstrip("\n"))
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg} at column {e.colno})"
    return "not JSON"


def parse_lines(lines: Iterable[str]) -> list[Numbered]:
    """A whole JSON-lines log, in time order (tests and small logs)."""
    stats = ReadStats()
    return sorted(_json_events(((n, t) for n, t in enumerate(lines, 1)), stats),
                  key=lambda x: x[0])

