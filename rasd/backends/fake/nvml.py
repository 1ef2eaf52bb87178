"""``FakeNvml``: a stand-in for the ``pynvml`` module, backed by a simulated node.

Functions take and return what pynvml's do (str for strings, ints in NVML units, pynvml's own
ctypes structs, ``c_nvmlDevice_t`` handles) and raise pynvml's own ``NVMLError_*`` classes, so the
NVML adapter runs unchanged on top. Anything else (constants, structs, error classes) is
forwarded to the real module given as ``base``.

Scripted call faults (``nvml_error`` / ``nvml_hang`` events) are applied before every call; a
GPU that fell off the bus answers every call on its handle with ``NVMLError_GpuIsLost``.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from rasd.backends.fake.events import EventsMixin
from rasd.backends.fake.fields import field_values, instant_reader, stands_for
from rasd.backends.fake.powersim import SMOOTHING_MAX_FLOOR_PERCENT, SMOOTHING_PROFILES
from rasd.backends.fake.scenario import Event, EventKind

if TYPE_CHECKING:
    from rasd.backends.fake.node import FakeNode

_GIB = 1024**3
# Calls that never see "*" faults: a daemon must always be able to start and stop.
_LIFECYCLE = {"nvmlInit", "nvmlShutdown"}
# Host-side lookups that still answer for a lost GPU (none: nvml.h documents GPU_IS_LOST for
# nvmlDeviceGetIndex too, so an event's GPU must be found by its handle).
_ANSWER_WHEN_LOST: set[str] = set()
# Calls that manage the node lock themselves (they block).
_BLOCKING = {"nvmlEventSetWait", "nvmlEventSetWait_v2"}
_NVLINK_COUNTERS = {0: "replay", 1: "recovery", 2: "crc_flit", 3: "crc_data"}


def _error_class(name: str) -> str:
    """"not_supported" -> "NVMLError_NotSupported" (pynvml's naming)."""
    return "NVMLError_" + "".join(w.capitalize() for w in name.split("_"))


def _struct(obj: Any, kind: Any, version: int) -> Any:
    """The struct behind ``ctypes.byref(struct)`` or ``ctypes.pointer(struct)``, as the C API
    takes it (``nvmlPowerSmoothing*_t *``). A struct passed by value is what C would read as a
    pointer made of the struct's first bytes: refused. A wrong ``version`` is refused as NVML does.
    Returns None for either refusal (the caller raises)."""
    if isinstance(obj, ctypes.Structure):
        return None
    inner: Any = getattr(obj, "_obj", None)
    if inner is None:
        try:
            inner = obj.contents
        except (AttributeError, ValueError):
            return None
    if not isinstance(inner, kind) or inner.version != version:
        return None
    return inner


class FakeNvml(EventsMixin):
    """Module-like object: ``FakeNvml(node, base).nvmlDeviceGetCount()`` etc."""

    def __init__(self, node: "FakeNode", base: Any):
        self._node = node
        self._base = base
        self._init_count = 0
        self._calls: dict[int, int] = {}  # fault event index -> calls it has affected
        self._faults_lock = threading.Lock()
        self._handle_mem = [ctypes.create_string_buffer(8) for _ in range(node.gpu_count)]
        self._handles = [ctypes.cast(m, base.c_nvmlDevice_t) for m in self._handle_mem]
        self._by_address = {ctypes.addressof(m): g for g, m in enumerate(self._handle_mem)}
        # the adapter hands back the very handle objects it was given: find those without ctypes
        self._by_id = {id(h): g for g, h in enumerate(self._handles)}
        self._sets = {}  # event-set address -> (its memory, EventSet)
        self._instant = instant_reader(base, node)  # (field id, reader) for the sampler's request
        for name in dir(self):
            if name.startswith("nvml") and callable(getattr(self, name)):
                setattr(self, name, self._wrap(name, getattr(self, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    # ------------------------------------------------------------------ plumbing

    def _raise(self, name: str) -> NoReturn:
        raise getattr(self._base, _error_class(name))()

    def _gpu_of(self, handle: Any) -> int:
        g = self._by_id.get(id(handle))
        if g is not None and self._handles[g] is handle:
            return g
        try:
            address = ctypes.cast(handle, ctypes.c_void_p).value
        except (ctypes.ArgumentError, TypeError):
            address = None
        if address not in self._by_address:
            self._raise("invalid_argument")
        return self._by_address[address]

    def _call_gpu(self, name: str, args: tuple[Any, ...]) -> int | None:
        if not args:
            return None
        if name == "nvmlDeviceGetHandleByIndex":
            i = args[0]
            return i if isinstance(i, int) and 0 <= i < self._node.gpu_count else None
        if name.startswith("nvmlDevice") and isinstance(args[0], self._base.c_nvmlDevice_t):
            return self._gpu_of(args[0])
        return None

    def _faults_for(self, name: str, gpu: int | None, exact: bool = False) -> list[Event]:
        """The scripted call faults hitting this call now (``exact``: not the "*" ones)."""
        if not self._node.effects.call_faults:
            return []
        t = self._node.elapsed()
        hits = []
        with self._faults_lock:
            for ev in self._node.effects.call_faults:
                fn = ev.params["function"]
                if fn != name and (exact or fn != "*" or name in _LIFECYCLE):
                    continue
                if ev.gpus is not None and (gpu is None or gpu not in ev.gpus):
                    continue
                if not ev.active(t):
                    continue
                limit = ev.params["calls"]
                used = self._calls.get(ev.index, 0)
                if limit is not None and used >= limit:
                    continue
                self._calls[ev.index] = used + 1
                hits.append(ev)
        return hits

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        node = self._node
        # what the checks need to know about this function, decided once (every call pays them)
        needs_init = name != "nvmlInit"
        blocking = name in _BLOCKING
        lost_check = name not in _ANSWER_WHEN_LOST
        fields = name == "nvmlDeviceGetFieldValues"
        instant_id, instant = self._instant if fields and self._instant else (None, None)
        by_handle = name.startswith("nvmlDevice") and name != "nvmlDeviceGetHandleByIndex"
        handle_type = self._base.c_nvmlDevice_t
        by_id, handles = self._by_id, self._handles
        quiet = node.effects.quiet  # GPUs without scripted events: never lost

        def call(*args: Any, **kwargs: Any) -> Any:
            if needs_init and self._init_count == 0:
                self._raise("uninitialized")
            if by_handle and args and type(args[0]) is handle_type:  # the usual call: one lookup
                gpu: int | None = by_id.get(id(args[0]))
                if gpu is None or handles[gpu] is not args[0]:
                    gpu = self._gpu_of(args[0])
            else:
                gpu = self._call_gpu(name, args)
            if node.effects.call_faults:
                for ev in self._faults_for(name, gpu):
                    if ev.kind is EventKind.NVML_HANG:
                        node.sleep(ev.params["seconds"])  # outside every lock: a wedged call
                    else:
                        self._raise(ev.params["error"])
                if fields:
                    kwargs["failed"] = self._stand_in_faults(gpu, args[1])
            if blocking:
                return fn(*args, **kwargs)
            with node.lock:
                if gpu is not None and lost_check and not quiet[gpu] and node.lost(gpu):
                    self._raise("gpu_is_lost")
                if fields and gpu is not None and len(args) == 2:  # the GPU is known: one lookup
                    ids = args[1]
                    if instant is not None and not kwargs and len(ids) == 1 and ids[0] == instant_id:
                        return instant(gpu)  # the power sampler's request
                    return field_values(self._base, node, gpu, list(ids), kwargs.get("failed"))
                return fn(*args, **kwargs)

        call.__name__ = name
        call.__doc__ = fn.__doc__
        return call

    def _stand_in_faults(self, gpu: int | None, field_ids: Any) -> dict[int, int]:
        """Faults scripted on the calls that requested fields stand in for: a hang hangs this
        call, an error becomes those entries' nvmlReturn (the call itself succeeds)."""
        failed: dict[int, int] = {}
        for call, positions in stands_for(self._base, list(field_ids)).items():
            for ev in self._faults_for(call, gpu, exact=True):
                if ev.kind is EventKind.NVML_HANG:
                    self._node.sleep(ev.params["seconds"])
                else:
                    code = getattr(self._base, _error_class(ev.params["error"]))().value
                    failed.update(dict.fromkeys(positions, code))
        return failed

    def _sim(self, handle: Any) -> Any:
        return self._node.sim(self._gpu_of(handle))

    # ------------------------------------------------------------------ library and system

    def nvmlInit(self) -> None:
        self._init_count += 1
        if self._init_count == 1:
            self._native_eligibility()

    def nvmlShutdown(self) -> None:
        self._init_count -= 1
        if self._init_count == 0:
            self._native_eligibility()

    # ------------------------------------------------------------------ native reads

    def native_field_reader(self, gpus: Sequence[int], field_id: int) -> tuple[int, list[int], Any] | None:
        """What rasd's native power reader needs to read ``field_id`` of ``gpus`` without Python
        (rasd.backends.fake.instant): (the address of a function with nvmlDeviceGetFieldValues's
        signature, each GPU's device address, what owns the memory behind them: hold it while
        any reader may call), or None where the fake cannot offer it."""
        from rasd.backends.fake import instant

        return instant.offer(self, self._node, self._base, gpus, field_id, self._instant[0] if self._instant else None)

    def device(self, gpu: int) -> Any:
        """GPU ``gpu``'s device handle, as nvmlDeviceGetHandleByIndex gives it, without a call
        (no scripted fault applies)."""
        return self._handles[gpu]

    def native_eligible(self, gpu: int) -> bool:
        """Whether the native reader may answer this GPU's reads from the power model alone: the
        library is initialised, the GPU has no scripted events (it is never lost) and no call
        fault is scripted on the node (else every read goes through Python, which applies them)."""
        effects = self._node.effects
        return self._init_count > 0 and effects.quiet[gpu] and not effects.call_faults

    def _native_eligibility(self) -> None:
        with self._node.lock:
            for g, sim in enumerate(self._node.models()):
                if sim.board is not None:
                    sim.set_eligible(self.native_eligible(g))

    def _driver(self) -> str:
        return "570.133.20" if self._node.profile.architecture == "blackwell" else "550.127.05"

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._driver()

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12." + self._driver()

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12080 if self._node.profile.architecture == "blackwell" else 12040

    # ------------------------------------------------------------------ identity

    def nvmlDeviceGetCount(self) -> int:
        return self._node.gpu_count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not isinstance(index, int) or not 0 <= index < self._node.gpu_count:
            self._raise("invalid_argument")
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self._gpu_of(handle)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._node.identities[self._gpu_of(handle)].uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._gpu_of(handle)
        return self._node.profile.name

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        return self._node.identities[self._gpu_of(handle)].serial

    def nvmlDeviceGetVbiosVersion(self, handle: Any) -> str:
        return self._node.identities[self._gpu_of(handle)].vbios

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        ident = self._node.identities[self._gpu_of(handle)]
        info = self._base.nvmlPciInfo_t()
        info.busIdLegacy = ident.pci_bus_id[4:].encode()
        info.busId = ident.pci_bus_id.encode()
        info.domain, info.bus, info.device = 0, ident.bus, 0
        info.pciDeviceId = self._node.profile.pci_device_id
        info.pciSubSystemId = (self._node.profile.pci_device_id & 0xFFFF) | 0x16C10000
        return info

    # ------------------------------------------------------------------ power

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: Any, failed: dict[int, int] | None = None) -> Any:
        return field_values(self._base, self._node, self._gpu_of(handle), list(fieldIds), failed)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """mW, a 1 s average (as on Ampere and newer)."""
        return self._sim(handle).average_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self._sim(handle).limit_watts * 1000)

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return int(self._sim(handle).limit_watts * 1000)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Any) -> int:
        self._gpu_of(handle)
        return int(self._node.profile.power_limit_default_watts * 1000)

    def _constraints(self) -> list[int]:
        p = self._node.profile
        return [int(p.power_limit_min_watts * 1000), int(p.power_limit_max_watts * 1000)]

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> list[int]:
        """[min, max] in mW."""
        self._gpu_of(handle)
        return self._constraints()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """mJ since the driver loaded (or the GPU was last reset)."""
        return int(self._sim(handle).energy_mj)

    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, limit: int) -> None:
        lo, hi = self._constraints()
        if not isinstance(limit, int) or not lo <= limit <= hi:
            self._raise("invalid_argument")
        self._node.set_power_limit(self._gpu_of(handle), limit / 1000.0)

    def _smoothing_gpu(self, handle: Any) -> int:
        gpu = self._gpu_of(handle)
        if not self._node.profile.power_smoothing:
            self._raise("not_supported")
        return gpu

    def _arg(self, obj: Any, kind: str) -> Any:
        b = self._base
        s = _struct(obj, getattr(b, f"c_nvml{kind}_v1_t"), getattr(b, f"nvml{kind}_v1"))
        if s is None:
            self._raise("invalid_argument")
        return s

    def nvmlDevicePowerSmoothingSetState(self, handle: Any, state: Any) -> None:
        gpu = self._smoothing_gpu(handle)
        s = self._arg(state, "PowerSmoothingState")
        if s.state not in (0, 1):
            self._raise("invalid_argument")
        self._node.smoothing_enabled[gpu] = bool(s.state)
        self._node.apply_smoothing(gpu)

    def nvmlDevicePowerSmoothingActivatePresetProfile(self, handle: Any, profile: Any) -> None:
        gpu = self._smoothing_gpu(handle)
        s = self._arg(profile, "PowerSmoothingProfile")
        if not 0 <= s.profileId < SMOOTHING_PROFILES:
            self._raise("invalid_argument")
        self._node.smoothing_active[gpu] = s.profileId
        self._node.apply_smoothing(gpu)

    def nvmlDevicePowerSmoothingUpdatePresetProfileParam(self, handle: Any, profile: Any) -> None:
        """paramId 0: % TMP floor, 1: ramp-up mW/s, 2: ramp-down mW/s, 3: ramp-down hysteresis ms
        (the units nvml.h gives for nvmlDevicePowerSmoothingUpdatePresetProfileParam)."""
        gpu = self._smoothing_gpu(handle)
        s = self._arg(profile, "PowerSmoothingProfile")
        if not 0 <= s.profileId < SMOOTHING_PROFILES or s.value < 0:
            self._raise("invalid_argument")
        preset = self._node.smoothing_presets[gpu][s.profileId]
        if s.paramId == 0:
            if s.value > SMOOTHING_MAX_FLOOR_PERCENT:
                self._raise("invalid_argument")
            preset.floor_percent = s.value
        elif s.paramId == 1:
            preset.ramp_up_watts_per_second = s.value / 1000.0
        elif s.paramId == 2:
            preset.ramp_down_watts_per_second = s.value / 1000.0
        elif s.paramId == 3:
            preset.ramp_down_hysteresis_ms = s.value
        else:
            self._raise("not_supported")
        if s.profileId == self._node.smoothing_active[gpu]:
            self._node.apply_smoothing(gpu)

    # ------------------------------------------------------------------ thermal, clocks, load

    def _temperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu_of(handle)
        if sensor != self._base.NVML_TEMPERATURE_GPU:
            self._raise("invalid_argument")
        return int(self._node.temperature(gpu))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        """Deprecated in CUDA 13 (nvmlDeviceGetTemperatureV replaces it); still answers here."""
        return self._temperature(handle, sensor)

    def nvmlDeviceGetTemperatureV(self, handle: Any, sensor: int, version: Any = None) -> int:
        return self._temperature(handle, sensor)

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        gpu = self._gpu_of(handle)
        p = self._node.profile
        if type == self._base.NVML_CLOCK_MEM:
            return p.memory_clock_mhz
        if type not in (self._base.NVML_CLOCK_SM, self._base.NVML_CLOCK_GRAPHICS):
            self._raise("invalid_argument")
        sim = self._node.sim(gpu)
        t = self._node.elapsed()
        if self._node.workload.phase(gpu, t) in ("idle", "checkpoint"):
            return p.sm_clock_idle_mhz
        mhz = float(p.sm_clock_max_mhz)
        if sim.power_capped:
            mhz *= max(0.6, (sim.limit_watts / sim.demand) ** 0.7)
        if self._node.effects.thermal(gpu, t)[1]:
            mhz *= 0.7
        return int(mhz // 15 * 15)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        gpu = self._gpu_of(handle)
        sim = self._node.sim(gpu)
        t = self._node.elapsed()
        bits = self._node.effects.thermal(gpu, t)[1]
        if self._node.workload.phase(gpu, t) in ("idle", "checkpoint"):
            bits |= 0x1
        if sim.power_capped:
            bits |= 0x4
        return bits

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._gpu_of(handle)
        g, m = self._node.workload.utilization(gpu, self._node.elapsed())
        return self._base.c_nvmlUtilization_t(gpu=g, memory=m)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        gpu = self._gpu_of(handle)
        total = self._node.profile.memory_bytes
        reserved = 512 * 1024**2
        used = int(total * 0.86) if self._node.workload.running(gpu) else reserved
        if version:
            return self._base.c_nvmlMemory_v2_t(version=version, total=total, reserved=reserved, free=total - used, used=used - reserved)
        return self._base.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu = self._gpu_of(handle)
        scenario = self._node.scenario
        named = [p for ps in (scenario.processes if scenario else ()) if ps.gpu == gpu
                 for p in ps.pids]
        if named:  # real processes the scenario puts on this GPU
            return [self._base.nvmlStructToFriendlyObject(self._base.c_nvmlProcessInfo_v2_t(
                pid=pid, usedGpuMemory=0, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF))
                for pid in named]
        if not self._node.workload.running(gpu):
            return []
        info = self._base.c_nvmlProcessInfo_v2_t(
            pid=self._node.identities[gpu].pid,
            usedGpuMemory=int(self._node.profile.memory_bytes * 0.86) - 512 * 1024**2,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )
        return [self._base.nvmlStructToFriendlyObject(info)]

    # ------------------------------------------------------------------ memory errors

    def nvmlDeviceGetEccMode(self, handle: Any) -> list[int]:
        self._gpu_of(handle)
        on = self._base.NVML_FEATURE_ENABLED
        return [on, on]

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        gpu = self._gpu_of(handle)
        if errorType not in (0, 1) or counterType not in (0, 1):
            self._raise("invalid_argument")
        key = "ecc_corrected" if errorType == 0 else "ecc_uncorrected"
        return self._node.effects.counter(gpu, key, self._node.elapsed(), volatile=counterType == 0)

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        gpu = self._gpu_of(device)
        if not self._node.profile.row_remapping:
            self._raise("not_supported")
        fx, t = self._node.effects, self._node.elapsed()
        pending, failure = fx.remap_flags(gpu, t)
        return (
            fx.counter(gpu, "remap_correctable", t, volatile=False),
            fx.counter(gpu, "remap_uncorrectable", t, volatile=False),
            int(pending),
            int(failure),
        )

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        gpu = self._gpu_of(device)
        if not self._node.profile.page_retirement:
            self._raise("not_supported")
        if sourceFilter not in (0, 1):
            self._raise("invalid_argument")
        cause = "single_bit" if sourceFilter == 0 else "double_bit"
        return self._node.effects.retired_pages(gpu, self._node.elapsed(), cause)

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        gpu = self._gpu_of(device)
        if not self._node.profile.page_retirement:
            self._raise("not_supported")
        return int(self._node.effects.retired_pending(gpu, self._node.elapsed()))

    # ------------------------------------------------------------------ links

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        self._gpu_of(handle)
        return self._node.profile.pcie_gen

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any) -> int:
        self._gpu_of(handle)
        return self._node.profile.pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        self._gpu_of(handle)
        return self._node.profile.pcie_width

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any) -> int:
        self._gpu_of(handle)
        return self._node.profile.pcie_width

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        gpu = self._gpu_of(handle)
        return self._node.effects.counter(gpu, "pcie_replay", self._node.elapsed())

    def _link(self, device: Any, link: int) -> int:
        gpu = self._gpu_of(device)
        if not isinstance(link, int) or not 0 <= link < self._node.profile.nvlink_count:
            self._raise("invalid_argument")
        return gpu

    def nvmlDeviceGetNvLinkCapability(self, device: Any, link: int, capability: int) -> int:
        self._link(device, link)
        return 1

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        gpu = self._link(device, link)
        up = self._node.effects.link_up(gpu, link, self._node.elapsed())
        return self._base.NVML_FEATURE_ENABLED if up else self._base.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, device: Any, link: int, counter: int) -> int:
        gpu = self._link(device, link)
        if not self._node.profile.nvlink_error_counters:
            self._raise("not_supported")
        if counter == 4:  # NVML_NVLINK_ERROR_DL_ECC_DATA: never scripted
            return 0
        if counter not in _NVLINK_COUNTERS:
            self._raise("invalid_argument")
        key = f"nvlink:{link}:{_NVLINK_COUNTERS[counter]}"
        return self._node.effects.counter(gpu, key, self._node.elapsed())
