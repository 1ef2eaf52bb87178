"""A kernel log read for a replay, in any form rasd.telemetry.kmsg understands (dmesg,
dmesg -T, journal, syslog, short-iso, bare NVRM lines): its NVIDIA driver reports (Xid, SXid)
made fault events, the devices it names by PCI bus id numbered per host, and the lines that are
not driver reports skipped and counted.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from rasd.ladder.replay_input import Names, Numbered, ReadStats
from rasd.model import FaultEvent, FaultKind
from rasd.telemetry.kmsg import SyslogYear, bus_name, is_nvidia, parse_xid_line, split_record

BARE_SPACING_SECONDS = 60.0  # bare driver lines carry no time: one minute apart, a burst together


def _kernel_events(lines: Iterable[tuple[int, str]], stats: ReadStats, names: Names, *,
                   year: int, boot_time: float, architecture: str | None,
                   keep: Callable[[str], bool] | None = None) -> Iterator[Numbered]:
    years = SyslogYear(year)
    last_t = boot_time
    last_key: tuple[str, str, int] | None = None
    for n, text in lines:
        stats.lines = n
        if not text or text.isspace():
            continue
        rec = split_record(text, years.for_line(text))
        if rec is None:
            if keep is None or keep(""):  # counted once, by the worker of host ""
                stats.skipped_other += 1
            continue
        if keep is not None and not keep(rec.host):
            continue
        stats.record_forms[rec.form] += 1
        x = parse_xid_line(rec.text)
        if x is None:
            if is_nvidia(rec.text):
                stats.skipped_nvidia += 1
            else:
                stats.skipped_other += 1
            continue
        bus = bus_name(x.pci)
        key = (rec.host, bus, x.xid)
        if rec.time_wall is not None:
            t = rec.time_wall
        elif rec.boot_seconds is not None:
            t = boot_time + rec.boot_seconds
        else:  # a bare line: the burst it continues, or the next minute
            t = last_t if key == last_key else last_t + BARE_SPACING_SECONDS
        last_t, last_key = t, key
        details: dict[str, Any] = {"message": x.message, "pci_bus_id": bus}
        if x.gpu_instance is not None:
            details["gpu_instance"] = x.gpu_instance
        if x.compute_instance is not None:
            details["compute_instance"] = x.compute_instance
        if x.pid is not None:
            details["pid"] = x.pid
        if x.process:
            details["process"] = x.process
        if x.switch is not None:
            details.update(sxid=x.xid, switch=x.switch)
            gpu = names.number(rec.host, f"{x.switch} {bus}")
            event = FaultEvent(t, gpu, FaultKind.NVSWITCH, None, details)
        else:
            details["xid"] = x.xid
            if architecture:
                details["architecture"] = architecture
            event = FaultEvent(t, names.number(rec.host, bus), FaultKind.XID, None, details)
        stats.events += 1
        yield t, n, event, rec.host, 0
