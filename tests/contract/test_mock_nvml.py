"""rasd's real NVML backend, through the real pynvml, on NVIDIA's mock NVML (every stock profile).

Expected values come from NVIDIA's own profile files (mW, MHz, bytes, Celsius) and are compared with
what rasd reports in base units (W, Hz, bytes, Celsius, J). Each profile and failure mode is probed
in its own process (the library and its config are fixed at load and nvmlInit), all at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.contract.conftest import FAILED_GPU
from tests.contract.mocknvml import PROFILES, config, mock_dir

GIB = 1024**3
# NVLink ports each stock profile has, as NVML's link-count field reports them. The B200 profile
# is NVIDIA's standalone negative control (no NVSwitch): the mock reports no links there.
LINKS = {"h100": 18, "a100": 12, "b200": 0, "gb200": 18, "gb300": 18, "l40s": 0, "t4": 0}


def _spec(profile: str) -> dict[str, Any]:
    import yaml

    cfg: dict[str, Any] = yaml.safe_load(config(profile).read_text())
    return cfg


@pytest.mark.parametrize("profile", PROFILES)
def test_identity(runs: dict[str, Any], profile: str) -> None:
    got, spec = runs[profile], _spec(profile)
    devices = spec["devices"]
    assert len(got["gpus"]) == len(devices)
    assert got["node"]["driver_version"] == spec["system"]["driver_version"]
    for g, dev in zip(got["gpus"], devices):
        ident = g["identity"]
        assert ident["name"] == spec["device_defaults"]["name"]
        assert ident["uuid"] == dev["uuid"]
        assert ident["pci_bus_id"].upper().endswith(dev["pci"]["bus_id"].upper()[4:])
        assert ident["nvlink_count"] == LINKS[profile]


@pytest.mark.parametrize("profile", PROFILES)
def test_readings_in_base_units(runs: dict[str, Any], profile: str) -> None:
    spec = _spec(profile)["device_defaults"]
    power, thermal, clocks, pcie = spec["power"], spec["thermal"], spec["clocks"], spec["pcie"]
    for g in runs[profile]["gpus"]:
        s = g["sample"]
        assert g["health"] == "up" and g["errors"] == []
        assert s["power_instant_watts"] == power["current_draw_mw"] / 1000
        assert s["power_average_watts"] == power["current_draw_mw"] / 1000
        assert s["power_limit_watts"] == power["enforced_limit_mw"] / 1000
        assert s["power_limit_default_watts"] == power["default_limit_mw"] / 1000
        assert s["power_limit_min_watts"] == power["min_limit_mw"] / 1000
        assert s["power_limit_max_watts"] == power["max_limit_mw"] / 1000
        assert s["energy_joules"] == power.get("total_energy_consumption_mj", 0) / 1000
        assert s["temperature_gpu_celsius"] == thermal["temperature_gpu_c"]
        assert s["temperature_memory_celsius"] == thermal["temperature_memory_c"]
        assert s["clock_sm_hz"] == clocks["sm_current"] * 1e6
        assert s["clock_memory_hz"] == clocks["memory_current"] * 1e6
        assert s["memory_total_bytes"] == spec["memory"]["total_bytes"]
        assert s["pcie_link_gen"] == pcie["current_link_gen"]
        assert s["pcie_link_width_max"] == pcie["max_link_width"]
        assert s["ecc_enabled"] is True and s["ecc_volatile_uncorrected"] == 0
        assert 0.0 <= s["utilization_gpu_ratio"] <= 1.0
        # instant power: watts and a Unix-microsecond NVML timestamp
        (w1, ts1), (w2, ts2) = g["instant_power"]
        assert w1 == power["current_draw_mw"] / 1000 and 1.6e15 < ts1 <= ts2


@pytest.mark.parametrize("profile", PROFILES)
def test_link_counts_and_no_nvlink_series_without_nvlink(runs: dict[str, Any], profile: str) -> None:
    for g in runs[profile]["gpus"]:
        links = g["sample"]["nvlinks"]
        assert len(links) == LINKS[profile]
        assert all(ln["up"] is True for ln in links)


@pytest.mark.parametrize("profile", PROFILES)
def test_no_fault_and_no_decision_on_healthy_hardware(runs: dict[str, Any], profile: str) -> None:
    got = runs[profile]
    assert got["faults"] == []
    assert got["xids"] == [] and got["xid_registered"] == list(range(len(got["gpus"])))


@pytest.mark.parametrize("profile", PROFILES)
def test_unsupported_readings_are_named_and_the_mock_gaps_are_the_known_ones(
    runs: dict[str, Any], profile: str
) -> None:
    """The mock answers field 230 (recovery action) with NotSupported; nothing else is missing."""
    for g in runs[profile]["gpus"]:
        assert g["unsupported"] == ["recovery_action"]


@pytest.mark.parametrize("profile", PROFILES)
def test_power_smoothing_only_where_driver_and_binding_agree(runs: dict[str, Any], profile: str) -> None:
    got = runs[profile]
    driver = got["node"]["driver_version"]
    major, minor = (int(x) for x in driver.split(".")[:2])
    if major < 570:
        assert "predates power smoothing" in got["smoothing_refused"]
    elif major == 580 and minor < 82:  # gb200's 580.65: the R575 numbering
        assert "numbers the power-smoothing fields" in got["smoothing_refused"]
        assert got["stderr"].count("event=smoothing_refused") == 1
    else:
        assert got["smoothing_refused"] is None
    if got["smoothing_refused"]:
        assert not any(g["smoothing_supported"] for g in got["gpus"])


@pytest.mark.parametrize("mode", ["lost", "fallen_off_bus"])
def test_lost_gpu_is_down_with_a_decision_and_the_rest_run(runs: dict[str, Any], mode: str) -> None:
    got = runs[f"h100+{mode}"]
    for g in got["gpus"]:
        if g["index"] == FAILED_GPU:
            assert g["health"] == "lost" and "lost" in g["lost"].lower()
        else:
            assert g["health"] == "up" and g["sample"]["power_instant_watts"] == 95.0
    lost = [f for f in got["faults"] if f["kind"] == "gpu_lost"]
    assert [(f["gpu"], f["rung"]) for f in lost] == [(FAILED_GPU, "reboot_node")]  # the ladder's rule for a lost GPU
    assert [f for f in got["faults"] if f["kind"] != "gpu_lost"] == []


def test_uncorrectable_ecc_with_its_xid(runs: dict[str, Any]) -> None:
    got = runs["h100+ecc_uncorrectable"]
    assert got["xids"] == [[FAILED_GPU, 48]]
    bad = got["gpus"][FAILED_GPU]
    assert bad["health"] == "up" and bad["sample"]["ecc_volatile_uncorrected"] > 0
    ecc = [f for f in got["faults"] if f["kind"] == "ecc"]
    assert ecc and {f["gpu"] for f in ecc} == {FAILED_GPU}
    assert {f["rung"] for f in ecc} == {"reset_gpu"}
    assert all(g["sample"]["ecc_volatile_uncorrected"] == 0 for g in got["gpus"] if g["index"] != FAILED_GPU)


def test_the_mock_is_found_beside_the_project() -> None:
    assert (mock_dir() / "lib" / "libnvidia-ml.so.1").is_file()
    assert Path(config("h100")).is_file()


@pytest.mark.parametrize("profile", PROFILES)
def test_fields_read_in_one_batch_answer_what_their_calls_answer(runs: dict[str, Any], profile: str) -> None:
    """Each reading the poll takes from nvmlDeviceGetFieldValues, against its one-by-one call on
    NVIDIA's own library: where the mock answers the field it must agree with the call."""
    from tests.contract.fieldcheck import disagreements

    for g in runs[profile]["gpus"]:
        rows = g["fields_vs_calls"]
        assert disagreements(rows) == []
        by_field = {r["key"] for r in rows if r["field"] is not None}
        # the mock answers fields 83, 94, 185-190, 3-6 and 142-145 on every profile
        assert {"power_usage", "energy", "power_limit_enforced", "remapped_rows", "pcie_replays",
                "ecc_volatile_uncorrected"} <= by_field
        if LINKS[profile] and profile in ("h100", "a100"):  # DL replay/recovery by link in scopeId
            assert {f"({link}, 'replay_errors')" for link in range(LINKS[profile])} <= by_field
