"""The power model as NVML shows it: refresh timing, averaging, caps, smoothing, determinism."""

from __future__ import annotations

import ctypes

import pytest


def _trace(lib, mclock, gpu=0, seconds=6.0, hz=20):
    h = lib.nvmlDeviceGetHandleByIndex(gpu)
    out = []
    for _ in range(int(seconds * hz)):
        v = lib.nvmlDeviceGetFieldValues(h, [186])[0]
        out.append((int(v.timestamp), v.value.uiVal / 1000.0))
        mclock.advance(1.0 / hz)
    return out


def test_instant_power_refreshes_ten_times_a_second(make, mclock):
    _, lib = make()
    trace = _trace(lib, mclock, seconds=5.0, hz=20)
    stamps = [s for s, _ in trace]
    assert 49 <= len(set(stamps)) <= 51
    # a 20 Hz reader sees each value twice, with the same timestamp
    pairs = list(zip(trace, trace[1:]))
    repeats = [a for a, b in pairs if a[0] == b[0]]
    assert len(repeats) >= 45 and all(a == b for a, b in pairs if a[0] == b[0])
    gaps = {b - a for a, b in zip(sorted(set(stamps)), sorted(set(stamps))[1:])}
    assert gaps == {100_000}  # microseconds


def test_instant_is_the_last_25ms_mean_and_average_is_a_1s_mean(make, mclock):
    node, lib = make()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    mclock.advance(10.0)
    sim = node.sim(0)
    window = sim.window()
    refreshed_steps_ago = sim.step - round(sim.average_at / 0.005)
    assert 0 <= refreshed_steps_ago < 20
    # rebuild the values from the 5 ms trace the model kept
    end = len(window) - refreshed_steps_ago
    assert lib.nvmlDeviceGetPowerUsage(h) == int(sum(window[end - 200:end]) / 200 * 1000) or refreshed_steps_ago
    inst = lib.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal
    assert inst == int(sum(window[end - 5:end]) / 5 * 1000)


def test_average_power_swings_far_less_than_instant_power(make, mclock):
    _, lib = make("[workload]\nstep_seconds = 0.4\n")
    h = lib.nvmlDeviceGetHandleByIndex(0)
    mclock.advance(2.0)  # let the 1 s window fill with the workload
    inst, avg = [], []
    for _ in range(200):
        inst.append(lib.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal)
        avg.append(lib.nvmlDeviceGetPowerUsage(h))
        mclock.advance(0.05)
    assert max(inst) - min(inst) > 2 * (max(avg) - min(avg))


def test_same_seed_same_trace_and_reads_do_not_change_it(make, mclock):
    _, lib_a = make(seed=11)
    a = _trace(lib_a, mclock, seconds=4.0, hz=20)
    _, lib_b = make(seed=11)
    b = _trace(lib_b, mclock, seconds=4.0, hz=20)
    assert [w for _, w in a] == [w for _, w in b]
    # reading only every 0.5 s sees the same values at those moments
    _, lib_c = make(seed=11)
    c = _trace(lib_c, mclock, seconds=4.0, hz=2)
    assert [w for _, w in c] == [w for _, w in a][::10]
    _, lib_d = make(seed=12)
    d = _trace(lib_d, mclock, seconds=4.0, hz=20)
    assert [w for _, w in d] != [w for _, w in a]


def test_training_swings_with_all_gpus_in_phase(make, mclock):
    node, lib = make(seed=5)
    step = node.workload.step_seconds
    assert 0.3 <= step <= 3.0
    traces = [[w for _, w in _trace(lib, mclock, gpu=g, seconds=0.0)] for g in range(2)]
    assert traces == [[], []]
    both = []
    h0, h1 = lib.nvmlDeviceGetHandleByIndex(0), lib.nvmlDeviceGetHandleByIndex(1)
    for _ in range(120):
        both.append((lib.nvmlDeviceGetFieldValues(h0, [186])[0].value.uiVal, lib.nvmlDeviceGetFieldValues(h1, [186])[0].value.uiVal))
        mclock.advance(0.05)
    g0 = [a for a, _ in both]
    assert max(g0) - min(g0) > 200_000  # mW: compute vs communication
    high = [(a > 500_000) == (b > 500_000) for a, b in both]
    assert sum(high) / len(high) > 0.85  # in phase (only refresh offsets and jitter differ)


def test_checkpoints_drop_to_near_idle(make, mclock):
    node, lib = make("""
        [workload]
        checkpoint_every_seconds = 20
        checkpoint_seconds = 4
        """)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    mclock.advance(18.0)
    watts = lib.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal / 1000
    assert watts < 2 * node.profile.idle_watts
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & 0x1  # GpuIdle


def test_power_cap_lowers_peaks_and_sets_swpowercap(make, mclock, base):
    _, lib = make(seed=1)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    before = max(w for _, w in _trace(lib, mclock, seconds=4.0))
    lib.nvmlDeviceSetPowerManagementLimit(h, 400_000)
    assert lib.nvmlDeviceGetEnforcedPowerLimit(h) == 400_000
    after = _trace(lib, mclock, seconds=4.0)
    assert before > 650 and max(w for _, w in after[4:]) <= 400.0  # one refresh may straddle the change
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetPowerManagementLimit(h, 150_000)
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetPowerManagementLimit(h, 800_000)


