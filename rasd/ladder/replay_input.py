"""What a replay reads, as the readers hand it on: each event numbered with its line, host and
file (``Numbered``), what a file held (``ReadStats``), the error that names a bad line
(``ReplayError``) and the GPU numbers given to devices a kernel log names by PCI bus id
(``Names``). Shared by the event-log reader (replay_json.py), the kernel-log reader
(replay_kmsg.py), the replay itself (replay.py) and its report (replay_jobs.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rasd.model import FaultEvent


class ReplayError(ValueError):
    def __init__(self, line: int, why: str, source: int | None = None):
        self.line = line
        self.source = source  # which file, when several are replayed together
        super().__init__(f"line {line}: {why}" if line else why)


# An event with where it came from: (time, line, event, host, source), where time is the event's
# time_wall, host "" when the log names none, and source which of the files replayed together it
# came from. A plain tuple, read by position: one is built per event of a replay, and a plain
# tuple is built by one instruction (a named tuple's constructor is a call, and the tuple is
# built twice). The time comes first and the line second, so that the tuple itself is the
# reorder window's key (time, then the file's order), with no second tuple built around it.
Numbered = tuple[float, int, FaultEvent, str, int]


@dataclass(slots=True)
class ReadStats:
    """What a file held: its detected form, the events read, the lines skipped and why."""

    form: str = ""  # "events" or "kernel log"
    lines: int = 0
    events: int = 0
    record_forms: Counter[str] = field(default_factory=Counter)  # kernel-log line forms seen
    skipped_other: int = 0  # not NVIDIA driver lines (or not in a known form)
    skipped_nvidia: int = 0  # NVIDIA driver lines that report no Xid
    out_of_order: int = 0  # events later than the reorder window could put right

    @property
    def recognised(self) -> bool:
        return self.events > 0 or sum(self.record_forms.values()) > 0


class Names:
    """GPU numbers for devices a kernel log names by PCI bus id, per host (first seen, first
    numbered), and the names to print for them."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}  # (host, name) -> GPU number
        self._names: dict[tuple[str, int], str] = {}

    def number(self, host: str, name: str) -> int:
        key = (host, name)
        n = self.ids.get(key)
        if n is None:
            n = sum(1 for h, _ in self.ids if h == host)
            self.ids[key] = n
            self._names[(host, n)] = name
        return n

    def name(self, host: str, gpu: int) -> str | None:
        return self._names.get((host, gpu))

    def __bool__(self) -> bool:
        return bool(self.ids)
