"""The kernel log, read in one place: the live Xid thread, the start-up catch-up and `rasd replay`.

NVML's Xid event carries only the GPU and the code; the text that says which engine, channel,
link or GPC/TPC failed is in the driver's kernel log line
(``NVRM: Xid (PCI:0000:18:00): 79, pid=..., GPU has fallen off the bus.``). rasd joins the two.

Record forms (``split_record``), one line each, detected line by line:

* ``/dev/kmsg``: ``6,1234,5678901,-;NVRM: ...`` (microseconds since boot)
* ``dmesg``: ``[ 1234.567890] NVRM: ...`` (seconds since boot); also ``journalctl -o
  short-monotonic`` (``[ 1234.567890] host kernel: NVRM: ...``)
* ``dmesg -T``: ``[Fri Aug 30 11:43:09 2024] NVRM: ...`` (local time)
* syslog and journal: ``Nov 29 11:28:11 host kernel: NVRM: ...`` (local time, no year)
* ``journalctl -o short-iso`` / ``short-iso-precise``, RFC 3339 syslog:
  ``2024-11-29T11:28:11+0000 host kernel: NVRM: ...``
* bare driver lines: ``NVRM: Xid ...``, ``nvidia-nvswitch0: SXid ...`` (no time, no host)

Xid line forms (``parse_xid_line``): with ``pid=..., name=...``, with ``pid='<unknown>'``, without
them, the MIG form ``(PCI:0000:01:00 GPU-I:05)``, the older ``Xid (0000:03:00): 14, ...`` and the
NVSwitch ``SXid (PCI:0000:c3:00.0): 20009, ...`` (a fabric fault, kept apart from GPU Xids).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger("rasd.kmsg")

_BUS = r"(?:[0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?"
_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>" + _BUS + r")(?:\s+GPU-I:(?P<gi>\d+))?(?:\s+GPU-CI:(?P<ci>\d+))?"
    r"\):\s*(?P<code>\d+)(?:,\s*|\s+|$)(?P<rest>.*)$")
_SXID_RE = re.compile(
    r"(?P<dev>nvidia-nvswitch\d*): SXid \((?:PCI:)?(?P<bus>" + _BUS + r")\):\s*(?P<code>\d+)"
    r"(?:,\s*|\s+|$)(?P<rest>.*)$")
_PROCESS_RE = re.compile(r"^pid=(?P<pid>'?<unknown>'?|\d+),\s*name=(?P<name>[^,]*),\s*")
_NVIDIA_RE = re.compile(r"\bNVRM:|\bnvidia(?:-\w+)?\d*:|\bnvidia-nvswitch|\bnvidia-modeset|\bnvidia-uvm")


@dataclass(frozen=True, slots=True)
class XidLine:
    pci: tuple[int, int, int]  # (domain, bus, device)
    xid: int
    message: str  # the text after the code (and after pid/name)
    bus_id: str = ""  # as printed, e.g. "0000:3b:00"
    gpu_instance: int | None = None  # MIG GPU instance (GPU-I)
    compute_instance: int | None = None  # MIG compute instance (GPU-CI)
    pid: int | None = None  # the process the driver blames (None: unknown or not printed)
    process: str | None = None
    switch: str | None = None  # "nvidia-nvswitch0" for an NVSwitch SXid (a fabric fault)


@dataclass(frozen=True, slots=True)
class KernelRecord:
    """One kernel log line with its prefix understood. ``time_wall`` is Unix seconds where the
    form has a date; ``boot_seconds`` where it counts from boot; both None for bare lines."""

    form: str  # kmsg, dmesg, dmesg-T, syslog, iso, bare
    text: str  # the kernel message itself
    host: str = ""
    time_wall: float | None = None
    boot_seconds: float | None = None


def pci_key(bus_id: str) -> tuple[int, int, int] | None:
    """``00000000:18:00.0`` (NVML) or ``0000:18:00`` (kernel log) -> (domain, bus, device)."""
    parts = bus_id.strip().split(".")[0].split(":")
    try:
        if len(parts) == 3:
            return (int(parts[0], 16), int(parts[1], 16), int(parts[2], 16))
        if len(parts) == 2:
            return (0, int(parts[0], 16), int(parts[1], 16))
    except ValueError:
        return None
    return None


def bus_name(key: tuple[int, int, int]) -> str:
    """The canonical short form rasd prints: ``0000:3b:00``."""
    return f"{key[0]:04x}:{key[1]:02x}:{key[2]:02x}"


def parse_xid_line(line: str) -> XidLine | None:
    """One kernel message -> XidLine, or None when it is not a driver Xid or SXid report."""
    m = _XID_RE.search(line)
    switch = None
    if m is None:
        m = _SXID_RE.search(line)
        if m is None:
            return None
        switch = m.group("dev")
    key = pci_key(m.group("bus"))
    if key is None:
        return None
    rest = m.group("rest").strip()
    pid = process = None
    pm = _PROCESS_RE.match(rest)
    if pm:  # the driver prefixes the process it blames; the text after it is the message
        rest = rest[pm.end():]
        pid = int(pm.group("pid")) if pm.group("pid").isdigit() else None
        name = pm.group("name").strip()
        process = None if name.strip("'") == "<unknown>" else name
    gi = m.groupdict().get("gi")
    ci = m.groupdict().get("ci")
    return XidLine(pci=key, xid=int(m.group("code")), message=rest, bus_id=m.group("bus"),
                   gpu_instance=int(gi) if gi else None, compute_instance=int(ci) if ci else None,
                   pid=pid, process=process, switch=switch)


def is_nvidia(text: str) -> bool:
    """A line of NVIDIA's drivers (NVRM, nvidia, nvidia-nvswitch, -modeset, -uvm)."""
    return _NVIDIA_RE.search(text) is not None


