"""Every reading the health poll takes from ``nvmlDeviceGetFieldValues``, read both ways.

For each reading of a GPU's slow poll that has a field standing in for its call
(rasd.backends.nvml.batch), the call is read, then the field entries, then the call again: the
field must answer what the call answers (between the two calls for values that move on their own).
Used in-process on the fake and on real NVML, and by ``nvmlprobe`` on NVIDIA's mock.
"""

from __future__ import annotations

from typing import Any

# readings that move between two reads on a live GPU: counters only grow, power moves both ways
GROWING = ("energy", "ecc_", "nvlink_", "pcie_replays")
MOVING = ("power_usage",)


def _plain(v: Any) -> Any:
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else v


def both_ways(handle: Any) -> list[dict[str, Any]]:
    """One row per field-read reading: its entries' nvmlReturn codes and the values both ways."""
    handle.poll()  # identity, link count and the readings' choice of call, as the daemon has them
    rows = []
    for b in handle._plan(True, True).readings:
        if b.call is None or not b.ids:
            continue
        before = _plain(b.call(handle))
        got = handle._field_entries(tuple(b.ids))
        after = _plain(b.call(handle))
        returns = None if got is None else [e[1] for e in got]
        field = _plain(b.shape(tuple(e[2] for e in got))) if got and not any(returns or ()) else None
        rows.append({"key": str(b.key), "reading": b.reading, "returns": returns, "field": field,
                     "call": [before, after]})
    return rows


def disagreements(rows: list[dict[str, Any]]) -> list[str]:
    """Rows where the field answered but not what the call answers."""
    bad = []
    for r in rows:
        field, (before, after) = r["field"], r["call"]
        if field is None or before is None or after is None:
            continue
        if r["reading"].startswith(GROWING):
            ok = before <= field <= after
        elif r["reading"] in MOVING:
            lo, hi = min(before, after), max(before, after)
            ok = lo * 0.8 <= field <= hi * 1.2
        else:
            ok = field == before == after
        if not ok:
            bad.append(f"{r['key']}: field {field}, call {before} then {after}")
    return bad
