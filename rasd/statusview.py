"""GPU states as plain JSON objects: what ``rasd status`` prints, from a one-shot poll or from the
running daemon's latest snapshot (the control socket's ``status`` op), in one shape."""

from __future__ import annotations

from typing import Any

from rasd.model import GpuState, NodeIdentity
from rasd.snapshot import Snapshot


def node_json(n: NodeIdentity) -> dict[str, Any]:
    return {
        "hostname": n.hostname, "backend": n.backend, "driver_version": n.driver_version,
        "nvml_version": n.nvml_version, "cuda_driver_version": n.cuda_driver_version,
    }


def _links(st: GpuState) -> tuple[int, int] | None:
    if st.sample is None or not st.sample.nvlinks:
        return None
    return sum(1 for ln in st.sample.nvlinks if ln.up), len(st.sample.nvlinks)


def gpu_json(st: GpuState) -> dict[str, Any]:
    """One GPU: identity, health, the readings an operator looks at first (units in the keys)."""
    s = st.sample
    ident = st.identity
    links = _links(st)
    watts = st.power_watts if st.power_watts is not None else (s.power_instant_watts if s else None)
    return {
        "gpu": st.index,
        "uuid": ident.uuid if ident else None,
        "name": ident.name if ident else None,
        "pci_bus_id": ident.pci_bus_id if ident else None,
        "health": st.health.value,
        "lost_reason": st.lost_reason.value if st.lost_reason else None,
        "lost_detail": st.lost_detail,
        "power_watts": watts,
        "power_limit_watts": s.power_limit_watts if s else None,
        "temperature_gpu_celsius": s.temperature_gpu_celsius if s else None,
        "temperature_memory_celsius": s.temperature_memory_celsius if s else None,
        "ecc_volatile_corrected": s.ecc_volatile_corrected if s else None,
        "ecc_volatile_uncorrected": s.ecc_volatile_uncorrected if s else None,
        "remapped_rows_correctable": s.remapped_rows_correctable if s else None,
        "remapped_rows_uncorrectable": s.remapped_rows_uncorrectable if s else None,
        "remap_pending": s.remap_pending if s else None,
        "remap_failure": s.remap_failure if s else None,
        "nvlinks_up": links[0] if links else None,
        "nvlinks_total": links[1] if links else None,
        "recent_xids": [{"time": x.time_wall, "xid": x.xid, "message": x.message} for x in st.recent_xids],
        "unsupported": sorted(st.unsupported),
        "errors": {f"{r}:{k}": n for (r, k), n in st.errors.items()},
    }


def snapshot_json(snap: Snapshot | None) -> dict[str, Any]:
    """The daemon's view: its node and every GPU as of its last health poll."""
    if snap is None:
        return {"node": None, "gpus": [], "time": None}
    # The jobs on each GPU come from the scheduler stage's attribution (empty when it is off), so
    # the daemon's view names them as a one-shot poll does.
    jobs = snap.scheduler.jobs if snap.scheduler is not None else {}
    gpus = [dict(gpu_json(g), jobs=[j.to_dict() for j in jobs.get(g.index, ())]) for g in snap.gpus]
    return {"node": node_json(snap.node), "gpus": gpus, "time": snap.time_wall}
