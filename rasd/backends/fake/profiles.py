"""GPU models the fake NVML backend can simulate.

Numbers are the public data-sheet values (limits in watts, clocks in MHz) and what NVML reports on
those parts; ``None`` in a capability means NVML answers NotSupported there.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuProfile:
    key: str
    name: str  # nvmlDeviceGetName
    architecture: str
    power_limit_default_watts: float  # TDP / TGP
    power_limit_min_watts: float
    power_limit_max_watts: float
    idle_watts: float
    memory_bytes: int
    sm_clock_max_mhz: int
    sm_clock_idle_mhz: int
    memory_clock_mhz: int
    nvlink_count: int
    pcie_gen: int
    pcie_width: int
    temp_idle_celsius: float
    temp_busy_celsius: float  # at the default limit
    memory_temp_offset_celsius: float  # HBM runs this much hotter than the GPU die
    vbios_prefix: str
    pci_buses: tuple[int, ...]  # bus numbers of an 8-GPU board, in index order
    # Capabilities (False: NVML answers NotSupported)
    instant_power: bool = True  # field 186
    memory_temperature: bool = True  # field 82
    row_remapping: bool = True
    page_retirement: bool = False
    nvlink_error_counters: bool = True
    power_smoothing: bool = False
    recovery_action: bool = True  # field 230

    @property
    def pci_device_id(self) -> int:
        return _DEVICE_IDS.get(self.key, 0x233010DE)


_DEVICE_IDS = {
    "h100-sxm-80gb": 0x233010DE,
    "a100-sxm4-80gb": 0x20B210DE,
    "v100-sxm2-32gb": 0x1DB510DE,
    "gb200": 0x294110DE,
    "b200": 0x290110DE,
}

_HGX_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)

PROFILES: dict[str, GpuProfile] = {
    p.key: p
    for p in (
        GpuProfile(
            key="h100-sxm-80gb",
            name="NVIDIA H100 80GB HBM3",
            architecture="hopper",
            power_limit_default_watts=700.0,
            power_limit_min_watts=200.0,
            power_limit_max_watts=700.0,
            idle_watts=72.0,
            memory_bytes=80 * GIB,
            sm_clock_max_mhz=1980,
            sm_clock_idle_mhz=345,
            memory_clock_mhz=2619,
            nvlink_count=18,
            pcie_gen=5,
            pcie_width=16,
            temp_idle_celsius=32.0,
            temp_busy_celsius=70.0,
            memory_temp_offset_celsius=8.0,
            vbios_prefix="96.00.99.00",
            pci_buses=_HGX_BUSES,
        ),
        GpuProfile(
            key="a100-sxm4-80gb",
            name="NVIDIA A100-SXM4-80GB",
            architecture="ampere",
            power_limit_default_watts=400.0,
            power_limit_min_watts=100.0,
            power_limit_max_watts=400.0,
            idle_watts=60.0,
            memory_bytes=80 * GIB,
            sm_clock_max_mhz=1410,
            sm_clock_idle_mhz=210,
            memory_clock_mhz=1593,
            nvlink_count=12,
            pcie_gen=4,
            pcie_width=16,
            temp_idle_celsius=30.0,
            temp_busy_celsius=65.0,
            memory_temp_offset_celsius=6.0,
            vbios_prefix="92.00.45.00",
            pci_buses=(0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD),
        ),
        GpuProfile(
            # Pre-Ampere: page retirement instead of row remapping, no instant-power field,
            # no recovery-action field.
            key="v100-sxm2-32gb",
            name="Tesla V100-SXM2-32GB",
            architecture="volta",
            power_limit_default_watts=300.0,
            power_limit_min_watts=150.0,
            power_limit_max_watts=300.0,
            idle_watts=42.0,
            memory_bytes=32 * GIB,
            sm_clock_max_mhz=1530,
            sm_clock_idle_mhz=135,
            memory_clock_mhz=877,
            nvlink_count=6,
            pcie_gen=3,
            pcie_width=16,
            temp_idle_celsius=31.0,
            temp_busy_celsius=66.0,
            memory_temp_offset_celsius=4.0,
            vbios_prefix="88.00.80.00",
            pci_buses=(0x15, 0x16, 0x3A, 0x3B, 0x89, 0x8A, 0xB2, 0xB3),
            instant_power=False,
            row_remapping=False,
            page_retirement=True,
            recovery_action=False,
        ),
        GpuProfile(
            # Blackwell: power smoothing; the old NVLink error counters are NotSupported.
            key="gb200",
            name="NVIDIA GB200",
            architecture="blackwell",
            power_limit_default_watts=1200.0,
            power_limit_min_watts=200.0,
            power_limit_max_watts=1200.0,
            idle_watts=140.0,
            memory_bytes=186 * GIB,
            sm_clock_max_mhz=2062,
            sm_clock_idle_mhz=390,
            memory_clock_mhz=3996,
            nvlink_count=18,
            pcie_gen=5,
            pcie_width=16,
            temp_idle_celsius=33.0,
            temp_busy_celsius=72.0,
            memory_temp_offset_celsius=7.0,
            vbios_prefix="97.00.5B.00",
            pci_buses=(0x01, 0x02, 0x41, 0x42, 0x81, 0x82, 0xC1, 0xC2),
            nvlink_error_counters=False,
            power_smoothing=True,
        ),
        GpuProfile(
            key="b200",
            name="NVIDIA B200",
            architecture="blackwell",
            power_limit_default_watts=1000.0,
            power_limit_min_watts=200.0,
            power_limit_max_watts=1000.0,
            idle_watts=125.0,
            memory_bytes=180 * GIB,
            sm_clock_max_mhz=1965,
            sm_clock_idle_mhz=390,
            memory_clock_mhz=3996,
            nvlink_count=18,
            pcie_gen=5,
            pcie_width=16,
            temp_idle_celsius=33.0,
            temp_busy_celsius=71.0,
            memory_temp_offset_celsius=7.0,
            vbios_prefix="97.00.29.00",
            pci_buses=_HGX_BUSES,
            nvlink_error_counters=False,
            power_smoothing=True,
        ),
    )
}

ALIASES = {"h100": "h100-sxm-80gb", "a100": "a100-sxm4-80gb", "v100": "v100-sxm2-32gb"}


def get_profile(name: str) -> GpuProfile:
    """Look a profile up by key or alias; ``KeyError`` names the known ones."""
    key = ALIASES.get(name, name)
    try:
        return PROFILES[key]
    except KeyError:
        raise KeyError(
            f"unknown GPU profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}"
        ) from None
