"""The scheduler integration's series: whether rasd took the node out, deferred decisions,
the disruption budget's scope, the circuit breaker, and (opt-in) the jobs on each GPU."""

from __future__ import annotations

from collections.abc import Iterable

from exporters.family import CounterFamily, Family, GaugeFamily

from rasd.snapshot import Snapshot

_DEFER_WHY = ("budget", "breaker", "scheduler_error")


def collect(snapshot: Snapshot) -> Iterable[Family]:
    st = snapshot.scheduler
    if st is None:
        return []
    out: list[Family] = []
    if st.jobs_metric:
        jobs = GaugeFamily(
            "rasd_gpu_job_info", "A job or pod with a process on the GPU (value 1); kind is "
            "slurm, kubernetes or none.", labels=["gpu", "kind", "job", "name"])
        for gpu, refs in sorted(st.jobs.items()):
            for j in sorted({(r.kind, r.id, r.name) for r in refs}):
                jobs.add_metric([str(gpu), *j], 1)
        out.append(jobs)
    info = GaugeFamily("rasd_scheduler_info", "The scheduler rasd acts through (value 1).",
                             labels=["kind", "node", "enforced"])
    info.add_metric([st.kind, st.node, "true" if st.enforced else "false"], 1)
    node_out = GaugeFamily(
        "rasd_scheduler_node_out", "1 while rasd holds the node out of service "
        "(Slurm drain; Kubernetes taint).", labels=["reason"])
    node_out.add_metric([st.reason], 1 if st.out_by_rasd else 0)
    deferred = GaugeFamily(
        "rasd_scheduler_deferred_decisions", "Decisions waiting to take the node out: the "
        "disruption budget is spent, the breaker is tripped, or the scheduler did not answer.",
        labels=["why"])
    counts = {w: 0 for w in _DEFER_WHY}
    for why, *_ in st.deferred:
        counts[why] = counts.get(why, 0) + 1
    for why, n in sorted(counts.items()):
        deferred.add_metric([why], n)
    oldest = GaugeFamily(
        "rasd_scheduler_deferred_oldest_seconds",
        "Age of the oldest deferred decision (0 when none).", labels=[])
    ages = [snapshot.time_wall - since for _, since, _, _ in st.deferred]
    oldest.add_metric([], max(ages, default=0.0))
    breaker = GaugeFamily(
        "rasd_scheduler_breaker_tripped", "1 while the circuit breaker holds back every "
        "decision that takes capacity (reset: rasd scheduler reset-breaker).", labels=[])
    breaker.add_metric([], 1 if st.breaker_tripped else 0)
    out += [info, node_out, deferred, oldest, breaker]
    if st.scope_nodes is not None:
        scope = GaugeFamily("rasd_scheduler_scope_nodes",
                                  "Nodes in the budget's scope at the last look.", labels=[])
        scope.add_metric([], st.scope_nodes)
        scope_out = GaugeFamily(
            "rasd_scheduler_scope_nodes_out",
            "Nodes of the scope out for rasd's reasons at the last look.", labels=[])
        scope_out.add_metric([], st.scope_out or 0)
        limit = GaugeFamily("rasd_scheduler_budget_max_nodes_out",
                                  "Nodes of the scope that may be out at once.", labels=[])
        limit.add_metric([], st.budget_limit or 0)
        out += [scope, scope_out, limit]
    c = st.counts
    for name, key, text in (
            ("rasd_scheduler_drains", "drains", "Times rasd took the node out."),
            ("rasd_scheduler_resumes", "resumes", "Times rasd brought the node back."),
            ("rasd_scheduler_breaker_trips", "breaker_trips", "Times the breaker tripped."),
            ("rasd_scheduler_errors", "errors", "Scheduler calls that failed.")):
        fam = CounterFamily(name, text, labels=[])
        fam.add_metric([], c.get(key, 0))
        out.append(fam)
    deferrals = CounterFamily("rasd_scheduler_deferrals",
                                    "Times a decision was deferred, by why.", labels=["why"])
    for why in _DEFER_WHY:
        deferrals.add_metric([why], c.get(f"deferrals:{why}", 0))
    out.append(deferrals)
    return out
