"""Backends: where readings come from.

``open_backend("nvml")`` wraps the real ``pynvml``; ``open_backend("fake")`` wraps a fake NVML
library simulating a node. Both give the same ``NvmlAdapter``, so everything above this package
is the same code on a GPU node and on a laptop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rasd.backends.errors import BackendUnavailable, BadScenario, NvmlStartFailed
from rasd.backends.nvml import NvmlAdapter, pynvml_module

log = logging.getLogger("rasd.backends")

_FAKE_HINT = "use --backend fake to run rasd on a simulated node"


@dataclass
class Backend:
    name: str  # "nvml" or "fake"
    adapter: NvmlAdapter
    fake_node: Any = None  # rasd.backends.fake.FakeNode on the fake backend
    scenario: Any = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def kernel_log(self, path: str) -> Any:
        """Where driver Xid messages come from: the fake node's log, or /dev/kmsg (None if off)."""
        if self.fake_node is not None:
            return self.fake_node.kernel_log
        if not path:
            return None
        from rasd.telemetry.kmsg import KernelLog

        return KernelLog.open(path)

    def close(self) -> None:
        self.adapter.close()


def open_backend(
    kind: str | None,
    scenario: str | None = None,
    seed: int | None = None,
    workload: str | None = None,
    gpus: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Backend:
    """Open and initialise a backend. ``kind=None`` means NVML when it loads and has a GPU.

    Raises BackendUnavailable (one line for people) when that is not possible."""
    if kind is None:
        if scenario is not None:
            kind = "fake"
        else:
            return _open_nvml(auto=True)
    if kind == "nvml":
        if scenario is not None:  # bad input (exit 2), not a node without NVML
            raise BadScenario(
                "--scenario works only with the fake backend; drop it or use --backend fake"
            )
        return _open_nvml(auto=False)
    if kind == "fake":
        return _open_fake(scenario, seed, workload, gpus, clock)
    raise BackendUnavailable(f"unknown backend {kind!r}; choose nvml or fake")


def _open_nvml(auto: bool) -> Backend:
    try:
        lib = pynvml_module()
    except ImportError:
        raise BackendUnavailable(
            f"the nvidia-ml-py package is not installed (pip install nvidia-ml-py), or {_FAKE_HINT}"
        ) from None
    adapter = NvmlAdapter(lib)
    try:
        adapter.open()
    except NvmlStartFailed as e:
        raise BackendUnavailable(
            f"NVML could not be initialised ({e}): is the NVIDIA driver loaded? Otherwise {_FAKE_HINT}"
        ) from None
    if not adapter.gpus():
        adapter.close()
        raise BackendUnavailable(f"NVML loaded but reports no GPU; {_FAKE_HINT}")
    return Backend(name="nvml", adapter=adapter)


def _open_fake(
    scenario: str | None,
    seed: int | None,
    workload: str | None,
    gpus: int | None,
    clock: Callable[[], float],
) -> Backend:
    from rasd.backends.fake import FakeNode, FakeNvml
    from rasd.backends.fake.scenario import ScenarioError, load_scenario

    scn = None
    if scenario is not None:
        try:
            scn = load_scenario(scenario)
        except ScenarioError as e:
            raise BadScenario(str(e)) from None
    kwargs: dict[str, Any] = {"scenario": scn, "clock": clock}
    if seed is not None:
        kwargs["seed"] = seed
    if workload is not None:
        kwargs["workload"] = workload
    if gpus is not None:
        kwargs["gpu_count"] = gpus
    try:
        node = FakeNode(**kwargs)  # checks the scenario against the node it builds
    except ScenarioError as e:
        raise BadScenario(str(e)) from None
    lib = FakeNvml(node, pynvml_module())
    adapter = NvmlAdapter(lib)
    adapter.open()
    return Backend(name="fake", adapter=adapter, fake_node=node, scenario=scn)
