"""Every scenario event kind changes what the fake NVML reports, at the scripted time."""

from __future__ import annotations

import pytest


def test_xid_reaches_kernel_log_with_driver_format(make, mclock):
    node, lib = make("""
        [[event]]
        kind = "xid"
        at = 2.0
        gpu = 0
        xid = 13
        pid = 4242
        process = "train.py"
        message = "Graphics Exception: ESR 0x504648=0x2000d"
        """)
    assert node.kernel_log.read_new() == []
    mclock.advance(2.0)
    assert node.kernel_log.read_new() == [
        "NVRM: Xid (PCI:0000:18:00): 13, pid=4242, name=train.py, Graphics Exception: ESR 0x504648=0x2000d"
    ]
    assert node.kernel_log.read_new() == []


def test_ecc_burst_raises_volatile_and_aggregate_counters(make, mclock, base):
    _, lib = make("""
        [[event]]
        kind = "ecc"
        at = 1.0
        duration_seconds = 10.0
        gpu = 1
        type = "corrected"
        count = 100

        [[event]]
        kind = "ecc"
        at = 3.0
        gpu = 1
        type = "uncorrected"
        count = 2
        """)
    h = lib.nvmlDeviceGetHandleByIndex(1)
    C, U = base.NVML_MEMORY_ERROR_TYPE_CORRECTED, base.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    V, A = base.NVML_VOLATILE_ECC, base.NVML_AGGREGATE_ECC
    mclock.advance(6.0)
    assert lib.nvmlDeviceGetTotalEccErrors(h, C, V) == 50  # half-way through the burst
    assert lib.nvmlDeviceGetTotalEccErrors(h, U, V) == 2
    mclock.advance(10.0)
    assert lib.nvmlDeviceGetTotalEccErrors(h, C, A) == 100
    ids = [f for f in (3, 4, 5, 6)]
    assert [v.value.ullVal for v in lib.nvmlDeviceGetFieldValues(h, ids)] == [100, 2, 100, 2]
    other = lib.nvmlDeviceGetHandleByIndex(0)
    assert lib.nvmlDeviceGetTotalEccErrors(other, C, V) == 0


def test_row_remap_pending_clears_on_reset_failure_stays(make, mclock):
    _, lib = make("""
        [[event]]
        kind = "row_remap"
        at = 1
        gpu = 2
        correctable = 3
        uncorrectable = 1
        pending = true

        [[event]]
        kind = "row_remap"
        at = 2
        gpu = 2
        failure = true

        [[event]]
        kind = "reset"
        at = 5
        gpu = 2
        """)
    h = lib.nvmlDeviceGetHandleByIndex(2)
    assert lib.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
    mclock.advance(3)
    assert lib.nvmlDeviceGetRemappedRows(h) == (3, 1, 1, 1)
    assert [v.value.uiVal for v in lib.nvmlDeviceGetFieldValues(h, [142, 143, 144, 145])] == [3, 1, 1, 1]
    mclock.advance(3)
    assert lib.nvmlDeviceGetRemappedRows(h) == (3, 1, 0, 1)


def test_retired_pages_on_a_profile_that_has_them(make, mclock, base):
    _, lib = make("""
        [node]
        profile = "v100-sxm2-32gb"

        [[event]]
        kind = "retired_pages"
        at = 1
        gpu = 0
        cause = "single_bit"
        count = 3

        [[event]]
        kind = "retired_pages"
        at = 2
        gpu = 0
        cause = "double_bit"
        pending = true
        """)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    SBE = base.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    DBE = base.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    mclock.advance(1.5)
    sbe = lib.nvmlDeviceGetRetiredPages(h, SBE)
    assert len(sbe) == 3 and all(isinstance(a, int) and a % 4096 == 0 for a in sbe)
    assert lib.nvmlDeviceGetRetiredPages(h, DBE) == []
    assert lib.nvmlDeviceGetRetiredPagesPendingStatus(h) == 0
    mclock.advance(1.0)
    assert len(lib.nvmlDeviceGetRetiredPages(h, DBE)) == 1
    assert lib.nvmlDeviceGetRetiredPagesPendingStatus(h) == 1


