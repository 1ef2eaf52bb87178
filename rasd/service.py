"""What the daemon asks of every area service (ladder, SDC, power, scheduler): one protocol, no probing.

``state()`` goes into the snapshot; ``handlers`` are the service's control-socket operations;
``reconfigure`` takes the service's own section of a reloaded config (SIGHUP); ``close`` runs
once on stop, bounded in time. A service that needs nothing but the time each main-loop pass is
``Ticking``; the ladder (fed the pass's fault events) and the scheduler (fed the ladder's open
decisions) are called with their inputs by the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, Protocol, TypeVar

if TYPE_CHECKING:
    from rasd.config import Config

# A control-socket operation: the request's JSON object in, the reply's JSON object out;
# ValueError is a bad request (its message goes back to the client).
Handler = Callable[[dict[str, Any]], dict[str, Any]]

SettingsT = TypeVar("SettingsT", contravariant=True)
StateT = TypeVar("StateT", covariant=True)
S = TypeVar("S")
T = TypeVar("T")


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


@dataclass(frozen=True)
class Bound(Generic[S]):
    """A service as the daemon holds it: its name and the function that picks its section of
    the config."""

    name: str
    service: Service[S, Any]
    settings: Callable[[Config], S]

    def reconfigure(self, cfg: Config) -> None:
        self.service.reconfigure(self.settings(cfg))


def tick_and_read(service: Ticking[Any, T], now_wall: float) -> T:
    """One pass of a service that needs only the time; its state after it."""
    service.tick(now_wall)
    return service.state()
