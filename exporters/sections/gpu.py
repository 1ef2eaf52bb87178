"""Per-GPU telemetry. An absent reading (NotSupported, failed this poll) is no series at all,
never 0 or NaN; a lost GPU keeps its identity and says ``rasd_gpu_up 0``."""

from __future__ import annotations

import functools
from typing import Iterable

from exporters.family import Family
from rasd.model import NVLINK_COUNTERS, GpuState, Health, nvlink_counter_name
from rasd.snapshot import Snapshot

CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

# (metric name, help, GpuSample field, scale)
_GAUGES = (
    ("rasd_gpu_power_average_watts", "Average power over NVML's averaging window (nvmlDeviceGetPowerUsage; 1 s on Ampere and newer).", "power_average_watts"),
    ("rasd_gpu_power_limit_watts", "Enforced power limit (nvmlDeviceGetEnforcedPowerLimit).", "power_limit_watts"),
    ("rasd_gpu_power_limit_default_watts", "Default power limit.", "power_limit_default_watts"),
    ("rasd_gpu_power_limit_min_watts", "Lowest settable power limit.", "power_limit_min_watts"),
    ("rasd_gpu_power_limit_max_watts", "Highest settable power limit.", "power_limit_max_watts"),
    ("rasd_gpu_utilization_ratio", "Share of the last sample period a kernel ran (0-1).", "utilization_gpu_ratio"),
    ("rasd_gpu_memory_utilization_ratio", "Share of the last sample period device memory was read or written (0-1).", "utilization_memory_ratio"),
    ("rasd_gpu_memory_used_bytes", "Device memory in use.", "memory_used_bytes"),
    ("rasd_gpu_memory_total_bytes", "Device memory installed.", "memory_total_bytes"),
    ("rasd_gpu_pcie_link_generation", "Current PCIe link generation.", "pcie_link_gen"),
    ("rasd_gpu_pcie_link_max_generation", "Maximum PCIe link generation.", "pcie_link_gen_max"),
    ("rasd_gpu_pcie_link_width", "Current PCIe link width (lanes).", "pcie_link_width"),
    ("rasd_gpu_pcie_link_max_width", "Maximum PCIe link width (lanes).", "pcie_link_width_max"),
    ("rasd_gpu_recovery_action", "NVML GPU recovery action (field 230): 0 none, 1 gpu reset, 2 node reboot, 3 drain p2p, 4 drain and reset.", "recovery_action"),
    ("rasd_gpu_poll_duration_seconds", "Time the last health poll of this GPU took.", "poll_seconds"),
)
_FLAGS = (
    ("rasd_gpu_ecc_enabled", "1 when ECC is on.", "ecc_enabled"),
    ("rasd_gpu_row_remap_pending", "1 when remapped rows wait for a GPU reset to take effect.", "remap_pending"),
    ("rasd_gpu_row_remap_failure", "1 when a row remap failed (an RMA criterion).", "remap_failure"),
    ("rasd_gpu_retired_pages_pending", "1 when retired pages wait for a reset (pre-Ampere).", "retired_pages_pending"),
)
_COUNTERS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    # name without _total, help, counter key, extra labels
    ("rasd_gpu_energy_joules", "Energy used since rasd started counting (driver resets folded in).", "energy_joules", {}),
    ("rasd_gpu_pcie_replays", "PCIe replays (nvmlDeviceGetPcieReplayCounter).", "pcie_replays", {}),
)


def _g(name: str, doc: str, labels: list[str]) -> Family:
    return Family(name, doc, "gauge", labels)


def _c(name: str, doc: str, labels: list[str]) -> Family:
    return Family(name, doc, "counter", labels)