def test_nvlink_down_flap_and_error_bursts(make, mclock, base):
    _, lib = make("""
        [[event]]
        kind = "nvlink_down"
        at = 1
        duration_seconds = 2
        gpu = 0
        link = 3

        [[event]]
        kind = "nvlink_flap"
        at = 10
        gpu = 0
        link = 5
        times = 3
        period_seconds = 2

        [[event]]
        kind = "nvlink_errors"
        at = 1
        duration_seconds = 4
        gpu = 0
        link = 6
        counter = "crc_flit"
        rate_per_second = 100
        """)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    UP, DOWN = base.NVML_FEATURE_ENABLED, base.NVML_FEATURE_DISABLED
    mclock.advance(2)
    assert lib.nvmlDeviceGetNvLinkState(h, 3) == DOWN and lib.nvmlDeviceGetNvLinkState(h, 4) == UP
    assert lib.nvmlDeviceGetNvLinkErrorCounter(h, 6, base.NVML_NVLINK_ERROR_DL_CRC_FLIT) == 100
    assert lib.nvmlDeviceGetNvLinkErrorCounter(h, 6, base.NVML_NVLINK_ERROR_DL_CRC_DATA) == 0
    mclock.advance(2)
    assert lib.nvmlDeviceGetNvLinkState(h, 3) == UP
    mclock.advance(2)
    assert lib.nvmlDeviceGetNvLinkErrorCounter(h, 6, base.NVML_NVLINK_ERROR_DL_CRC_FLIT) == 400
    # the flap: down for the first half of each 2 s period, three times, then up for good
    states = []
    mclock.set(mclock() - 6 + 10.5)
    for _ in range(8):
        states.append(lib.nvmlDeviceGetNvLinkState(h, 5))
        mclock.advance(1.0)
    assert states == [DOWN, UP, DOWN, UP, DOWN, UP, UP, UP]


def test_pcie_replay_storm(make, mclock):
    _, lib = make("""
        [[event]]
        kind = "pcie_replay"
        at = 2
        duration_seconds = 10
        gpu = 7
        rate_per_second = 40
        """)
    h = lib.nvmlDeviceGetHandleByIndex(7)
    mclock.advance(7)
    assert lib.nvmlDeviceGetPcieReplayCounter(h) == 200
    mclock.advance(60)
    assert lib.nvmlDeviceGetPcieReplayCounter(h) == 400


def test_thermal_slowdown_sets_bits_and_raises_temperature(make, mclock, base):
    _, lib = make("""
        [[event]]
        kind = "thermal"
        at = 1
        duration_seconds = 5
        gpu = 4
        temperature_rise_celsius = 30
        reasons = ["hw_thermal", "sw_thermal"]
        """)
    h = lib.nvmlDeviceGetHandleByIndex(4)
    before = lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU)
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & 0x60 == 0
    mclock.advance(2)
    assert lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU) >= before + 28
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & 0x60 == 0x60
    mclock.advance(5)
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & 0x60 == 0


def test_fall_off_bus_loses_every_call_and_emits_xid_79(make, mclock, base):
    node, lib = make("""
        [[event]]
        kind = "fall_off_bus"
        at = 2
        gpu = 3
        """)
    h = lib.nvmlDeviceGetHandleByIndex(3)
    assert lib.nvmlDeviceGetName(h)
    mclock.advance(2)
    for call in (lib.nvmlDeviceGetName, lib.nvmlDeviceGetPowerUsage, lib.nvmlDeviceGetUUID):
        with pytest.raises(base.NVMLError_GpuIsLost):
            call(h)
    with pytest.raises(base.NVMLError_GpuIsLost):
        lib.nvmlDeviceGetFieldValues(h, [186])
    with pytest.raises(base.NVMLError_GpuIsLost):
        lib.nvmlDeviceGetHandleByIndex(3)
    assert lib.nvmlDeviceGetPowerUsage(lib.nvmlDeviceGetHandleByIndex(2)) > 0
    (line,) = node.kernel_log.read_new()
    assert ": 79, " in line and "fallen off the bus" in line and "PCI:0000:5d:00" in line


