"""For power-sampler tests: a sink that counts each GPU's updates (safe to call from any
thread), and a fake node whose GPU 2 hangs in its instant-power read until the test releases it."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

# GPU 2's first nvmlDeviceGetFieldValues call hangs (a wedged driver call)
GPU2_HANGS = """
    [[event]]
    kind = "nvml_hang"
    at = 0
    gpu = 2
    function = "nvmlDeviceGetFieldValues"
    seconds = 1.5
    calls = 1
    """


def gpu2_hung(fake: Callable[..., Any]) -> tuple[Any, threading.Event]:
    """A fake backend whose GPU 2 hangs (``GPU2_HANGS``), and the event that ends the hang. The
    wedged call returns when the test says so, not after a wall-clock time: what is checked
    while it hangs never races its end on a slow machine."""
    be = fake(GPU2_HANGS)
    release = threading.Event()
    be.fake_node.sleep = lambda seconds: release.wait(60)
    return be, release


class CountingSink:
    """Call it with a batch of samples; ``counts()`` is each GPU's updates so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[int, int] = {}

    def __call__(self, batch: Iterable[Any]) -> None:
        with self._lock:
            for x in batch:
                self._seen[x.gpu] = self._seen.get(x.gpu, 0) + 1

    def counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._seen)
