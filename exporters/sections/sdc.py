"""SDC checks: last result, time and duration per GPU and check, accusations, GEMM rate, and
whether the checks can run on the node (why not, and when they are tried again).

Whether a GPU is suspect is the ladder's to say (``rasd_gpu_sdc_suspect``, ladder section): an
accusation reaches it as a fault event, and the ladder's decision is what excludes the GPU."""

from __future__ import annotations

from typing import Iterable

from exporters.family import CounterFamily, Family, GaugeFamily

from rasd.snapshot import SdcState, Snapshot

RESULTS = ("pass", "fail", "inconclusive")
UNAVAILABLE_KINDS = ("transient", "permanent")
_OUTCOME = {"suspect": "opened"}  # an accusation that is opened marks the GPU suspect


def collect(snapshot: Snapshot) -> Iterable[Family]:
    st = snapshot.sdc
    if st is None:
        return
    result = GaugeFamily("rasd_sdc_check_result", "Last result of an SDC check (1 for the current result, 0 for the others).",
                               labels=["gpu", "check", "result"])
    last = GaugeFamily("rasd_sdc_check_last_run_timestamp_seconds", "Unix time an SDC check last finished.",
                             labels=["gpu", "check"])
    duration = GaugeFamily("rasd_sdc_check_last_duration_seconds", "How long the last run of an SDC check took.",
                                 labels=["gpu", "check"])
    for c in st.checks:
        for r in RESULTS:
            result.add_metric([str(c.gpu), c.check, r], 1.0 if c.result == r else 0.0)
        last.add_metric([str(c.gpu), c.check], c.time_wall)
        duration.add_metric([str(c.gpu), c.check], c.seconds)
    yield result
    yield last
    yield duration
    runs = CounterFamily("rasd_sdc_check_runs", "SDC check runs by result.", labels=["gpu", "check", "result"])
    for (gpu, check, r), n in sorted(st.runs.items()):
        runs.add_metric([str(gpu), check, r], n)
    yield runs
    seconds = CounterFamily("rasd_sdc_check_duration_seconds", "Time spent in SDC checks.", labels=["gpu", "check"])
    for (gpu, check), s in sorted(st.check_seconds.items()):
        seconds.add_metric([str(gpu), check], s)
    yield seconds
    acc = CounterFamily("rasd_sdc_accusations", "SDC accusations by outcome (opened, confirmed, cleared, inconclusive).",
                              labels=["gpu", "outcome"])
    for (gpu, outcome), n in sorted(st.accusations.items()):
        acc.add_metric([str(gpu), _OUTCOME.get(outcome, outcome)], n)
    yield acc
    technician = GaugeFamily("rasd_sdc_technician_flag", "1 when repeated unreproduced accusations ask for a person's look.",
                                   labels=["gpu"])
    running = GaugeFamily("rasd_sdc_check_running", "1 while an SDC check runs on the GPU.", labels=["gpu"])
    for g in st.gpus:
        technician.add_metric([str(g)], 1.0 if g in st.technician else 0.0)
        running.add_metric([str(g)], 1.0 if g in st.running else 0.0)
    yield technician
    yield running
    rate = GaugeFamily("rasd_sdc_gemm_flops_per_second", "GEMM rate the last SDC check measured (FLOP/s).",
                             labels=["gpu"])
    for g, gflops in sorted(st.gflops.items()):
        rate.add_metric([str(g)], gflops * 1e9)
    yield rate
    yield from _availability(st)


def _availability(st: SdcState) -> Iterable[Family]:
    u = st.unavailable
    kind = None if u is None else ("permanent" if u.permanent else "transient")
    unavailable = GaugeFamily(
        "rasd_sdc_checks_unavailable",
        "1 for the kind of reason SDC checks cannot run on the node now, 0 for the other; both 0 while they "
        "can: transient (tried again after a back-off) or permanent (no engine library installed; not tried "
        "again until a restart). The reason itself is in the log and rasd validate's answer.", labels=["kind"])
    for k in UNAVAILABLE_KINDS:
        unavailable.add_metric([k], 1.0 if k == kind else 0.0)
    yield unavailable
    retry = GaugeFamily("rasd_sdc_checks_retry_timestamp_seconds",
                        "Unix time from which unavailable SDC checks are tried again (0 when no retry waits: "
                        "the checks can run, or the reason is permanent).")
    retry.add_metric([], 0.0 if u is None or u.retry_wall is None else u.retry_wall)
    yield retry
    yield CounterFamily("rasd_sdc_checks_unavailable_tries",
                        "Tries to build or run the SDC checks that found them unavailable (the first of a spell "
                        "is logged, the rest only counted).", value=float(st.unavailable_tries))
