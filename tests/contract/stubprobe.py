"""Drives rasd's NVML adapter, under the real pynvml, against the C stub (``nvmlstub.c``).

Run in a process whose LD_LIBRARY_PATH holds the compiled stub; prints JSON. Usage:

    python -m tests.contract.stubprobe smoothing|renumbered|by_value|open|events
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

from rasd.backends.errors import ControlError, GpuLost
from rasd.backends.nvml import NvmlAdapter, pynvml_module


class Renumbered:
    """pynvml as an R575 build of nvidia-ml-py numbers the smoothing fields (5 ids higher)."""

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        v = getattr(self._real, name)
        return v + 5 if name.startswith("NVML_FI_PWR_SMOOTHING_") else v


def smoothing(lib: Any) -> dict[str, Any]:
    adapter = NvmlAdapter(lib)
    adapter.open()
    g = adapter.gpus()[0]
    out: dict[str, Any] = {"refused": adapter.smoothing_refused, "supported": g.smoothing_supported()}
    try:
        out["readback"] = g.apply_smoothing(60, 2000, 1000, 100, profile_id=1)
        g.disable_smoothing()
    except ControlError as e:
        out["error"] = str(e)
    adapter.close()
    return out


def by_value(lib: Any) -> dict[str, Any]:
    """What the adapter used to do: hand pynvml the struct itself (no argtypes are declared)."""
    lib.nvmlInit()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    st = lib.c_nvmlPowerSmoothingState_v1_t()
    st.state = lib.NVML_FEATURE_ENABLED
    out: dict[str, Any] = {}
    try:
        lib.nvmlDevicePowerSmoothingSetState(h, st)
        out["by_value"] = "accepted"
    except lib.NVMLError as e:
        out["by_value"] = str(e)
    lib.nvmlDevicePowerSmoothingSetState(h, ctypes.byref(st))
    out["by_reference"] = "accepted"
    lib.nvmlShutdown()
    return out


def open_each(lib: Any) -> dict[str, Any]:
    adapter = NvmlAdapter(lib)
    adapter.open()
    gpus = []
    for g in adapter.gpus():
        entry: dict[str, Any] = {"index": g.index, "unopened": g.unopened}
        try:
            entry["uuid"] = g.identity().uuid
            g.poll()
            entry["polled"] = True
        except GpuLost as e:
            entry["lost"] = e.detail
        gpus.append(entry)
    es = adapter.xid_event_set()
    out = {"gpus": gpus, "registered": es.registered}
    es.close()
    adapter.close()
    return out


def events(lib: Any) -> dict[str, Any]:
    adapter = NvmlAdapter(lib)
    adapter.open()
    es = adapter.xid_event_set()
    waits = [es.wait(10) for _ in range(5)]
    out = {"waits": waits, "lost": sorted(es.lost), "registered": es.registered}
    es.close()
    adapter.close()
    return out


MODES = {"smoothing": smoothing, "by_value": by_value, "open": open_each, "events": events}


def main() -> int:
    mode = sys.argv[1]
    lib: Any = pynvml_module()
    if mode == "renumbered":
        lib, mode = Renumbered(lib), "smoothing"
    json.dump(MODES[mode](lib), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
