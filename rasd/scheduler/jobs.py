"""Which job a GPU process belongs to: a Slurm job or a Kubernetes pod.

Slurm: ``SLURM_JOB_ID`` in ``/proc/PID/environ`` (every task srun or sbatch starts has it), else
``job_<id>`` in the process's cgroup path (``/slurm/uid_0/job_42/step_0`` with cgroup v1,
``/system.slice/slurmstepd.scope/job_42/step_0/...`` with v2), which also holds for processes
that cleared their environment. Kubernetes: the pod's UID in the cgroup path
(``/kubepods/burstable/pod<uid>/<container>`` with the cgroupfs driver,
``kubepods-burstable-pod<uid with _>.slice`` with the systemd driver); the pod's namespace/name
comes from the kubelet's pod-resources API, which says which pod holds each GPU (by UUID).
"""

from __future__ import annotations

import os
import re
from typing import Callable, Iterable

from rasd.scheduler.state import JobRef

_SLURM_CGROUP = re.compile(r"/job_(\d+)(?:/|$)")
_POD_CGROUP = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CONTAINER = re.compile(r"(?:cri-containerd-|docker-|crio-|/)([0-9a-f]{64})(?:\.scope)?$")


def _environ(proc: str) -> dict[str, str]:
    try:
        with open(os.path.join(proc, "environ"), "rb") as f:
            raw = f.read()
    except OSError:  # gone, or not ours to read (rasd runs as root on real nodes)
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return out


def _cgroups(proc: str) -> list[str]:
    try:
        with open(os.path.join(proc, "cgroup")) as f:
            text = f.read()
    except OSError:
        return []
    return [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]


def job_of(pid: int, proc_root: str = "/proc", pod_name: str = "") -> JobRef:
    """The job or pod of one process; kind "none" when it belongs to neither (or is gone)."""
    proc = os.path.join(proc_root, str(pid))  # not pathlib: see rasd.paths
    env = _environ(proc)
    job = env.get("SLURM_JOB_ID", "")
    if job.isdigit():
        return JobRef("slurm", job, "", pid)
    for path in _cgroups(proc):
        m = _SLURM_CGROUP.search(path)
        if m:
            return JobRef("slurm", m.group(1), "", pid)
        m = _POD_CGROUP.search(path)
        if m:
            uid = m.group(1).replace("_", "-")
            return JobRef("kubernetes", uid, pod_name, pid)
    return JobRef("none", "", "", pid)


def jobs_on(pids: Iterable[int], proc_root: str = "/proc", pod_name: str = "") -> tuple[JobRef, ...]:
    """Every process's job, one entry per (kind, id) with its lowest PID, in PID order.
    ``pod_name`` is the namespace/name of the pod the kubelet gave this GPU, when known."""
    seen: dict[tuple[str, str], JobRef] = {}
    for pid in sorted(set(pids)):
        ref = job_of(pid, proc_root, pod_name)
        key = (ref.kind, ref.id or str(pid))
        seen.setdefault(key, ref)
    return tuple(seen.values())


Processes = Callable[[int], list[int]]