# --------------------------------------------------------------------------- record prefixes

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"), 1)}
_KMSG_RE = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_DMESG_RE = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_DMESG_T_RE = re.compile(r"^\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\w{3}) +(\d{1,2}) "
                         r"(\d\d):(\d\d):(\d\d) (\d{4})\]\s?(.*)$")
_SYSLOG_RE = re.compile(r"^(\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\S+) ([^:\s]+?)(?:\[\d+\])?: "
                        r"?(.*)$")
_ISO_RE = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?)(Z|[+-]\d\d:?\d\d)? "
                     r"(\S+) ([^:\s]+?)(?:\[\d+\])?: ?(.*)$")
_HOST_KERNEL_RE = re.compile(r"^(\S+) kernel: (.*)$")
_INNER_STAMP_RE = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def _local(y: int, mo: int, d: int, h: int, mi: int, s: float) -> float:
    """Local wall time (as dmesg -T and syslog print it) -> Unix seconds."""
    return time.mktime((y, mo, d, h, mi, int(s), 0, 0, -1)) + (s - int(s))


def split_record(line: str, year: int | None = None) -> KernelRecord | None:
    """Understand one line's prefix; None when the line is in none of the known forms.
    ``year`` dates syslog lines (they carry none; default: this year)."""
    line = line.rstrip("\r\n")
    m = _KMSG_RE.match(line)
    if m:
        return KernelRecord("kmsg", m.group(4), boot_seconds=int(m.group(3)) / 1e6)
    m = _DMESG_T_RE.match(line)
    if m and m.group(1) in _MONTHS:
        t = _local(int(m.group(6)), _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)),
                   int(m.group(4)), int(m.group(5)))
        return KernelRecord("dmesg-T", m.group(7), time_wall=t)
    m = _DMESG_RE.match(line)
    if m:
        text, host = m.group(2), ""
        hk = _HOST_KERNEL_RE.match(text)  # journalctl -o short-monotonic
        if hk:
            host, text = hk.group(1), hk.group(2)
        return KernelRecord("dmesg", text, host=host, boot_seconds=float(m.group(1)))
    m = _ISO_RE.match(line)
    if m:
        stamp = m.group(1).replace(",", ".").replace(" ", "T")
        off = m.group(2)
        try:
            if off is None:
                dt = datetime.fromisoformat(stamp)
                t = dt.timestamp()  # no offset: local time
            else:
                if off != "Z" and ":" not in off:
                    off = off[:3] + ":" + off[3:]
                dt = datetime.fromisoformat(stamp + ("+00:00" if off == "Z" else off))
                t = dt.timestamp()
        except ValueError:
            return None
        return KernelRecord("iso", _INNER_STAMP_RE.sub("", m.group(5)), host=m.group(3),
                            time_wall=t)
    m = _SYSLOG_RE.match(line)
    if m and m.group(1) in _MONTHS:
        y = year if year is not None else time.localtime().tm_year
        try:
            t = _local(y, _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)),
                       int(m.group(5)))
        except (OverflowError, ValueError):
            return None
        return KernelRecord("syslog", _INNER_STAMP_RE.sub("", m.group(8)), host=m.group(6),
                            time_wall=t)
    stripped = line.strip()
    if stripped.startswith("NVRM:") or _SXID_RE.match(stripped):
        return KernelRecord("bare", stripped)
    return None


