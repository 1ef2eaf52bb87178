"""The daemon's thread names, given to the kernel too, so ``top -H``, ``ps -L`` and per-thread CPU
accounting (``/proc/<pid>/task/<tid>/comm``, psutil) show where rasd's CPU goes by name.

Python before 3.14 names its threads only for itself; the kernel sees every thread as the
process's name ("python3"). :func:`install` gives each thread started afterwards its Python name
(cut to the kernel's 15 bytes) as the thread begins, through ``threading.setprofile``, and names
those already running: the hook
runs once in the new thread, writes the name and hands the thread back to whatever profile
function was set before (none in a daemon). The main thread keeps the process's name. Linux
only; elsewhere, or where ``/proc`` is not writable, names stay as they were.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from types import FrameType
from typing import Any, Callable

COMM_BYTES = 15  # TASK_COMM_LEN - 1

_installed = False


PR_SET_NAME = 15  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, called holding the GIL (PyDLL): naming is one quick system call, and a new
    thread that gave the GIL away here would start later than it would without a name."""
    try:
        fn = ctypes.PyDLL(None).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def name_current_thread(name: str | None = None) -> bool:
    """Give the calling thread's name (or ``name``) to the kernel (prctl PR_SET_NAME); False
    where it cannot be."""
    fn = _prctl()
    if fn is None:
        return False
    text = (name or threading.current_thread().name).encode("utf-8", "replace")[:COMM_BYTES]
    return fn(PR_SET_NAME, text, 0, 0, 0) == 0


def name_thread(t: threading.Thread) -> bool:
    """Give a running thread of this process its name in the kernel (Linux lets a thread name its
    siblings through /proc/self/task); False where it cannot be."""
    if t.native_id is None:
        return False
    try:
        with open(f"/proc/self/task/{t.native_id}/comm", "wb") as f:
            f.write(t.name.encode("utf-8", "replace")[:COMM_BYTES])
    except OSError:
        return False
    return True


def install() -> None:
    """Name the threads already running (the main one aside) and every thread started from now
    on (idempotent; the process keeps it)."""
    global _installed
    if _installed or not sys.platform.startswith("linux"):
        return
    _installed = True
    for t in threading.enumerate():
        if t is not threading.main_thread():
            name_thread(t)
    before = threading.getprofile()

    def hook(frame: FrameType, event: Any, arg: Any) -> object:
        sys.setprofile(before)  # once per thread: from here on the thread runs unhooked
        name_current_thread()
        return before(frame, event, arg) if before is not None else None

    threading.setprofile(hook)
