"""Errors the backends raise to the rest of rasd (pynvml's classes never leak past the adapter)."""

from __future__ import annotations

from rasd.model import LostReason


class BackendUnavailable(RuntimeError):
    """NVML could not be loaded or reports no GPU; the message is one line for people."""


class BadScenario(BackendUnavailable):
    """The --scenario file is invalid: bad input, so commands exit 2."""


class GpuLost(RuntimeError):
    """NVML answered GpuIsLost (or the GPU fell off the bus): the GPU is a fault, not a gap."""

    def __init__(self, gpu: int, detail: str, reason: LostReason = LostReason.GPU_IS_LOST):
        super().__init__(f"GPU {gpu} is lost: {detail}")
        self.gpu = gpu
        self.detail = detail
        self.reason = reason


class ControlError(RuntimeError):
    """A setting (power limit, smoothing profile) was refused or did not read back as written,
    or a control-side query (the GPU's processes) failed. ``kind``: how NVML failed, where known
    (an ErrorKind value: unknown, timeout, no_permission, other)."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


class EventsFailed(RuntimeError):
    """The NVML event set could not be created or waited on (the message is NVML's)."""


class NvmlStartFailed(RuntimeError):
    """nvmlInit or nvmlDeviceGetCount failed: NVML itself cannot start (the message is NVML's)."""
