"""The scrape server: ``/metrics`` from the render cache, ``/healthz``, nothing else.

Built for a storm of scrapers on a node whose daemon must keep polling at its pace:
- a real listen backlog (``request_queue_size``; the stdlib default of 5 makes the kernel drop
  SYNs under load, and clients then wait 1, 3, 7 s for retransmits);
- a fixed pool of worker threads: when all are busy the accept loop waits and connections queue
  in the kernel, so a storm costs no new threads and no memory per waiting client;
- a per-connection timeout, so a slow or silent client holds a worker for seconds, not forever;
- one response per connection (HTTP/1.0), so idle keep-alive connections hold nothing.
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from exporters.prometheus import CONTENT_TYPE, GZIP_LEVEL, ScrapeCache

log = logging.getLogger("rasd.exporter.http")

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current kernels)
WORKERS = 8
CLIENT_TIMEOUT_SECONDS = 5.0
HEALTH_PATHS = ("/healthz", "/-/healthy")

Health = Callable[[], tuple[bool, str]]


def _accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding lists gzip without ``q=0``."""
    for part in (header or "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


class _Handler(BaseHTTPRequestHandler):
    server: "ScrapeServer"
    server_version = "rasd"

    def setup(self) -> None:
        super().setup()
        # reads and writes both: a client that never sends or never reads frees its worker
        self.connection.settimeout(self.server.client_timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # one line per scrape would flood the journal; errors are counted, not logged

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        url = urlsplit(self.path)
        if url.path == "/metrics":
            self._metrics(parse_qs(url.query).get("name[]", []))
        elif url.path in HEALTH_PATHS:
            ok, reason = self.server.health()
            self._send(200 if ok else 503, (reason or ("ok" if ok else "unhealthy")).encode() + b"\n")
        else:
            self._send(404, f"not found: {url.path}; rasd serves /metrics and /healthz\n".encode())

    do_HEAD = do_GET

    def _metrics(self, names: list[str]) -> None:
        cache = self.server.cache
        r = cache.get()
        gz = _accepts_gzip(self.headers.get("Accept-Encoding"))
        extra = {"Vary": "Accept-Encoding"}
        if names:
            body = r.select(frozenset(names))
            if gz:
                body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        else:
            body = cache.gzipped(r) if gz else r.body
        if gz:
            extra["Content-Encoding"] = "gzip"
        self._send(200, body, CONTENT_TYPE, extra)


class ScrapeServer(HTTPServer):
    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cache: ScrapeCache, health: Health | None = None,
                 workers: int = WORKERS, client_timeout: float = CLIENT_TIMEOUT_SECONDS):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.cache = cache
        self._health = health
        self.client_timeout = client_timeout
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rasd-http")
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    def health(self) -> tuple[bool, str]:
        if self._health is not None:
            return self._health()
        return (True, "ok") if self.cache.get().snapshot is not None else (False, "no health poll yet")

    def process_request(self, request: Any, client_address: Any) -> None:
        # All workers busy: wait here, so further connections queue in the kernel's backlog.
        while not self._slots.acquire(timeout=0.25):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shut down: we are stopping
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client that hangs up or times out is normal
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("event=scrape_client_error client=%s", client_address, exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="rasd-http", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._closing.set()
        if self._thread is not None:  # serve_forever never ran: nothing to wait for
            super().shutdown()
        self.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

