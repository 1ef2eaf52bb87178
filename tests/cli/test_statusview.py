"""The daemon's status view names the jobs on each GPU, as the one-shot poll does."""

from __future__ import annotations

from rasd.model import GpuState, Health, NodeIdentity
from rasd.scheduler.state import JobRef, SchedulerState
from rasd.snapshot import Snapshot
from rasd.statusview import snapshot_json


def _scheduler(jobs: dict[int, tuple[JobRef, ...]]) -> SchedulerState:
    return SchedulerState(
        kind="slurm", node="n", enforced=False, out_by_rasd=False, reason="", out_since_wall=None,
        breaker_tripped=False, breaker_since_wall=None, breaker_why="", deferred=(), scope_nodes=None,
        scope_out=None, budget_limit=None, jobs=jobs,
    )


def _snap(scheduler: SchedulerState | None) -> Snapshot:
    gpus = tuple(GpuState(i, None, Health.UP, None, 1.0) for i in range(2))
    return Snapshot(time_wall=2.0, node=NodeIdentity("n", "fake", None, None, None), gpus=gpus,
                    scheduler=scheduler)


def test_daemon_view_names_the_jobs_on_each_gpu() -> None:
    view = snapshot_json(_snap(_scheduler({1: (JobRef("slurm", "4242", pid=77),)})))
    assert [g["jobs"] for g in view["gpus"]] == [[], [{"kind": "slurm", "id": "4242", "name": "", "pid": 77}]]


def test_without_attribution_every_gpu_has_an_empty_job_list() -> None:
    view = snapshot_json(_snap(None))
    assert [g["jobs"] for g in view["gpus"]] == [[], []]
