"""What the daemon asks of every area service (ladder, SDC, power, scheduler): one protocol, no probing.

``state()`` goes into the snapshot; ``handlers`` are the service's control-socket operations;
``reconfigure`` takes the service's own section of a reloaded config (SIGHUP); ``close`` runs
once on stop, bounded in time. A service that needs nothing but the time each main-loop pass is
``Ticking``; the ladder (fed the pass's fault events) and the scheduler (fed the ladder's open
decisions) are called with their inputs by the daemon.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, TypeVar

# A control-socket operation: the request's JSON object in, the reply's JSON object out;
# ValueError is a bad request (its message goes back to the client).
Handler = Callable[[dict[str, Any]], dict[str, Any]]

SettingsT = TypeVar("SettingsT", contravariant=True)
StateT = TypeVar("StateT", covariant=True)


class Service(Protocol[SettingsT, StateT]):
    def state(self) -> StateT:
        """The service's part of the snapshot: immutable, cheap to build."""
        ...

    def handlers(self) -> Mapping[str, Handler]:
        """Control-socket operations by name (may be empty)."""
        ...

    def reconfigure(self, settings: SettingsT, /) -> None:
        """Apply this service's section of a reloaded config (or log that it needs a restart)."""
        ...

    def close(self) -> None:
        """Stop: finish or cancel work in flight, give back what was changed on the GPUs."""
        ...


class Ticking(Service[SettingsT, StateT], Protocol[SettingsT, StateT]):
    def tick(self, now_wall: float, /) -> object:
        """One main-loop pass at Unix time ``now_wall``: never blocks on NVML or a long check."""
        ...
