"""Settings of the scheduler integration ([scheduler])."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SchedulerKind(enum.Enum):
    NONE = "none"
    SLURM = "slurm"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How rasd takes its node out of service and brings it back, and how far it may go.

    No node is taken out (drain, taint, cordon) unless ``[actions] enforce`` is true; advisory
    runs log what they would do. Kubernetes node conditions inform only and are always kept.
    """

    kind: str = "none"  # none, slurm, kubernetes
    node_name: str = ""  # the node as the scheduler names it; "" = this host's short name
    # Disruption budget: nodes of the scope out for rasd's reasons before more are deferred.
    # A count ("2") or a share of the scope ("10%").
    max_nodes_out: str = "10%"
    # Circuit breaker: more than this share of the scope out for rasd's reasons within the
    # window trips it; it stays tripped until `rasd scheduler reset-breaker`.
    breaker_share: float = 0.5
    breaker_window_seconds: float = 300.0
    # How often a deferred decision is tried again.
    retry_seconds: float = 60.0
    # A node rasd took out comes back once no decision that needs it out is open and none
    # came for this long (the cure held).
    resume_hold_seconds: float = 600.0
    # A GPU reset needs the GPU idle: take the node out first.
    reset_needs_drain: bool = True
    # The scheduler cannot hold back one GPU alone: an excluded GPU takes the node out.
    exclude_gpu_drains_node: bool = True
    # Slurm
    partition: str = ""  # the budget's scope; "" = every node of the cluster
    scontrol: str = "scontrol"
    sinfo: str = "sinfo"
    slurm_conf: str = ""  # SLURM_CONF for the commands; "" = Slurm's default
    command_timeout_seconds: float = 30.0
    # Kubernetes
    label_selector: str = ""  # the budget's scope; "" = every node of the cluster
    cordon: bool = False  # also mark the node unschedulable (uncordon when rasd brings it back)
    taint_key: str = "rasd.io/gpu-unhealthy"
    events: bool = True  # a Kubernetes Event per decision
    # Which job each fault hit
    attribute_jobs: bool = True
    jobs_info_metric: bool = False  # rasd_gpu_job_info per GPU (job ids churn: off by default)
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"

    @property
    def kind_enum(self) -> SchedulerKind:
        return SchedulerKind(self.kind)

    def validate(self) -> list[str]:
        problems: list[str] = []
        kinds = [k.value for k in SchedulerKind]
        if self.kind not in kinds:
            problems.append(f"kind: {self.kind!r} is not one of {', '.join(kinds)}")
        elif self.kind == SchedulerKind.KUBERNETES.value and not _kube_available():
            problems.append('kind: "kubernetes" needs the kubernetes package; pip install '
                            '"rasd[kubernetes]"')
        try:
            parse_budget(self.max_nodes_out)
        except ValueError as e:
            problems.append(f"max_nodes_out: {e}")
        if not 0 < self.breaker_share <= 1:
            problems.append("breaker_share: must be above 0 and at most 1 (a share of the scope)")
        for name in ("breaker_window_seconds", "retry_seconds", "command_timeout_seconds"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be positive (seconds)")
        if self.resume_hold_seconds < 0:
            problems.append("resume_hold_seconds: must not be negative")
        if self.taint_key and "/" in self.taint_key and not self.taint_key.split("/", 1)[1]:
            problems.append("taint_key: needs a name after the prefix, e.g. rasd.io/gpu-unhealthy")
        return problems


@dataclass(frozen=True, slots=True)
class Budget:
    count: int | None  # at most this many nodes out
    percent: float | None  # or at most this share of the scope, in percent

    def limit(self, scope_nodes: int) -> int:
        """Nodes that may be out at once in a scope of ``scope_nodes`` (at least one)."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return max(1, int(scope_nodes * self.percent / 100.0))


def parse_budget(text: str) -> Budget:
    """``"2"`` -> at most 2 nodes; ``"10%"`` -> at most 10 % of the scope (never below one)."""
    t = text.strip()
    if t.endswith("%"):
        try:
            p = float(t[:-1])
        except ValueError:
            raise ValueError(f"{text!r} is not a count or a percent; use e.g. \"2\" or \"10%\"") from None
        if not 0 < p <= 100:
            raise ValueError(f"{text!r}: a percent must be above 0 and at most 100")
        return Budget(None, p)
    if not t.isdigit():
        raise ValueError(f"{text!r} is not a count or a percent; use e.g. \"2\" or \"10%\"")
    return Budget(int(t), None)


def _kube_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("kubernetes") is not None
