"""rasd's fake NVML and NVIDIA's mock agree wherever both answer, except the readings listed here.

Both run under the same adapter; the mock through the real pynvml and its C library. For every
profile both model, every reading of GPU 0 is compared; a difference is allowed only where
MAY_DIFFER (all profiles) or PROFILE_DIFFERS (one profile) names the reading, with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.fake.clock import ManualClock
from rasd.backends.nvml import NvmlAdapter, pynvml_module

# The profiles both model (fake profile, mock profile).
COMMON = {"h100": "h100", "a100": "a100", "b200": "b200", "gb200": "gb200"}

# Readings that may differ on every profile, and why.
MAY_DIFFER: dict[str, str] = {
    # the fake models a training job (power, heat, clocks, memory in use); the mock is idle
    "power_instant_watts": "the fake runs a training load, the mock sits idle",
    "power_average_watts": "the fake runs a training load, the mock sits idle",
    "temperature_gpu_celsius": "follows the load",
    "temperature_memory_celsius": "follows the load",
    "clock_sm_hz": "follows the load (the mock idles at its lowest clock)",
    "clock_memory_hz": "the fake reports the part's HBM clock, the mock a fixed idle value",
    "clock_event_reasons": "the mock reports the GPU idle (bit 0), the fake a running job",
    "utilization_gpu_ratio": "follows the load",
    "utilization_memory_ratio": "follows the load",
    "memory_used_bytes": "the fake's job holds memory; nothing runs on the mock",
    "energy_joules": "the fake counts from its own start; the mock from a configured boot value",
    # NVML mechanisms
    "retired_pages_single_bit": "Ampere and newer remap rows instead of retiring pages: the fake "
    "answers NotSupported there, the mock an empty list (a real driver's answer is to be confirmed)",
    "retired_pages_double_bit": "as retired_pages_single_bit",
    "retired_pages_pending": "as retired_pages_single_bit",
    "recovery_action": "the mock answers field 230 (recovery action) NotSupported",
    # bookkeeping, not readings
    "time_wall": "when the poll ran",
    "time_mono": "when the poll ran",
    "poll_seconds": "how long the poll took",
    "slow_time_mono": "when the slow counters were read",
    "uuid": "identities are generated per node",
    "serial": "identities are generated per node",
    "pci_bus_id": "bus numbers differ per board layout",
    "vbios_version": "firmware builds differ",
}
# Readings that may differ on one profile only, and why.
PROFILE_DIFFERS: dict[str, dict[str, str]] = {
    "a100": {
        "name": "the fake models the 80 GB A100, the mock's stock profile the 40 GB one",
        "memory_total_bytes": "80 GB versus 40 GB part",
    },
    "b200": {
        "nvlink_count": "the mock's B200 profile is NVIDIA's standalone negative control (no NVSwitch, 0 links)",
        "nvlinks": "follows nvlink_count",
        "memory_total_bytes": "the fake reports the usable 180 GB, the mock 192 GiB",
        "power_limit_min_watts": "Blackwell limit ranges depend on the board; each models another one",
        "power_limit_max_watts": "as power_limit_min_watts",
        "pcie_link_gen": "the mock's host is PCIe Gen6, the fake's Gen5",
        "pcie_link_gen_max": "as pcie_link_gen",
    },
    "gb200": {
        "nvlinks": "nvmlDeviceGetNvLinkErrorCounter is NotSupported on Blackwell (its counters moved to "
        "new field ids): the fake answers so, the mock answers 0",
        "memory_total_bytes": "the fake reports the usable 186 GB, the mock 192 GiB",
        "power_limit_watts": "GB200 power limits depend on the board configuration; each models another one",
        "power_limit_default_watts": "as power_limit_watts",
        "power_limit_min_watts": "as power_limit_watts",
        "pcie_link_gen": "the mock's host is PCIe Gen6, the fake's Gen5",
        "pcie_link_gen_max": "as pcie_link_gen",
    },
}


def _fake(profile: str) -> dict[str, Any]:
    node = FakeNode(profile=profile, gpu_count=1, clock=ManualClock(100.0))
    adapter = NvmlAdapter(FakeNvml(node, pynvml_module()))
    adapter.open()
    try:
        g = adapter.gpus()[0]
        sample = dataclasses.asdict(g.poll())
        ident = dataclasses.asdict(g.identity())
        return {"sample": sample, "identity": ident, "unsupported": sorted(g.unsupported())}
    finally:
        adapter.close()


def _flat(got: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in got["sample"].items() if k != "index"}
    out["nvlinks"] = [{k: v for k, v in ln.items()} for ln in got["sample"]["nvlinks"]]
    out.update({k: v for k, v in got["identity"].items() if k != "index"})
    return out


@pytest.mark.parametrize("profile", sorted(COMMON))
def test_fake_and_mock_agree_except_where_listed(runs: dict[str, Any], profile: str) -> None:
    fake = _flat(_fake(profile))
    mock = _flat(runs[COMMON[profile]]["gpus"][0])
    assert set(fake) == set(mock)
    allowed = {**MAY_DIFFER, **PROFILE_DIFFERS.get(profile, {})}
    differ = {k: (fake[k], mock[k]) for k in fake if fake[k] != mock[k] and k not in allowed}
    assert differ == {}, "fake and mock differ where they should agree (fake, mock)"


def test_every_listed_difference_has_a_reason_and_names_a_reading(runs: dict[str, Any]) -> None:
    names = set(_flat(runs["h100"]["gpus"][0]))
    for table in (MAY_DIFFER, *PROFILE_DIFFERS.values()):
        for reading, why in table.items():
            assert reading in names and why.strip(), reading


def test_unsupported_readings_differ_only_as_listed(runs: dict[str, Any]) -> None:
    """The mock lacks only the recovery action; the fake lacks only what its profile says."""
    for profile in COMMON:
        fake = set(_fake(profile)["unsupported"])
        mock = set(runs[COMMON[profile]]["gpus"][0]["unsupported"])
        assert mock == {"recovery_action"}
        assert fake - {"retired_pages", "retired_pages_pending", "nvlink_crc_flit", "nvlink_crc_data",
                       "nvlink_replay", "nvlink_recovery"} == set(), fake
