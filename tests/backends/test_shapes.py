"""The fake answers with pynvml's own shapes: types, structs, arrays, error classes."""

from __future__ import annotations

import ctypes

import pytest


def test_forwards_constants_structs_and_errors_to_pynvml(make, base):
    _, lib = make()
    assert lib.NVML_FI_DEV_POWER_INSTANT == 186
    assert lib.c_nvmlFieldValue_t is base.c_nvmlFieldValue_t
    assert lib.NVMLError_GpuIsLost is base.NVMLError_GpuIsLost


def test_calls_before_init_raise_uninitialized(base, mclock):
    from rasd.backends.fake import FakeNode, FakeNvml

    lib = FakeNvml(FakeNode(clock=mclock), base)
    with pytest.raises(base.NVMLError_Uninitialized):
        lib.nvmlDeviceGetCount()
    lib.nvmlInit()
    assert lib.nvmlDeviceGetCount() == 8
    lib.nvmlShutdown()
    with pytest.raises(base.NVMLError_Uninitialized):
        lib.nvmlDeviceGetCount()


def test_identity_calls_return_strings_and_a_real_pci_struct(make, base):
    node, lib = make(seed=3)
    h = lib.nvmlDeviceGetHandleByIndex(2)
    assert isinstance(h, base.c_nvmlDevice_t)
    assert lib.nvmlDeviceGetIndex(h) == 2
    assert lib.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
    uuid = lib.nvmlDeviceGetUUID(h)
    assert isinstance(uuid, str) and uuid.startswith("GPU-") and len(uuid) == 40
    assert lib.nvmlDeviceGetSerial(h).isdigit()
    pci = lib.nvmlDeviceGetPciInfo(h)
    assert isinstance(pci, base.nvmlPciInfo_t)
    assert pci.busId == "00000000:3A:00.0" and pci.bus == 0x3A
    assert isinstance(lib.nvmlSystemGetDriverVersion(), str)
    assert isinstance(lib.nvmlSystemGetCudaDriverVersion(), int)
    uuids = {lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i)) for i in range(8)}
    assert len(uuids) == 8
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetHandleByIndex(8)
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetName(object())


def test_identities_are_seeded(make):
    def uuids(seed):
        _, lib = make(seed=seed)
        return [lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i)) for i in range(8)]

    assert uuids(1) == uuids(1)
    assert uuids(1) != uuids(2)


def test_field_values_are_a_ctypes_array_with_per_entry_results(make, base):
    _, lib = make()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    vals = lib.nvmlDeviceGetFieldValues(h, [186, 185, 82, 230, 9999, (260, 0)])
    assert isinstance(vals, ctypes.Array) and len(vals) == 6
    assert all(isinstance(v, base.c_nvmlFieldValue_t) for v in vals)
    inst, avg, mem_t, action, bogus, smoothing = vals
    for v in (inst, avg, mem_t, action):
        assert v.nvmlReturn == base.NVML_SUCCESS
        assert v.valueType == base.NVML_VALUE_TYPE_UNSIGNED_INT
        assert v.timestamp > 1_699_999_999 * 10**6  # Unix microseconds
    assert 50_000 < inst.value.uiVal <= 700_000  # mW
    assert 40 <= mem_t.value.uiVal <= 90
    assert action.value.uiVal == 0
    assert bogus.fieldId == 9999 and bogus.nvmlReturn == base.NVML_ERROR_NOT_SUPPORTED
    assert smoothing.fieldId == 260 and smoothing.nvmlReturn == base.NVML_ERROR_NOT_SUPPORTED  # H100


def test_structs_and_lists(make, base):
    _, lib = make()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    util = lib.nvmlDeviceGetUtilizationRates(h)
    assert isinstance(util, base.c_nvmlUtilization_t) and 0 <= util.gpu <= 100
    mem = lib.nvmlDeviceGetMemoryInfo(h)
    assert isinstance(mem, base.c_nvmlMemory_t)
    assert mem.total == 80 * 2**30 and mem.used + mem.free == mem.total
    assert lib.nvmlDeviceGetEccMode(h) == [base.NVML_FEATURE_ENABLED] * 2
    assert lib.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
    assert lib.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200_000, 700_000]
    assert lib.nvmlDeviceGetEnforcedPowerLimit(h) == 700_000
    procs = lib.nvmlDeviceGetComputeRunningProcesses(h)
    assert len(procs) == 1 and procs[0].pid > 0 and procs[0].usedGpuMemory > 2**30
    assert lib.nvmlDeviceGetClockInfo(h, base.NVML_CLOCK_MEM) == 2619
    assert lib.nvmlDeviceGetMaxPcieLinkGeneration(h) == 5
    assert lib.nvmlDeviceGetCurrPcieLinkWidth(h) == 16


def test_hopper_has_no_page_retirement_and_18_links(make, base):
    _, lib = make()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(base.NVMLError_NotSupported):
        lib.nvmlDeviceGetRetiredPages(h, base.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    assert lib.nvmlDeviceGetNvLinkState(h, 17) == base.NVML_FEATURE_ENABLED
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetNvLinkState(h, 18)
    assert lib.nvmlDeviceGetNvLinkErrorCounter(h, 0, base.NVML_NVLINK_ERROR_DL_CRC_FLIT) == 0


def test_blackwell_and_volta_capabilities(make, base):
    _, lib = make(profile="gb200", gpu_count=4)
    h = lib.nvmlDeviceGetHandleByIndex(3)
    assert "GB200" in lib.nvmlDeviceGetName(h)
    with pytest.raises(base.NVMLError_NotSupported):
        lib.nvmlDeviceGetNvLinkErrorCounter(h, 0, base.NVML_NVLINK_ERROR_DL_REPLAY)
    assert lib.nvmlDeviceGetPowerManagementLimitConstraints(h)[1] == 1_200_000
    _, lib = make(profile="v100-sxm2-32gb")
    h = lib.nvmlDeviceGetHandleByIndex(0)
    assert lib.nvmlDeviceGetRetiredPages(h, 0) == []
    assert lib.nvmlDeviceGetRetiredPagesPendingStatus(h) == 0
    with pytest.raises(base.NVMLError_NotSupported):
        lib.nvmlDeviceGetRemappedRows(h)
    assert lib.nvmlDeviceGetFieldValues(h, [186])[0].nvmlReturn == base.NVML_ERROR_NOT_SUPPORTED


def test_idle_gpus_have_no_process_and_idle_clocks(make, base):
    node, lib = make(workload="idle")
    h = lib.nvmlDeviceGetHandleByIndex(0)
    assert lib.nvmlDeviceGetComputeRunningProcesses(h) == []
    assert lib.nvmlDeviceGetUtilizationRates(h).gpu == 0
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & 0x1
    assert lib.nvmlDeviceGetClockInfo(h, base.NVML_CLOCK_SM) == node.profile.sm_clock_idle_mhz
    assert 28 <= lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU) <= 36