class SyslogYear:
    """Syslog lines carry no year: start from ``year`` and step to the next one when the month
    goes backwards (a log across New Year)."""

    def __init__(self, year: int):
        self.year = year
        self._month = 0

    def for_line(self, line: str) -> int:
        mo = _MONTHS.get(line[:3], 0)
        if mo and self._month and mo < self._month:
            self.year += 1
        if mo:
            self._month = mo
        return self.year


# --------------------------------------------------------------------------- /dev/kmsg


class KernelLog:
    """Reads records from /dev/kmsg without blocking (needs CAP_SYSLOG or root)."""

    def __init__(self, fd: int | None, path: str):
        self._fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str, from_start: bool = False) -> "KernelLog":
        """From now on (the live thread), or ``from_start``: the backlog the ring still holds."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            if not from_start:
                os.lseek(fd, 0, os.SEEK_END)  # only what happens from now on
        except OSError as e:
            log.warning(
                "event=kernel_log_unavailable path=%s error=%r hint=%s",
                path, e.strerror, "Xid messages will be missing; run as root or grant CAP_SYSLOG",
            )
            fd = None
        return cls(fd, path)

    @property
    def available(self) -> bool:
        return self._fd is not None

    def read_records(self) -> list[str]:
        """Whole records (``pri,seq,usec,flags;message``) read since the previous call."""
        if self._fd is None:
            return []
        lines: list[str] = []
        while True:
            try:
                rec = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # records were overwritten before we read them
                    continue
                if e.errno != errno.EINVAL:
                    log.warning("event=kernel_log_read_failed error=%r", e.strerror)
                break
            if not rec:
                break
            # /dev/kmsg gives one record a read; a saved copy (a plain file) gives many. The
            # continuation lines of a record (" KEY=value") are dropped.
            lines.extend(x for x in rec.decode(errors="replace").split("\n")
                         if x and not x.startswith(" "))
        return lines

    def read_new(self) -> list[str]:
        """The messages (prefix stripped) read since the previous call."""
        return [r.split(";", 1)[-1] for r in self.read_records()]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- catch-up


@dataclass(frozen=True, slots=True)
class LoggedXid:
    time_wall: float
    line: XidLine


def backlog(path: str, since_wall: float, until_wall: float, *,
            boot_wall: float | None = None,
            journal: tuple[str, ...] | None = ("journalctl",)) -> tuple[list[LoggedXid], str]:
    """Driver Xid reports the kernel logged in (since_wall, until_wall]: from the /dev/kmsg
    ring (``path``) when it is readable and reaches back far enough, else also from the journal
    (``journalctl -k``). Returns them in time order and where they came from."""
    boot = time.time() - time.monotonic() if boot_wall is None else boot_wall
    found: list[LoggedXid] = []
    sources = []
    oldest = None
    kl = KernelLog.open(path, from_start=True) if path else KernelLog(None, path)
    try:
        if kl.available:
            sources.append(path)
            for rec in kl.read_records():
                r = split_record(rec)
                if r is None or r.boot_seconds is None:
                    continue
                t = boot + r.boot_seconds
                oldest = t if oldest is None else min(oldest, t)
                x = parse_xid_line(r.text)
                if x is not None and x.switch is None and since_wall < t <= until_wall:
                    found.append(LoggedXid(t, x))
    finally:
        kl.close()
    if journal and (oldest is None or oldest > since_wall):
        # the ring no longer holds the start of the gap (or cannot be read): the journal may
        lines = _journal_lines(journal, since_wall)
        if lines is not None:
            sources.append("journal")
            seen = {(round(x.time_wall, 3), x.line.pci, x.line.xid) for x in found}
            for text in lines:
                r = split_record(text)
                if r is None or r.time_wall is None:
                    continue
                x = parse_xid_line(r.text)
                if x is None or x.switch is not None or not since_wall < r.time_wall <= until_wall:
                    continue
                if oldest is not None and r.time_wall >= oldest:
                    continue  # the ring had it
                if (round(r.time_wall, 3), x.pci, x.xid) not in seen:
                    found.append(LoggedXid(r.time_wall, x))
    found.sort(key=lambda x: x.time_wall)
    return found, "+".join(sources) or "none"


def _journal_lines(cmd: tuple[str, ...], since_wall: float) -> list[str] | None:
    import subprocess

    argv = [*cmd, "-k", "-o", "short-iso-precise", "--no-pager", "--quiet",
            f"--since=@{int(since_wall)}"]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.info("event=journal_unavailable error=%r", str(e))
        return None
    if p.returncode != 0:
        log.info("event=journal_unavailable exit_code=%d", p.returncode)
        return None
    return p.stdout.decode(errors="replace").splitlines()
