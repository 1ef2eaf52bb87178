"""The Prometheus exporter: one custom collector over the latest snapshot, and the HTTP server.

A scrape never touches NVML: it formats the snapshot the pollers last published. Each section
(gpu, daemon, ladder, sdc, power) runs isolated, so a bug in one yields
``rasd_exporter_collector_success{collector="..."} 0`` and the rest of the scrape, never an
HTTP 500 (dcgm-exporter's failure mode).
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rasd.model import Snapshot

log = logging.getLogger("rasd.exporter")

SECTIONS = ("gpu", "daemon", "ladder", "sdc", "power")

SectionFn = Callable[[Snapshot], Iterable[Metric]]


def load_sections(names: Iterable[str] = SECTIONS) -> dict[str, SectionFn]:
    return {n: importlib.import_module(f"exporters.sections.{n}").collect for n in names}


class RasdCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        sections: dict[str, SectionFn] | None = None,
    ):
        self._snapshot = snapshot
        self._sections = sections if sections is not None else load_sections()
        self._failed_once: set[str] = set()

    def describe(self) -> list[Metric]:
        # Families change with the node (GPU count, links): let the registry skip collect() at
        # registration time instead of describing a fixed set.
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        success = GaugeMetricFamily(
            "rasd_exporter_collector_success",
            "1 when the section of the snapshot was exported without error, else 0.",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "rasd_exporter_collector_duration_seconds",
            "Time spent formatting the section during this scrape.",
            labels=["collector"],
        )
        if snap is None:  # before the first poll: only say so
            for name in self._sections:
                success.add_metric([name], 0)
            yield success
            return
        for name, fn in self._sections.items():
            t0 = time.perf_counter()
            try:
                families = list(fn(snap))
                ok = 1
            except Exception:  # noqa: BLE001 - one broken section must not fail the scrape
                families, ok = [], 0
                if name not in self._failed_once:
                    self._failed_once.add(name)
                    log.exception("event=collector_failed collector=%s", name)
            yield from families
            success.add_metric([name], ok)
            duration.add_metric([name], time.perf_counter() - t0)
        yield success
        yield duration


def make_registry(snapshot: Callable[[], Snapshot | None], sections: dict[str, SectionFn] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RasdCollector(snapshot, sections))
    return reg


def serve(registry: CollectorRegistry, host: str, port: int) -> object:
    """Start the /metrics HTTP server on a daemon thread; returns the server (``shutdown()``)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
