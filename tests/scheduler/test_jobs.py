"""Which job each fault hit: process -> Slurm job / Kubernetes pod, and a real `srun` job's
process on a fake GPU named by the running daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from rasd.scheduler.jobs import job_of, jobs_on
from rasd.scheduler.state import JobRef
from tests.e2e.helpers import http_get, rasd_daemon, wait_for
from tests.scheduler.slurmcluster import SlurmCluster

POD = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def proc(root: Path, pid: int, cgroup: str, environ: dict[str, str] | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0"
                                         for k, v in (environ or {}).items()))


@pytest.mark.parametrize("cgroup, environ, want", [
    ("0::/\n", {"SLURM_JOB_ID": "4711", "PATH": "/bin"}, JobRef("slurm", "4711", "", 10)),
    ("4:memory:/slurm/uid_0/job_88/step_0\n1:cpu:/\n", {}, JobRef("slurm", "88", "", 10)),
    ("0::/system.slice/slurmstepd.scope/job_1234/step_batch/user/task_0\n", {},
     JobRef("slurm", "1234", "", 10)),
    (f"4:memory:/kubepods/burstable/pod{POD}/{'ab' * 32}\n", {},
     JobRef("kubernetes", POD, "", 10)),
    ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
     f"{POD.replace('-', '_')}.slice/cri-containerd-{'cd' * 32}.scope\n", {},
     JobRef("kubernetes", POD, "", 10)),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", {"HOME": "/root"},
     JobRef("none", "", "", 10)),
])
def test_process_to_job(tmp_path: Path, cgroup: str, environ: dict[str, str],
                        want: JobRef) -> None:
    proc(tmp_path, 10, cgroup, environ)
    assert job_of(10, str(tmp_path)) == want


def test_a_gone_process_is_no_job_and_one_entry_per_job(tmp_path: Path) -> None:
    assert job_of(999, str(tmp_path)) == JobRef("none", "", "", 999)
    proc(tmp_path, 20, "0::/\n", {"SLURM_JOB_ID": "7"})
    proc(tmp_path, 21, "0::/\n", {"SLURM_JOB_ID": "7"})
    proc(tmp_path, 30, f"0::/kubepods/pod{POD}/x\n")
    refs = jobs_on([21, 30, 20], str(tmp_path), pod_name="training/llm-0")
    assert refs == (JobRef("slurm", "7", "", 20), JobRef("kubernetes", POD, "training/llm-0", 30))


# --------------------------------------------------------------------------- a real srun job


def _task_pid(tag: str, timeout: float = 20.0) -> int:
    """The PID of the job's task (`sleep TAG` started by slurmstepd, not srun itself)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if len(argv) == 2 and argv[0].endswith(b"sleep") and argv[1] == tag.encode():
                return int(d.name)
        time.sleep(0.2)
    raise AssertionError(f"the job's task `sleep {tag}` did not start within {timeout} s")


@pytest.fixture
def srun_job(slurm: SlurmCluster) -> Iterator[tuple[str, int]]:
    tag = str(3000 + os.getpid() % 1000)
    p = subprocess.Popen(["srun", "-w", slurm.node, "-N1", "-n1", "sleep", tag], env=slurm.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = _task_pid(tag)
        job = slurm.run("squeue", "-h", "-o", "%i").split()
        assert len(job) == 1
        yield job[0], pid
    finally:
        p.terminate()
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()


def test_real_srun_task_is_its_job(srun_job: tuple[str, int]) -> None:
    job, pid = srun_job
    assert job_of(pid) == JobRef("slurm", job, "", pid)


def test_daemon_names_the_job_a_fault_hit(slurm: SlurmCluster, srun_job: tuple[str, int],
                                          tmp_path: Path) -> None:
    job, pid = srun_job
    scenario = tmp_path / "hit.toml"
    scenario.write_text(f"""
description = "A real Slurm job's process on GPU 3, which falls off the bus 3 s in."
[[process]]
gpu = 3
pids = [{pid}]
[[event]]
kind = "fall_off_bus"
at = 3.0
gpu = 3
""")
    cfg = tmp_path / "rasd.toml"
    cfg.write_text(f"""
[daemon]
state_path = "{tmp_path / 'rasd.db'}"
control_socket = "{tmp_path / 'control.sock'}"
[telemetry]
kernel_log = ""
[scheduler]
kind = "slurm"
node_name = "{slurm.node}"
slurm_conf = "{slurm.conf}"
jobs_info_metric = true
""")
    with rasd_daemon(tmp_path, "--scenario", str(scenario), config=str(cfg)) as (_, url):
        line = f'rasd_gpu_job_info{{gpu="3",job="{job}",kind="slurm",name=""}} 1.0'
        wait_for(lambda: line in http_get(url + "/metrics"), timeout=20)

        def hit() -> list[dict[str, object]] | None:
            r = subprocess.run([sys.executable, "-m", "rasd", "scheduler", "jobs", "--json",
                                "--socket", str(tmp_path / "control.sock")], capture_output=True,
                               text=True, timeout=30, check=False)
            rows = json.loads(r.stdout)["jobs"] if r.returncode == 0 else []
            return [row for row in rows if row["gpu"] == 3] or None

        rows = wait_for(hit, timeout=20)
        assert {(j["kind"], j["id"], j["pid"]) for r in rows for j in r["jobs"]} == \
            {("slurm", job, pid)}
        assert {r["fault"] for r in rows} >= {"xid:79"}
        r = subprocess.run([sys.executable, "-m", "rasd", "scheduler", "jobs", "--gpu", "3",
                            "--socket", str(tmp_path / "control.sock")], capture_output=True,
                           text=True, timeout=30, check=False)
        assert f"slurm job {job} (pid {pid})" in r.stdout, r.stdout + r.stderr

    # after the daemon: history names the jobs each decision hit
    r = subprocess.run([sys.executable, "-m", "rasd", "history", "--db", str(tmp_path / "rasd.db"),
                        "--gpu", "3"], capture_output=True, text=True, timeout=30, check=False)
    lines = [ln for ln in r.stdout.splitlines() if "xid 79" in ln.lower() or "xid:79" in ln]
    assert lines and all(f"slurm job {job} (pid {pid})" in ln for ln in lines), r.stdout
    r = subprocess.run([sys.executable, "-m", "rasd", "history", "--db", str(tmp_path / "rasd.db"),
                        "--json"], capture_output=True, text=True, timeout=30, check=False)
    hits = [d["jobs"] for d in json.loads(r.stdout)["decisions"] if d["fault"] == "xid:79"]
    assert hits and hits[0][0]["id"] == job


def test_status_names_the_jobs_on_each_gpu(srun_job: tuple[str, int], tmp_path: Path) -> None:
    job, pid = srun_job
    scenario = tmp_path / "procs.toml"
    scenario.write_text(f"[[process]]\ngpu = 5\npids = [{pid}]\n")
    r = subprocess.run([sys.executable, "-m", "rasd", "status", "--backend", "fake",
                        "--scenario", str(scenario)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert f"GPU 5 jobs: slurm job {job} (pid {pid})" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "rasd", "status", "--backend", "fake",
                        "--scenario", str(scenario), "--json"], capture_output=True, text=True,
                       timeout=60, check=False)
    gpus = {g["gpu"]: g for g in json.loads(r.stdout)["gpus"]}
    assert gpus[5]["jobs"] == [{"kind": "slurm", "id": job, "name": "", "pid": pid}]
