"""Runs rasd's NVML backend once and prints what it saw as JSON (one process per library setup).

The NVML library a process talks to is fixed when pynvml first loads ``libnvidia-ml.so.1``
(``LD_LIBRARY_PATH``) and NVIDIA's mock reads ``MOCK_NVML_CONFIG`` at ``nvmlInit``: so every
profile, failure mode or C stub is probed in a process of its own. Usage:

    python -m tests.contract.nvmlprobe [--polls N] [--xid-wait-ms MS]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from rasd.backends import open_backend
from rasd.backends.errors import BackendUnavailable, EventsFailed
from rasd.ladder.classify import Context, classify
from rasd.ladder.settings import LadderSettings
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller
from tests.contract.fieldcheck import both_ways


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "value") and hasattr(v, "name"):  # enums
        return v.value
    return v


def probe(polls: int, xid_wait_ms: int) -> dict[str, Any]:
    try:
        be = open_backend("nvml")
    except BackendUnavailable as e:
        return {"open_error": str(e)}
    adapter = be.adapter
    out: dict[str, Any] = {
        "node": _jsonable(adapter.node_identity("probe", "nvml")),
        "smoothing_refused": adapter.smoothing_refused,
        "gpus": [],
    }
    handles = adapter.gpus()
    pollers = [GpuPoller(g, 1.0, 10.0) for g in handles]
    agg = Aggregator()
    faults = []
    states = {}
    for _ in range(polls):
        for p in pollers:
            p.poll_once()
            st, ev = agg.update(p.view(), time.time())
            states[p.index] = st
            faults.extend(ev)
    try:
        es = adapter.xid_event_set()
        out["xid_registered"] = list(es.registered)
        xids = []
        deadline = time.monotonic() + xid_wait_ms / 1000.0
        while time.monotonic() < deadline:
            got = es.wait(min(100, xid_wait_ms))
            if got is not None:
                xids.append(list(got))
        out["xids"] = xids
        out["xid_lost"] = sorted(es.lost)
        es.close()
    except EventsFailed as e:
        out["xid_error"] = str(e)
    for g, p in zip(handles, pollers):
        st = states[g.index]
        power = None
        try:
            power = [list(x) if x else None for x in (g.instant_power(), g.instant_power())]
        except Exception as e:  # noqa: BLE001 - recorded for the test to judge
            power = repr(e)
        out["gpus"].append(
            {
                "index": g.index,
                "unopened": g.unopened,
                "health": st.health.value,
                "lost": p.view().lost,
                "identity": _jsonable(st.identity),
                "sample": _jsonable(st.sample),
                "unsupported": sorted(g.unsupported()),
                "errors": [[r, k, n] for (r, k), n in sorted(g.error_counts().items())],
                "smoothing_supported": g.smoothing_supported(),
                "instant_power": power,
                "fields_vs_calls": both_ways(g) if g.raw is not None and p.view().lost is None else None,
            }
        )
    settings = LadderSettings()
    decisions = []
    for f in faults:
        finding = classify(f, Context(), settings)
        decisions.append(
            {
                "gpu": f.gpu,
                "kind": f.kind.value,
                "details": _jsonable(dict(f.details)),
                "rung": finding.rung.label if finding else None,
            }
        )
    out["faults"] = decisions
    be.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", type=int, default=2)
    ap.add_argument("--xid-wait-ms", type=int, default=0)
    args = ap.parse_args(argv)
    json.dump(probe(args.polls, args.xid_wait_ms), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
