"""What runs checks for the SDC service and its accusations, in this process or in a child."""

from __future__ import annotations

import threading
from typing import Callable, Protocol, Sequence

from rasd.sdc.results import Outcome
from rasd.sdc.settings import SdcSettings


class Checks(Protocol):
    """What runs checks for the SDC service and its accusations: ``rasd.sdc.validation.Validator``
    in this process, or ``rasd.sdc.isolated.ChildValidator`` in a child process per check."""

    settings: SdcSettings

    @property
    def gpus(self) -> list[int]: ...

    def run(self, targets: Sequence[int], level: str, force: bool = False, seed: int | None = None,
            progress: Callable[[int, int, str], None] | None = None, cancel: threading.Event | None = None,
            wait_seconds: float = 0.0, scale: float = 1.0) -> Outcome: ...