def collect(snapshot: Snapshot) -> Iterable[Family]:
    gpus = snapshot.gpus
    info = _g("rasd_gpu_info", "Identity of each GPU (value 1).", ["gpu", "uuid", "name", "serial", "pci_bus_id", "vbios_version"])
    up = _g("rasd_gpu_up", "1 when the GPU answers NVML, 0 when it is lost or fell off the bus.", ["gpu"])
    lost = _g("rasd_gpu_lost_info", "Why the GPU is lost (value 1; present only while rasd_gpu_up is 0): gpu_is_lost (fallen off the bus or otherwise gone), no_permission, insufficient_power or irq_issue (nvmlDeviceGetHandleByIndex refused it), other.", ["gpu", "reason"])
    stale = _g("rasd_gpu_stale", "1 when the GPU's last poll overran its deadline (a hung NVML call); its other series are the last good values.", ["gpu"])
    last = _g("rasd_gpu_last_update_timestamp_seconds", "Unix time of the GPU's last good health poll.", ["gpu"])
    power = _g("rasd_gpu_power_watts", "Instant power (NVML field 186), latest distinct reading of the power sampler.", ["gpu"])
    rate = _g("rasd_gpu_power_sample_rate_hz", "Achieved rate of distinct instant-power updates (NVML refreshes about every 100 ms).", ["gpu"])
    dedup = _g("rasd_gpu_power_dedup_info", "How the power sampler recognises a repeated instant-power reading (value 1): timestamp (the field's NVML timestamp) or value (every read is stamped new, so an unchanged value is the repeat).", ["gpu", "method"])
    temp = _g("rasd_gpu_temperature_celsius", "Temperature by sensor (gpu die; memory: NVML field 82).", ["gpu", "sensor"])
    clock = _g("rasd_gpu_clock_hz", "Current clock by domain.", ["gpu", "clock"])
    reasons = _g("rasd_gpu_clock_event_reason_active", "1 for each active clock-event (throttle) reason (nvmlDeviceGetCurrentClocksEventReasons).", ["gpu", "reason"])
    gauges = {n: _g(n, d, ["gpu"]) for n, d, _ in _GAUGES}
    flags = {n: _g(n, d, ["gpu"]) for n, d, _ in _FLAGS}
    ecc_vol = _c("rasd_gpu_ecc_volatile_errors", "ECC errors since the last driver load, by type (monotonic across resets).", ["gpu", "type"])
    ecc_agg = _c("rasd_gpu_ecc_aggregate_errors", "ECC errors over the GPU's lifetime, by type.", ["gpu", "type"])
    remapped = _c("rasd_gpu_remapped_rows", "Rows remapped, by the kind of error that caused it.", ["gpu", "cause"])
    retired = _g("rasd_gpu_retired_pages", "Retired pages by cause (pre-Ampere mechanism).", ["gpu", "cause"])
    counters = {n: _c(n, d, ["gpu"]) for n, d, _, _ in _COUNTERS}
    nv_up = _g("rasd_gpu_nvlink_up", "1 when the NVLink port is up, 0 when down.", ["gpu", "link"])
    nv_err = _c("rasd_gpu_nvlink_errors", "NVLink data-link errors by type (nvmlDeviceGetNvLinkErrorCounter).", ["gpu", "link", "type"])
    xids = _c("rasd_gpu_xid_errors", "Xid events seen, by code (every occurrence counts).", ["gpu", "xid"])
    last_xid = _g("rasd_gpu_last_xid_timestamp_seconds", "Unix time of the GPU's latest Xid event.", ["gpu"])
    nvml_errors = _c("rasd_gpu_nvml_errors", "NVML calls that failed and were retried, by reading and kind.", ["gpu", "reading", "kind"])
    resets = _c("rasd_gpu_resets_detected", "Driver reloads or GPU resets detected because a raw NVML counter went backwards (the totals stay monotonic).", ["gpu"])
    overruns = _c("rasd_gpu_poll_overruns", "Health polls of this GPU that ran past their deadline.", ["gpu"])

    for st in gpus:
        g = str(st.index)
        gl = (g,)  # one label tuple for all of this GPU's single-label series (kept by the renderer)
        ident = st.identity
        if ident is not None:
            info.add((g, ident.uuid, ident.name, ident.serial or "", ident.pci_bus_id, ident.vbios_version or ""), 1)
        up.add(gl, 0 if st.health is Health.LOST else 1)
        if st.health is Health.LOST and st.lost_reason is not None:
            lost.add((g, st.lost_reason.value), 1)
        stale.add(gl, 1 if st.health is Health.STALE else 0)
        if st.last_update_wall is not None:
            last.add(gl, st.last_update_wall)
        overruns.add(gl, st.poll_overruns)
        resets.add(gl, st.counter_resets)
        for x, n in sorted(st.xid_counts.items()):
            xids.add((g, str(x)), n)
        if st.recent_xids:
            last_xid.add(gl, st.recent_xids[-1].time_wall)
        for (reading, kind), n in sorted(st.errors.items()):
            nvml_errors.add((g, reading, kind), n)
        if st.power_sample_rate_hz is not None:
            rate.add(gl, st.power_sample_rate_hz)
        if st.power_dedup is not None:
            dedup.add((g, st.power_dedup), 1)
        if st.health is Health.LOST:
            continue  # its last readings would be lies; identity and up=0 say what is known
        _sample_metrics(st, g, gl, power, temp, clock, reasons, gauges, flags, ecc_vol, ecc_agg, remapped, retired, counters, nv_up, nv_err)

    yield from (info, up, lost, stale, last, power, rate, dedup, temp, clock, reasons)
    yield from gauges.values()
    yield from flags.values()
    yield from (ecc_vol, ecc_agg, remapped, retired)
    yield from counters.values()
    yield from (nv_up, nv_err, xids, last_xid, nvml_errors, resets, overruns)


