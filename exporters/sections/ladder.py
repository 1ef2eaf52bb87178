"""The repair ladder's series: the rung in force per GPU and per link, flags, faults, actions.

Rungs are exported twice: as a number (``rasd_gpu_repair_rung``: 0 none, 1 exception,
2 restart_process, 3 reset_gpu, 4 reboot_node, 5 rma), which alerts compare with ``>=``, and as
an ``_info`` series with value 1 whose labels name the rung, scope and reason for people.
"""

from __future__ import annotations

from typing import Iterable

from exporters.family import CounterFamily, Family, GaugeFamily

from rasd.snapshot import Snapshot


def collect(snapshot: Snapshot) -> Iterable[Family]:
    st = snapshot.ladder
    if st is None:
        return []
    rung = GaugeFamily(
        "rasd_gpu_repair_rung",
        "Repair rung in force for the GPU (0 none, 1 exception, 2 restart_process, 3 reset_gpu, "
        "4 reboot_node, 5 rma); scope is where the cure acts (gpu or node).",
        labels=["gpu", "scope"])
    rung_info = GaugeFamily(
        "rasd_gpu_repair_rung_info", "Rung in force for the GPU and why (value 1).",
        labels=["gpu", "rung", "scope", "reason"])
    link_rung = GaugeFamily(
        "rasd_gpu_nvlink_repair_rung",
        "Repair rung in force for one NVLink port (same numbers as rasd_gpu_repair_rung).",
        labels=["gpu", "link", "scope"])
    link_info = GaugeFamily(
        "rasd_gpu_nvlink_repair_rung_info", "Rung in force for one NVLink port and why (value 1).",
        labels=["gpu", "link", "rung", "reason"])
    link_disabled = GaugeFamily(
        "rasd_gpu_nvlink_disabled", "1 when the ladder asks for the link to be disabled.",
        labels=["gpu", "link"])
    node_rung = GaugeFamily(
        "rasd_node_repair_rung", "Highest repair rung in force on the node.", labels=[])
    open_d = GaugeFamily(
        "rasd_gpu_repair_open_decisions", "Open ladder decisions on the GPU and its links.",
        labels=["gpu"])
    excluded = GaugeFamily(
        "rasd_gpu_excluded", "1 when the GPU should be kept out of scheduling.", labels=["gpu"])
    suspect = GaugeFamily(
        "rasd_gpu_sdc_suspect", "1 while the GPU is suspected of silent data corruption.",
        labels=["gpu"])
    tech = GaugeFamily(
        "rasd_gpu_technician_flag", "1 for each fault on the GPU (or its links) a technician "
        "should look at.", labels=["gpu", "fault"])
    node_tech = GaugeFamily(
        "rasd_node_technician_flag", "1 when the node itself needs a technician.",
        labels=["reason"])
    rma_len = GaugeFamily(
        "rasd_ladder_rma_queue_length", "GPUs waiting for an RMA.", labels=[])
    faults = CounterFamily(
        "rasd_ladder_faults", "Fault events the ladder weighed, by kind and the rung decided.",
        labels=["gpu", "kind", "rung"])
    actions = CounterFamily(
        "rasd_ladder_actions", "Actions run (enforced mode), by kind and result.",
        labels=["gpu", "action", "result"])
    decisions = CounterFamily(
        "rasd_ladder_decisions", "Decisions made since rasd started.", labels=[])
    skipped = CounterFamily(
        "rasd_ladder_plans_skipped", "Remedy plans that could not run when decided, by why (busy: "
        "another of rasd's remedies still runs on the GPU or link; rate_limited); each waits and is "
        "tried again while its decision is open.", labels=["why"])
    retried = CounterFamily(
        "rasd_ladder_plans_retried", "Skipped remedy plans tried again once they could run.", labels=[])
    waiting = GaugeFamily(
        "rasd_ladder_plans_waiting", "Skipped remedy plans waiting to be tried again.", labels=[])
    oldest = GaugeFamily(
        "rasd_ladder_plans_waiting_oldest_seconds",
        "How long the longest-waiting skipped remedy plan has waited (0 when none waits).", labels=[])

    for g, c in sorted(st.gpus.items()):
        gl = str(g)
        one = (gl,)  # one label tuple for the GPU's single-label series
        rung.add_metric([gl, c.scope.value], float(int(c.rung)))
        rung_info.add_metric([gl, c.rung.label, c.scope.value, c.reason], 1.0)
        n_open = len(c.open) + sum(len(lc.open) for (lg, _), lc in st.links.items() if lg == g)
        open_d.add_metric(one, float(n_open))
        excluded.add_metric(one, 1.0 if g in st.excluded else 0.0)
        suspect.add_metric(one, 1.0 if g in st.suspect else 0.0)
    flagged: set[tuple[str, str]] = set()
    for c in list(st.gpus.values()) + list(st.links.values()):
        for fault in c.technician:
            flagged.add((str(c.gpu), fault))
    for gl, fault in sorted(flagged):
        tech.add_metric([gl, fault], 1.0)
    for (g, ln), c in sorted(st.links.items()):
        link_rung.add_metric([str(g), str(ln), c.scope.value], float(int(c.rung)))
        link_info.add_metric([str(g), str(ln), c.rung.label, c.reason], 1.0)
        link_disabled.add_metric([str(g), str(ln)], 1.0 if "disable_link" in c.degradations
                                 else 0.0)
    node_rung.add_metric([], float(int(st.node_rung)))
    for reason in st.node_technician:
        node_tech.add_metric([reason], 1.0)
    rma_len.add_metric([], float(len(st.rma_queue)))
    for (g, kind, r), n in sorted(st.faults.items()):
        faults.add_metric([str(g), kind, r], float(n))
    for (g, kind, result), n in sorted(st.actions.items()):
        actions.add_metric([str(g), kind, result], float(n))
    decisions.add_metric([], float(st.decisions_total))
    for why, n in sorted(st.plans_skipped.items()):
        skipped.add_metric([why], float(n))
    retried.add_metric([], float(st.plans_retried))
    waiting.add_metric([], float(st.plans_waiting))
    oldest.add_metric([], float(st.plans_waiting_oldest_seconds))
    return [rung, rung_info, link_rung, link_info, link_disabled, node_rung, open_d, excluded,
            suspect, tech, node_tech, rma_len, faults, actions, decisions, skipped, retried, waiting, oldest]
