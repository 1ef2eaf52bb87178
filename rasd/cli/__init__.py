"""rasd's command line: the only place that prints for people or chooses an exit code.

Each area registers its commands on the one ``main`` group (``register(group)`` in its module),
so the group stays small and every module stays about one job. An area's module loads when one
of its commands is asked for (``AREAS`` names them; a test keeps it equal to what each module
registers), so a daemon started by ``rasd run`` carries only the telemetry commands.
"""

from __future__ import annotations

from rasd.cli.common import main

AREAS: dict[str, tuple[str, ...]] = {
    "rasd.cli.telemetry": ("run", "status"),
    "rasd.cli.ladder": ("explain", "replay", "history", "ladder"),
    "rasd.cli.sdc": ("validate", "accuse"),
    "rasd.cli.power": ("power",),
    "rasd.cli.scheduler": ("scheduler",),
}

main.areas = {name: module for module, names in AREAS.items() for name in names}  # type: ignore[attr-defined]

__all__ = ["AREAS", "main"]