def test_reset_zeroes_volatile_counters_and_energy_only(make, mclock, base):
    _, lib = make("""
        [[event]]
        kind = "ecc"
        at = 1
        gpu = "all"
        type = "corrected"
        count = 7

        [[event]]
        kind = "pcie_replay"
        at = 1
        duration_seconds = 1
        gpu = [0, 1]
        rate_per_second = 10

        [[event]]
        kind = "reset"
        at = 5
        """)
    h = lib.nvmlDeviceGetHandleByIndex(1)
    C, V, A = base.NVML_MEMORY_ERROR_TYPE_CORRECTED, base.NVML_VOLATILE_ECC, base.NVML_AGGREGATE_ECC
    mclock.advance(4.9)
    energy = lib.nvmlDeviceGetTotalEnergyConsumption(h)
    assert energy > 1000 * 1000  # mJ
    assert lib.nvmlDeviceGetPcieReplayCounter(h) == 10
    mclock.advance(0.2)
    assert lib.nvmlDeviceGetTotalEnergyConsumption(h) < energy / 10
    assert lib.nvmlDeviceGetTotalEccErrors(h, C, V) == 0
    assert lib.nvmlDeviceGetTotalEccErrors(h, C, A) == 7
    assert lib.nvmlDeviceGetPcieReplayCounter(h) == 0


def test_call_faults_by_name_star_duration_and_count(make, mclock, base):
    slept = []
    _, lib = make(
        """
        [[event]]
        kind = "nvml_error"
        at = 1
        duration_seconds = 2
        gpu = 0
        function = "*"
        error = "unknown"

        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetPowerUsage"
        error = "timeout"
        calls = 2

        [[event]]
        kind = "nvml_hang"
        at = 0
        function = "nvmlDeviceGetTemperature"
        seconds = 4.5
        calls = 1
        """,
        sleep=slept.append,
    )
    h0, h1 = lib.nvmlDeviceGetHandleByIndex(0), lib.nvmlDeviceGetHandleByIndex(1)
    assert lib.nvmlDeviceGetName(h0)
    mclock.advance(1.5)
    for call in (lib.nvmlDeviceGetName, lib.nvmlDeviceGetPowerUsage):
        with pytest.raises(base.NVMLError_Unknown):
            call(h0)
    assert lib.nvmlDeviceGetName(h1)
    for _ in range(2):
        with pytest.raises(base.NVMLError_Timeout):
            lib.nvmlDeviceGetPowerUsage(h1)
    assert lib.nvmlDeviceGetPowerUsage(h1) > 0
    mclock.advance(2)
    assert lib.nvmlDeviceGetName(h0)
    assert lib.nvmlDeviceGetTemperature(h1, 0) > 0 and slept == [4.5]
    assert lib.nvmlDeviceGetTemperature(h1, 0) > 0 and slept == [4.5]
    lib.nvmlShutdown()  # lifecycle calls are never faulted


def test_recovery_action_field_follows_script_and_resets(make, mclock):
    _, lib = make("""
        [[event]]
        kind = "recovery_action"
        at = 1
        gpu = 2
        value = "drain_and_reset"

        [[event]]
        kind = "reset"
        at = 3
        gpu = 2
        """)
    h = lib.nvmlDeviceGetHandleByIndex(2)
    read = lambda: lib.nvmlDeviceGetFieldValues(h, [230])[0].value.uiVal  # noqa: E731
    assert read() == 0
    mclock.advance(2)
    assert read() == 4
    mclock.advance(2)
    assert read() == 0


def test_workload_settings_and_idle_gpus(make, mclock):
    node, lib = make("""
        [workload]
        seed = 99
        step_seconds = 0.8
        idle_gpus = [6, 7]
        """)
    assert node.workload.step_seconds == 0.8
    assert lib.nvmlDeviceGetComputeRunningProcesses(lib.nvmlDeviceGetHandleByIndex(7)) == []
    assert len(lib.nvmlDeviceGetComputeRunningProcesses(lib.nvmlDeviceGetHandleByIndex(5))) == 1


def test_sdc_fault_hooks(make, mclock):
    node, _ = make("""
        [[sdc_fault]]
        gpu = 5
        kind = "gemm_bitflip"
        bit = 62
        dtypes = ["float64"]
        fraction = 0.001
        min_power_watts = 100
        at = 2
        until = 10
        """)
    assert node.sdc_faults(5) == ()
    mclock.advance(3)
    (fault,) = node.sdc_faults(5)
    assert (fault.gpu, fault.bit, fault.dtypes, fault.deterministic) == (5, 62, ("float64",), True)
    assert node.sdc_faults(4) == ()
    watts, celsius = node.conditions(5)
    assert watts > 0 and celsius > 20
    assert fault.applies("float64", 512, watts, celsius) == (watts >= 100)
    assert not fault.applies("float32", 512, watts, celsius)
    mclock.advance(8)
    assert node.sdc_faults(5) == ()