def _sample_metrics(st: GpuState, g: str, gl: tuple[str], power, temp, clock, reasons, gauges, flags, ecc_vol, ecc_agg, remapped, retired, counters, nv_up, nv_err) -> None:  # type: ignore[no-untyped-def]
    s = st.sample
    c = st.counters
    watts = st.power_watts if st.power_watts is not None else (s.power_instant_watts if s else None)
    if watts is not None:
        power.add(gl, watts)
    if s is None:
        return
    if s.temperature_gpu_celsius is not None:
        temp.add((g, "gpu"), s.temperature_gpu_celsius)
    if s.temperature_memory_celsius is not None:
        temp.add((g, "memory"), s.temperature_memory_celsius)
    if s.clock_sm_hz is not None:
        clock.add((g, "sm"), s.clock_sm_hz)
    if s.clock_memory_hz is not None:
        clock.add((g, "memory"), s.clock_memory_hz)
    if s.clock_event_reasons is not None:
        for bit, name in CLOCK_EVENT_REASONS.items():
            reasons.add((g, name), 1 if s.clock_event_reasons & bit else 0)
    for name, _doc, fld in _GAUGES:
        v = getattr(s, fld)
        if v is not None:
            gauges[name].add(gl, v)
    for name, _doc, fld in _FLAGS:
        v = getattr(s, fld)
        if v is not None:
            flags[name].add(gl, 1 if v else 0)
    for fam, key, typ in (
        (ecc_vol, "ecc_volatile_corrected", "corrected"),
        (ecc_vol, "ecc_volatile_uncorrected", "uncorrected"),
        (ecc_agg, "ecc_aggregate_corrected", "corrected"),
        (ecc_agg, "ecc_aggregate_uncorrected", "uncorrected"),
        (remapped, "remapped_rows_correctable", "correctable"),
        (remapped, "remapped_rows_uncorrectable", "uncorrectable"),
    ):
        if key in c:
            fam.add((g, typ), c[key])
    for key, cause in (("retired_pages_single_bit", "single_bit"), ("retired_pages_double_bit", "double_bit")):
        v = getattr(s, key)
        if v is not None:
            retired.add((g, cause), v)
    for name, _doc, key, _ in _COUNTERS:
        if key in c:
            counters[name].add(gl, c[key])
    # the bulk of a big node's series
    up_keys, up_values = nv_up.keys.append, nv_up.values.append
    err_keys, err_values = nv_err.keys.append, nv_err.values.append
    links = _gpu_links(g)
    for ln in s.nvlinks:
        labels = links.get(ln.link)
        if labels is None:
            labels = links[ln.link] = _link_rows(g, ln.link)
        if ln.up is not None:
            up_keys(labels[0])
            up_values(1 if ln.up else 0)
        for (key, _), err_labels in zip(_link_keys(ln.link)[1], labels[1:]):
            v = c.get(key)
            if v is not None:
                err_keys(err_labels)
                err_values(v)


@functools.lru_cache(maxsize=1024)
def _gpu_links(g: str) -> dict[int, tuple[tuple[str, ...], ...]]:
    """A GPU's links' label tuples (``_link_rows``) by link number, built once per link: a 72-GPU
    node has 1,300 links and 5,000 error series to export every scrape. A dict a GPU rather
    than a cache keyed by (gpu, link): 0.2 MB less at 72 GPUs (no key tuple and cache entry a
    link)."""
    return {}


def _link_rows(g: str, link: int) -> tuple[tuple[str, ...], ...]:
    """A link's up-series labels, then its error series' labels in ``_link_keys`` order. One
    flat tuple a link (the counter keys are the same for every GPU's link): 0.3 MB less at 72
    GPUs than pairs of key and labels."""
    ln, keys = _link_keys(link)
    return ((g, ln), *((g, ln, typ) for _, typ in keys))


@functools.lru_cache(maxsize=1024)
def _link_keys(link: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A link's number as a label and its (counter key, error type) pairs: the same strings for
    every GPU, so a big node's cached rows do not hold a copy of each per GPU."""
    return str(link), tuple((nvlink_counter_name(link, n), n.removesuffix("_errors")) for n in NVLINK_COUNTERS)
