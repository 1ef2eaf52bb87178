"""The daemon's own cost, read from the kernel, agrees with psutil's reading of the same process."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import psutil

from rasd import config
from rasd.daemon import Daemon


def test_cpu_memory_and_threads_agree_with_psutil(fake, tmp_path: Path) -> None:
    cfg = config.Config.default()
    cfg = replace(cfg, daemon=replace(cfg.daemon, state_path=str(tmp_path / "rasd.db"),
                                      control_socket=str(tmp_path / "c.sock")),
                  telemetry=replace(cfg.telemetry, kernel_log=""))
    d = Daemon(cfg, fake(), hostname="node-t")
    try:
        proc = psutil.Process(os.getpid())
        threads_before = proc.num_threads()
        cpu_before = sum(proc.cpu_times()[:2])
        st = d._self_stats()
        cpu_after = sum(proc.cpu_times()[:2])
        rss, threads_after = proc.memory_info().rss, proc.num_threads()
        # The file is kept open and read again: the second reading is the kernel's new one.
        spin = sum(proc.cpu_times()[:2]) + 0.1
        while sum(proc.cpu_times()[:2]) < spin:
            pass
        again = d._self_stats()
        cpu_later = sum(proc.cpu_times()[:2])
    finally:
        d.stop()
    assert d._stat_fd is None  # closed with the daemon
    assert st.cpu_seconds + 0.08 <= again.cpu_seconds <= cpu_later + 0.02
    assert cpu_before - 0.02 <= st.cpu_seconds <= cpu_after + 0.02  # clock ticks of 10 ms
    assert abs(st.rss_bytes - rss) <= 0.05 * rss
    # A thread of the suite may start or end between the readings: the count lies within theirs.
    assert min(threads_before, threads_after) <= st.threads <= max(threads_before, threads_after)
