"""The daemon's threads carry their names to the kernel, where top -H and psutil see them."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from rasd import threadnames

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names in /proc are Linux's")


def _comm(t: threading.Thread) -> str:
    return Path(f"/proc/self/task/{t.native_id}/comm").read_text().strip()


def test_threads_started_after_install_have_their_names_in_proc_cut_to_15_bytes():
    threadnames.install()
    threadnames.install()  # idempotent
    stop = threading.Event()
    named = [threading.Thread(target=stop.wait, name=n, daemon=True) for n in ("rasd-sampler", "rasd-health-poller-0")]
    for t in named:
        t.start()
    try:
        seen = {}
        for t in named:
            for _ in range(200):  # the name is written as the thread begins
                seen[t.name] = _comm(t)
                if seen[t.name] != Path("/proc/self/comm").read_text().strip():
                    break
                stop.wait(0.01)
        assert seen == {"rasd-sampler": "rasd-sampler", "rasd-health-poller-0": "rasd-health-pol"}
    finally:
        stop.set()


def test_threads_running_before_install_are_named_too():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="rasd-early", daemon=True)
    t.start()
    try:
        saved = threadnames._installed
        threadnames._installed = False
        before = threading.getprofile()
        threadnames.install()
        assert _comm(t) == "rasd-early"
    finally:
        stop.set()
        threading.setprofile(before)
        threadnames._installed = saved


def test_a_profile_function_set_before_still_runs_in_new_threads():
    calls: list[str] = []
    before = threading.getprofile()
    threading.setprofile(lambda frame, event, arg: calls.append(event))
    try:
        saved = threadnames._installed
        threadnames._installed = False  # install again over the test's own profile function
        threadnames.install()
        t = threading.Thread(target=lambda: None, name="rasd-probe")
        t.start()
        t.join()
        assert calls and calls[0] == "call"
    finally:
        threading.setprofile(before)
        threadnames._installed = saved
