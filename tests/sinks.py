"""A power sampler's sink for tests: each GPU's updates counted, safe to call from any thread."""

from __future__ import annotations

import threading
from typing import Any, Iterable


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
