"""The fake's power readings pinned to the bit over a scenario with load changes.

A script of reads at uneven moments (several within one 100 ms refresh, some after seconds of
silence, some of instant power alone) across a swinging training job with checkpoints, an idle GPU, a GPU reset, a power-limit
change and power smoothing switched on, retuned and off again. Every reading NVML returns (instant
power and its timestamp, the 1 s average, energy, temperature, clocks and their reasons) and the
model's own floats (delivered watts, temperature) must equal the recorded ones, so a change to how
the model is computed cannot change what it simulates.

The record (``data/power_pinned.json``) holds NVML's integer readings in full and a SHA-256 of the
floats' exact ``repr``. Regenerate it only for an intended change of the model:
``PYTHONPATH=. python3 -m tests.backends.test_power_pinned --write``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import random
import sys
import textwrap
from pathlib import Path
from typing import Any

from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake.scenario import parse_scenario
from rasd.backends.nvml import pynvml_module

PINNED = Path(__file__).parent / "data" / "power_pinned.json"

SCENARIO = """
    [node]
    profile = "gb200"
    gpus = 4
    seed = 7

    [workload]
    kind = "training"
    step_seconds = 1.3
    compute_fraction = 0.55
    compute_power_ratio = 1.05
    comm_power_ratio = 0.15
    jitter_ms = 3.0
    checkpoint_every_seconds = 10.0
    checkpoint_seconds = 1.5
    idle_gpus = [3]

    [[event]]
    kind = "reset"
    gpu = 2
    at = 15.0

    [[event]]
    kind = "thermal"
    gpu = 1
    at = 22.0
    duration_seconds = 4.0
    temperature_rise_celsius = 20.0
    reasons = ["sw_thermal"]
    """

# (seconds since start, action): what an operator or rasd's power control does mid-run
ACTIONS = (
    (8.02, "limit0"),
    (12.31, "smooth1"),
    (20.0, "retune1"),
    (28.7, "unsmooth1"),
    (30.4, "unlimit0"),
)


def _smoothing(lib: Any, base: Any, h: Any, params: tuple[float, ...] | None) -> None:
    if params is not None:
        p = base.c_nvmlPowerSmoothingProfile_v1_t()
        for param, value in enumerate(params):
            p.profileId, p.paramId, p.value = 2, param, float(value)
            lib.nvmlDevicePowerSmoothingUpdatePresetProfileParam(h, ctypes.byref(p))
        p.profileId = 2
        lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, ctypes.pointer(p))
    st = base.c_nvmlPowerSmoothingState_v1_t()
    st.state = base.NVML_FEATURE_ENABLED if params is not None else base.NVML_FEATURE_DISABLED
    lib.nvmlDevicePowerSmoothingSetState(h, ctypes.byref(st))


def _act(lib: Any, base: Any, action: str) -> None:
    h0, h1 = lib.nvmlDeviceGetHandleByIndex(0), lib.nvmlDeviceGetHandleByIndex(1)
    if action == "limit0":
        lib.nvmlDeviceSetPowerManagementLimit(h0, 700_000)
    elif action == "unlimit0":
        lib.nvmlDeviceSetPowerManagementLimit(h0, 1_200_000)
    elif action == "smooth1":  # floor %, ramp up mW/s, ramp down mW/s, hysteresis ms
        _smoothing(lib, base, h1, (55, 3_000_000, 1_500_000, 150))
    elif action == "retune1":
        _smoothing(lib, base, h1, (70, 800_000, 400_000, 40))
    else:
        _smoothing(lib, base, h1, None)


def readings() -> tuple[list[list[int]], str]:
    """(NVML's integer readings, one row per GPU read; SHA-256 of the floats' reprs)."""
    base = pynvml_module()
    clock = ManualClock(1000.0)
    node = FakeNode(scenario=parse_scenario(textwrap.dedent(SCENARIO), source="pinned.toml"), clock=clock,
                    wall_clock=lambda: 1_700_000_000.0)
    lib = FakeNvml(node, base)
    lib.nvmlInit()
    handles = [lib.nvmlDeviceGetHandleByIndex(g) for g in range(node.gpu_count)]
    fields = [186, base.NVML_FI_DEV_POWER_AVERAGE, base.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
    rng = random.Random(2024)
    gaps = (0.0004, 0.0031, 0.005, 0.0125, 0.02, 0.05, 0.07, 0.1, 0.1, 0.1, 0.25, 1.7)
    actions = list(ACTIONS)
    rows: list[list[int]] = []
    floats = hashlib.sha256()
    while node.elapsed() < 36.0:
        clock.advance(rng.choice(gaps))
        while actions and node.elapsed() >= actions[0][0]:
            _act(lib, base, actions.pop(0)[1])
        # GPUs 0 and 1 are read in full at every moment; 2 and 3 have their instant power read at
        # every moment (as the power sampler does) and the rest seldom, 3 so seldom that the
        # model's unread steps pile up for seconds
        for g in range(node.gpu_count):
            h = handles[g]
            if g >= 2 and rng.random() >= (0.2 if g == 2 else 0.03):
                inst = lib.nvmlDeviceGetFieldValues(h, [186])[0]
                rows.append([g, inst.value.uiVal, inst.timestamp - 1_700_000_000_000_000])
                continue
            inst, avg, energy = lib.nvmlDeviceGetFieldValues(h, fields)
            rows.append([
                g, inst.value.uiVal, inst.timestamp - 1_700_000_000_000_000, avg.value.uiVal, avg.timestamp % 10**9,
                energy.value.ullVal, lib.nvmlDeviceGetPowerUsage(h), lib.nvmlDeviceGetTotalEnergyConsumption(h),
                lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU),
                lib.nvmlDeviceGetClockInfo(h, base.NVML_CLOCK_SM),
                lib.nvmlDeviceGetCurrentClocksEventReasons(h),
            ])
            watts, temp = node.conditions(g)
            floats.update(f"{watts!r} {temp!r};".encode())
    return rows, floats.hexdigest()


def test_power_readings_are_pinned() -> None:
    rows, digest = readings()
    pinned = json.loads(PINNED.read_text())
    assert len(rows) == len(pinned["rows"])
    for i, (got, want) in enumerate(zip(rows, pinned["rows"])):
        assert got == want, f"read {i} differs"
    assert digest == pinned["floats_sha256"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.backends.test_power_pinned --write  (records the current model)")
    rows, digest = readings()
    PINNED.parent.mkdir(exist_ok=True)
    body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    PINNED.write_text(f'{{"floats_sha256": "{digest}",\n"rows": [\n{body}\n]}}\n')
    print(f"{PINNED}: {len(rows)} reads")
