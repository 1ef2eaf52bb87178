"""Driver Xid messages from the kernel log.

NVML's Xid event carries only the GPU and the code; the text that says which engine, channel,
link or GPC/TPC failed is in the driver's kernel log line
(``NVRM: Xid (PCI:0000:18:00): 79, pid=..., GPU has fallen off the bus.``). rasd joins the two.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass

log = logging.getLogger("rasd.kmsg")

_XID_RE = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f]+(?::[0-9A-Fa-f]+){1,2}(?:\.[0-9A-Fa-f]+)?)\): (\d+),\s*(.*)$")

_PROCESS_RE = re.compile(r"^pid=[^,]*,\s*name=[^,]*,\s*")


@dataclass(frozen=True, slots=True)
class XidLine:
    pci: tuple[int, int, int]  # (domain, bus, device)
    xid: int
    message: str


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


def parse_xid_line(line: str) -> XidLine | None:
    """One kernel log line -> XidLine, or None when it is not a driver Xid report."""
    m = _XID_RE.search(line)
    if not m:
        return None
    key = pci_key(m.group(1))
    if key is None:
        return None
    # the driver prefixes the process it blames; the text after it is the message
    message = _PROCESS_RE.sub("", m.group(3).strip(), count=1)
    return XidLine(pci=key, xid=int(m.group(2)), message=message)


class KernelLog:
    """Reads new records from /dev/kmsg without blocking (needs CAP_SYSLOG or root)."""

    def __init__(self, fd: int | None, path: str):
        self._fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> "KernelLog":
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(fd, 0, os.SEEK_END)  # only what happens from now on
        except OSError as e:
            log.warning(
                "event=kernel_log_unavailable path=%s error=%r hint=%s",
                path, e.strerror, "Xid messages will be missing; run as root or grant CAP_SYSLOG",
            )
            fd = None
        return cls(fd, path)

    def read_new(self) -> list[str]:
        if self._fd is None:
            return []
        lines: list[str] = []
        while True:
            try:
                rec = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # records were overwritten before we read them
                    continue
                log.warning("event=kernel_log_read_failed error=%r", e.strerror)
                break
            if not rec:
                break
            text = rec.decode(errors="replace")
            # /dev/kmsg record: "pri,seq,usec,flags;message\n"
            lines.append(text.split(";", 1)[-1].rstrip("\n"))
        return lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
