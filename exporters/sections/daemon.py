"""rasd's own health: build and node identity, poll progress, main-loop stages, CPU and memory (from the kernel)."""

from __future__ import annotations

import platform
from typing import Iterable

from exporters.family import CounterFamily, Family, GaugeFamily

from rasd import __version__
from rasd.snapshot import Snapshot


def collect(snapshot: Snapshot) -> Iterable[Family]:
    build = GaugeFamily("rasd_build_info", "rasd's version (value 1).", labels=["version", "python_version"])
    build.add_metric([__version__, platform.python_version()], 1)
    yield build
    n = snapshot.node
    node = GaugeFamily(
        "rasd_node_info", "The node and its NVIDIA software (value 1).",
        labels=["hostname", "backend", "driver_version", "nvml_version", "cuda_driver_version"],
    )
    node.add_metric([n.hostname, n.backend, n.driver_version or "", n.nvml_version or "", n.cuda_driver_version or ""], 1)
    yield node
    yield GaugeFamily("rasd_gpus", "GPUs NVML reported at start.", value=len(snapshot.gpus))
    yield GaugeFamily("rasd_snapshot_timestamp_seconds", "Unix time the exported snapshot was built (after a health poll).", value=snapshot.time_wall)
    yield CounterFamily("rasd_health_polls", "Health poll rounds completed.", value=snapshot.health_polls)
    yield CounterFamily("rasd_power_samples", "Distinct instant-power updates captured by the power sampler.", value=snapshot.power_rounds)
    if snapshot.stages:
        ok = GaugeFamily("rasd_daemon_stage_success", "1 when this stage of the daemon's last main-loop pass succeeded, else 0 (the stage's part of the snapshot is then the last good one).", labels=["stage"])
        failed = CounterFamily("rasd_daemon_stage_failures", "Main-loop passes in which this stage failed.", labels=["stage"])
        for s in snapshot.stages:
            ok.add_metric([s.stage], 1 if s.ok else 0)
            failed.add_metric([s.stage], s.failures_total)
        yield ok
        yield failed
    st = snapshot.self_stats
    if st is not None:
        yield CounterFamily("rasd_process_cpu_seconds", "CPU time rasd used (user + system).", value=st.cpu_seconds)
        yield GaugeFamily("rasd_process_resident_memory_bytes", "rasd's resident set size.", value=st.rss_bytes)
        yield GaugeFamily("rasd_process_threads", "rasd's threads.", value=st.threads)
        yield GaugeFamily("rasd_process_start_time_seconds", "Unix time rasd started.", value=st.started_wall)
