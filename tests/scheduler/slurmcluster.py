"""A real single-node Slurm cluster from Debian's packages, for tests (root only).

munged runs with its own key and socket in a temp dir; slurmctld and one slurmd run on 127.0.0.1
with ports found free; more nodes are configured without a slurmd (they can still be drained by
``scontrol``, which is all the budget tests need). Clients find the cluster through SLURM_CONF.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo", "srun")


def missing_reason() -> str | None:
    """Why no cluster can start here, or None."""
    if os.geteuid() != 0:
        return "the real Slurm cluster needs root (slurmd, munged); run tests/run.sh as root"
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (f"Slurm programs missing ({', '.join(missing)}); tests/run.sh installs "
                "slurmctld slurmd slurm-client munge")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """``node`` runs a slurmd; ``extra`` nodes are configured only. Those are partition ``gpu``;
    one more configured node, ``cpux1``, is partition ``cpu`` (outside a gpu-scoped budget)."""

    def __init__(self, root: Path, extra: int = 3, node: str = "rasd0"):
        self.root = root
        self.node = node
        self.extra = [f"rasdx{i}" for i in range(1, extra + 1)]
        self.partition = "gpu"
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket.2"
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> list[str]:
        return [self.node, *self.extra]

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self) -> SlurmCluster:
        m = self.root / "munge"
        m.mkdir(mode=0o700)
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                     f"--key-file={key}", f"--pid-file={m / 'munged.pid'}",
                     f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"],
                    m / "munged.out")
        self._wait(lambda: self.munge_socket.exists(), "munged socket")
        for d in ("state", "spool", "log"):
            (self.root / d).mkdir()
        host = socket.gethostname().split(".")[0]
        ctl, slurmd = _free_port(), _free_port()
        extra = (f"NodeName={self.extra[0][:-1]}[1-{len(self.extra)}] NodeAddr=127.0.0.1 "
                 f"CPUs=1 State=UNKNOWN\n") if self.extra else ""
        r = self.root
        self.conf.write_text(f"""\
ClusterName=rasdtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd-%n.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd-%n.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
SchedulerType=sched/backfill
NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={host} CPUs=1 State=UNKNOWN
{extra}NodeName=cpux1 NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN
PartitionName={self.partition} Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=cpux1 MaxTime=INFINITE State=UP
""")
        self._spawn(["slurmctld", "-D", "-f", str(self.conf), "-i"], r / "log" / "slurmctld.out")
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), "slurmctld")
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.node],
                    r / "log" / "slurmd.out")
        self._wait(lambda: self._ok(["sinfo", "-h", "-n", self.node, "-o", "%T"], "idle"),
                   f"node {self.node} idle")
        # out of UNKNOWN (which cannot be resumed) into IDLE, not responding
        for names in ([f"{self.extra[0][:-1]}[1-{len(self.extra)}]"] if self.extra else []) + ["cpux1"]:
            self.run("scontrol", "update", f"nodename={names}", "state=down", "reason=setup")
            try:
                self.run("scontrol", "update", f"nodename={names}", "state=resume")
            except RuntimeError:
                # its address is this host's slurmd: a ping may answer first and return it to
                # service by itself (ReturnToService=2), and an idle node cannot be resumed
                if self._states(names) != {"idle"}:
                    raise
        return self

    def _states(self, names: str) -> set[str]:
        p = subprocess.run(["sinfo", "-h", "-n", names, "-o", "%T"], env=self.env, capture_output=True,
                           text=True, timeout=10, check=False)
        return set(p.stdout.split()) if p.returncode == 0 else set()

    def run(self, *argv: str) -> str:
        p = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                           timeout=30, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout

    def _ok(self, argv: list[str], want: str) -> bool:
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=10,
                           check=False)
        return p.returncode == 0 and want in p.stdout.split()

    def _spawn(self, argv: list[str], out: Path) -> None:
        with open(out, "wb") as f:
            self._procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=self.env))

    def _wait(self, cond: object, what: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if callable(cond) and cond():
                return
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited ({p.returncode}) waiting for {what}; "
                                       f"logs in {self.root}")
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.root}")

    def stop(self) -> None:
        for p in reversed(self._procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self._procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