def test_setting_a_limit_can_be_refused_by_a_scenario(make, base):
    _, lib = make("""
        [[event]]
        kind = "nvml_error"
        at = 0
        function = "nvmlDeviceSetPowerManagementLimit"
        error = "no_permission"
        """)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(base.NVMLError_NoPermission):
        lib.nvmlDeviceSetPowerManagementLimit(h, 500_000)
    assert lib.nvmlDeviceGetPowerManagementLimit(h) == 700_000


def _smoothing(lib, base, h, floor, up, down, hyst):
    """Ramp rates in W/s here; nvml.h wants mW/s."""
    p = base.c_nvmlPowerSmoothingProfile_v1_t()
    for param, value in ((0, floor), (1, up * 1000), (2, down * 1000), (3, hyst)):
        p.profileId, p.paramId, p.value = 1, param, float(value)
        lib.nvmlDevicePowerSmoothingUpdatePresetProfileParam(h, ctypes.byref(p))
    p.profileId = 1
    lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, ctypes.pointer(p))
    st = base.c_nvmlPowerSmoothingState_v1_t()
    st.state = base.NVML_FEATURE_ENABLED
    lib.nvmlDevicePowerSmoothingSetState(h, ctypes.byref(st))


def test_smoothing_structs_go_by_reference_with_their_version(make, base):
    """The C prototypes take pointers: a struct by value (what C reads as a pointer made of the
    struct's bytes) and a struct of the wrong version are refused, as NVML refuses them."""
    _, lib = make(profile="gb200", gpu_count=1)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    st = base.c_nvmlPowerSmoothingState_v1_t()
    st.state = base.NVML_FEATURE_ENABLED
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDevicePowerSmoothingSetState(h, st)
    p = base.c_nvmlPowerSmoothingProfile_v1_t()
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, p)
    p.version = 0
    with pytest.raises(base.NVMLError_InvalidArgument):
        lib.nvmlDevicePowerSmoothingActivatePresetProfile(h, ctypes.byref(p))
    lib.nvmlDevicePowerSmoothingSetState(h, ctypes.byref(st))


def test_power_smoothing_shrinks_the_swing_on_blackwell(make, mclock, base):
    swing = "[workload]\nstep_seconds = 1.0\ncompute_power_ratio = 1.0\ncomm_power_ratio = 0.2\n"
    _, lib = make(swing, profile="gb200", gpu_count=4)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    raw = [w for _, w in _trace(lib, mclock, seconds=4.0)]
    _smoothing(lib, base, h, floor=60, up=2000, down=1000, hyst=100)
    mclock.advance(2.0)
    smooth = [w for _, w in _trace(lib, mclock, seconds=4.0)]
    assert max(raw) - min(raw) > 800
    assert min(smooth) >= 0.6 * 1200 - 1 and max(smooth) - min(smooth) < 0.5 * (max(raw) - min(raw))
    ids = [base.NVML_FI_PWR_SMOOTHING_ENABLED, base.NVML_FI_PWR_SMOOTHING_APPLIED_TMP_FLOOR,
           base.NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE]
    scoped = [base.NVML_FI_PWR_SMOOTHING_PROFILE_PERCENT_TMP_FLOOR, base.NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_UP_RATE,
              base.NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_RATE, base.NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_HYST_VAL]
    vals = lib.nvmlDeviceGetFieldValues(h, ids + [(f, 1) for f in scoped])
    got = [v.value.uiVal for v in vals]
    assert [v.fieldId for v in vals] == ids + scoped
    assert got == [1, 720, 1, 60, 2_000_000, 1_000_000, 100]  # ramp rates read back in mW/s
    with pytest.raises(base.NVMLError_InvalidArgument):
        _smoothing(lib, base, h, floor=95, up=1, down=1, hyst=0)


def test_power_smoothing_is_not_supported_on_h100(make, base):
    _, lib = make()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(base.NVMLError_NotSupported):
        _smoothing(lib, base, h, 50, 100, 100, 0)
    assert lib.nvmlDeviceGetFieldValues(h, [base.NVML_FI_PWR_SMOOTHING_ENABLED])[0].nvmlReturn == base.NVML_ERROR_NOT_SUPPORTED


def test_energy_integrates_power_and_temperature_follows_it(make, mclock, base):
    node, lib = make(workload="idle")
    h = lib.nvmlDeviceGetHandleByIndex(0)
    mclock.advance(10.0)
    joules = lib.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
    assert joules == pytest.approx(10.0 * node.profile.idle_watts, rel=0.03)
    _, busy = make(seed=0)
    hb = busy.nvmlDeviceGetHandleByIndex(0)
    assert busy.nvmlDeviceGetTemperature(hb, base.NVML_TEMPERATURE_GPU) > lib.nvmlDeviceGetTemperature(h, base.NVML_TEMPERATURE_GPU) + 15
    mem = busy.nvmlDeviceGetFieldValues(hb, [82])[0].value.uiVal
    assert 40 <= mem <= 85
