"""The one NVML choke point: every pynvml call in rasd goes through this package.

``core``: loading pynvml, the error classifier and a GPU's guarded read; ``readings``: the health
readings as a table; ``control``: power limits, smoothing and processes; ``fields``: the field
ids (shared with the fake NVML); ``adapter``: the node-level object tying them together.
"""

from rasd.backends.nvml.adapter import GpuHandle, NvmlAdapter, XidEventSet
from rasd.backends.nvml.control import PowerLimits
from rasd.backends.nvml.core import REPROBE_POLLS, pynvml_module

__all__ = ["GpuHandle", "NvmlAdapter", "PowerLimits", "REPROBE_POLLS", "XidEventSet", "pynvml_module"]
