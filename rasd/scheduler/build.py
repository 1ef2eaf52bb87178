"""Builds the scheduler service the config asks for."""

from __future__ import annotations

import importlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import cast

from rasd.scheduler.attribution import GpuUuid, JobWatch, Processes
from rasd.scheduler.cluster import Cluster
from rasd.scheduler.ledger import Ledger
from rasd.scheduler.service import SchedulerService
from rasd.scheduler.settings import SchedulerKind, SchedulerSettings


def node_name(s: SchedulerSettings, hostname: str | None = None) -> str:
    """The configured name, else the host's short name (what Slurm and kubelet use by default);
    on Kubernetes the downward API's NODE_NAME wins over the host name."""
    if s.node_name:
        return s.node_name
    if s.kind_enum is SchedulerKind.KUBERNETES and os.environ.get("NODE_NAME"):
        return os.environ["NODE_NAME"]
    return (hostname or socket.gethostname()).split(".")[0]


def make_cluster(s: SchedulerSettings, node: str) -> Cluster | None:
    kind = s.kind_enum
    if kind is SchedulerKind.SLURM:
        from rasd.scheduler.slurm import SlurmCluster

        return SlurmCluster(s, node)
    if kind is SchedulerKind.KUBERNETES:  # its client library loads only when asked for
        kube = importlib.import_module("rasd.scheduler.kube")
        return cast(Cluster, kube.KubeCluster(s, node))
    return None


def build_service(s: SchedulerSettings, enforce: bool, store_path: str, *,
                  hostname: str | None = None, cluster: Cluster | None = None,
                  wall: Callable[[], float] | None = None,
                  clock: Callable[[], float] | None = None,
                  gpus: Iterable[int] = (), processes: Processes | None = None,
                  gpu_uuid: GpuUuid | None = None, proc_root: str = "/proc",
                  synchronous: bool = False) -> SchedulerService:
    """``processes`` (GPU index -> PIDs, from NVML) turns on job attribution for ``gpus``.
    ``wall``: epoch seconds (default time.time); ``clock``: monotonic seconds for the intervals
    (default time.monotonic, or ``wall`` where only a hand-driven wall is given: one clock
    drives both)."""
    node = node_name(s, hostname)
    if cluster is None:
        cluster = make_cluster(s, node)
    wall_clock = time.time if wall is None else wall
    if clock is None:
        clock = time.monotonic if wall is None else wall
    ledger = Ledger(store_path)
    svc = SchedulerService(s, enforce, cluster, ledger, node=node, wall=wall_clock,
                           clock=clock, synchronous=synchronous)
    if s.attribute_jobs and processes is not None:
        sock = s.pod_resources_socket

        def pods() -> dict[str, str]:
            if not sock or not os.path.exists(sock):  # not a Kubernetes node (yet)
                return {}
            from rasd.scheduler.podresources import pod_names_by_gpu

            return pod_names_by_gpu(sock, s.command_timeout_seconds)

        svc.jobs = JobWatch(gpus, processes, ledger, proc_root=proc_root, gpu_uuid=gpu_uuid,
                            pod_names=pods, wall=wall_clock)
    return svc
