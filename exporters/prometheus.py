"""The Prometheus exporter: the sections over the latest snapshot, rendered once per snapshot.

A scrape never touches NVML: it formats the snapshot the pollers last published. Each section
(gpu, daemon, ladder, sdc, power, scheduler) runs isolated, so a bug in one yields
``rasd_exporter_collector_success{collector="..."} 0`` and the rest of the scrape, never an
HTTP 500 (dcgm-exporter's failure mode).

``ScrapeCache`` renders the text once per snapshot (the first scrape after a new snapshot pays,
every other scrape of it gets the same bytes, gzipped once when a client asks) so a storm of
scrapers costs the daemon one render per health poll at most. ``RasdCollector`` offers the same
sections to prometheus_client's registry (tests, ``generate_latest``); only ``make_registry``
imports prometheus_client, so a daemon never loads it.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from exporters.family import Family, GaugeFamily, TextRenderer
from rasd.snapshot import Snapshot

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from exporters.http import ScrapeServer

log = logging.getLogger("rasd.exporter")

SECTIONS = ("gpu", "daemon", "ladder", "sdc", "power", "scheduler")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Level 1: a 72-GPU exposition (600 KiB) shrinks about 10x in a few ms; level 6 gains little more
# for three times the CPU, paid by the daemon on every new snapshot.
GZIP_LEVEL = 1

SectionFn = Callable[[Snapshot], Iterable[Family]]


def gzip_compress(data: bytes) -> bytes:
    """The gzip member of ``data``: ``gzip.compress(data, GZIP_LEVEL, mtime=0)``, which on Python
    3.11 and later is this same zlib call (zlib writes the header: mtime 0). The gzip module, with
    its file classes, is not loaded into a daemon for it."""
    if sys.version_info >= (3, 11):
        return zlib.compress(data, GZIP_LEVEL, 31)
    import gzip  # pragma: no cover - Python 3.10's gzip writes its own header (OS 255)

    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def load_sections(names: Iterable[str] = SECTIONS) -> dict[str, SectionFn]:
    return {n: importlib.import_module(f"exporters.sections.{n}").collect for n in names}


class _Sections:
    """Runs every section over one snapshot; a failing section is logged once, then counted."""

    def __init__(self, sections: dict[str, SectionFn] | None):
        self.sections = sections if sections is not None else load_sections()
        self._failed_once: set[str] = set()

    def collect(self, snap: Snapshot | None) -> Iterator[Family]:
        success = GaugeFamily(
            "rasd_exporter_collector_success",
            "1 when the section of the snapshot was exported without error, else 0.",
            labels=["collector"],
        )
        duration = GaugeFamily(
            "rasd_exporter_collector_duration_seconds",
            "Time spent formatting the section during this scrape.",
            labels=["collector"],
        )
        if snap is None:  # before the first poll: only say so
            for name in self.sections:
                success.add_metric([name], 0)
            yield success
            return
        for name, fn in self.sections.items():
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


class RasdCollector:
    """The sections as a prometheus_client collector (for registries and ``generate_latest``): a
    ``Family`` reads as prometheus_client's metric family there."""

    def __init__(self, snapshot: Callable[[], Snapshot | None], sections: dict[str, SectionFn] | None = None):
        self._snapshot = snapshot
        self._sections = _Sections(sections)

    def describe(self) -> list[Family]:
        # Families change with the node (GPU count, links): let the registry skip collect() at
        # registration time instead of describing a fixed set.
        return []

    def collect(self) -> Iterator[Family]:
        return self._sections.collect(self._snapshot())


def make_registry(snapshot: Callable[[], Snapshot | None], sections: dict[str, SectionFn] | None = None) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(RasdCollector(snapshot, sections))  # type: ignore[arg-type]  # a Collector by its methods
    return reg


@dataclass(slots=True)
class Rendered:
    """One snapshot's exposition: the body, and where each family's text lies in it (by sample
    name), for Prometheus's ``name[]`` selection; the body is the only copy of the text.

    The snapshot is held by a weak reference: between a new snapshot and the next scrape (15 s
    at Prometheus's default, a snapshot a second) a strong one kept the rendered snapshot alive
    beside the daemon's, 0.2 MB at 72 GPUs (each GPU's counters and sample). One that is gone
    is no longer the daemon's latest, so the next scrape renders anew either way."""

    _snapshot: weakref.ref[Snapshot] | None
    families: tuple[tuple[str, int, int], ...]
    body: bytes
    _gzipped: bytes | None = field(default=None)

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot rendered, while it is still alive (None before the first poll)."""
        return self._snapshot() if self._snapshot is not None else None

    def select(self, names: frozenset[str]) -> bytes:
        """Only the families with a sample named in ``names`` (Prometheus's ``name[]``)."""
        body = self.body
        parts = [body[start:end] for name, start, end in self.families if name in names]
        if not parts:  # an empty body reads as "target has no metrics": say why instead
            return ("# no series named " + " ".join(sorted(names)) + "\n").encode()
        return b"".join(parts)


class ScrapeCache:
    """The latest snapshot's exposition, rendered at most once per snapshot. Thread-safe.

    It holds one snapshot's body and, once a client asked, its gzip, not the snapshot itself; a
    new snapshot's render replaces both (a scraper still sending the old body keeps it until it
    is done)."""

    def __init__(self, snapshot: Callable[[], Snapshot | None], sections: dict[str, SectionFn] | None = None):
        self._snapshot = snapshot
        self._sections = _Sections(sections)
        self._renderer = TextRenderer()
        self._lock = threading.Lock()
        self._current: Rendered | None = None
        self.renders = 0  # how many times the text was built (tests and benchmarks read it)

    def latest(self) -> Snapshot | None:
        """The source's latest snapshot (None before the first poll), without rendering it."""
        return self._snapshot()

    def get(self) -> Rendered:
        snap = self._snapshot()
        cur = self._current
        if cur is not None and cur.snapshot is snap and snap is not None:
            return cur
        # one renderer at a time: scrapers that arrive meanwhile wait and take its result
        with self._lock:
            cur = self._current
            if cur is not None and cur.snapshot is snap and snap is not None:
                return cur
            body, index = self._renderer.render(self._sections.collect(snap))
            cur = Rendered(weakref.ref(snap) if snap is not None else None, index, body)
            self._current = cur
            self.renders += 1
            return cur

    def gzipped(self, r: Rendered) -> bytes:
        """The body of ``r`` gzipped, compressed once per snapshot."""
        if r._gzipped is None:
            with self._lock:
                if r._gzipped is None:
                    r._gzipped = gzip_compress(r.body)
        return r._gzipped


def serve(snapshot: Callable[[], Snapshot | None], host: str, port: int,
          health: Callable[[], tuple[bool, str]] | None = None) -> "ScrapeServer":
    """Start the HTTP server (``/metrics``, ``/healthz``) on its own threads; returns it
    (``shutdown()`` stops it, ``server_address`` says where it listens)."""
    from exporters.http import ScrapeServer

    server = ScrapeServer((host, port), ScrapeCache(snapshot), health)
    server.start()
    return server
