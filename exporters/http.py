"""The scrape server: ``/metrics`` from the render cache, ``/healthz``, nothing else.

Built for a storm of scrapers on a node whose daemon must keep polling at its pace:
- a real listen backlog (``request_queue_size``; the stdlib default of 5 makes the kernel drop
  SYNs under load, and clients then wait 1, 3, 7 s for retransmits);
- a fixed pool of worker threads: when all are busy the accept loop waits and connections queue
  in the kernel, so a storm costs no new threads and no memory per waiting client;
- a per-connection timeout, so a slow or silent client holds a worker for seconds, not forever;
- one response per connection (HTTP/1.0), so idle keep-alive connections hold nothing.

The requests are read here, on ``socketserver``, rather than by ``http.server``: that module
imports ``http.client``, which loads ``ssl`` (OpenSSL) and the ``email`` parser, 4.2 MB of a
daemon's memory for a server that answers two GET paths. What is read is the request line and
the header lines up to a blank line, with the same limits ``http.server`` sets (65,536 bytes a
line, 100 headers); only ``Accept-Encoding`` is looked at.
"""

from __future__ import annotations

import logging
import selectors
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from exporters.prometheus import CONTENT_TYPE, ScrapeCache, gzip_compress

log = logging.getLogger("rasd.exporter.http")

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current kernels)
WORKERS = 8
CLIENT_TIMEOUT_SECONDS = 5.0
HEALTH_PATHS = ("/healthz", "/-/healthy")
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            414: "URI Too Long", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Health = Callable[[], tuple[bool, str]]


def _accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding lists gzip without ``q=0``."""
    for part in (header or "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


def _split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target, as ``urllib.parse.urlsplit`` splits it. The usual
    target (``/metrics?...``) is split here; only an absolute or ``//`` target loads urllib.parse:
    with ipaddress, which it imports, 0.4 MB of a daemon's memory that nothing else needs."""
    if target.startswith("/") and not target.startswith("//"):
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    from urllib.parse import urlsplit

    url = urlsplit(target)
    return url.path, url.query


def _query_values(query: str, key: str) -> list[str]:
    """The values of ``key`` in ``query``, in order, as ``urllib.parse.parse_qs`` reads them
    (pairs split on ``&`` and the first ``=``, blank values dropped, ``+`` a space); a query
    with %-escapes is read by urllib.parse itself, loaded only then (see ``_split_target``)."""
    if "%" in query:
        from urllib.parse import parse_qs

        return parse_qs(query).get(key, [])
    out = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and name.replace("+", " ") == key:
            out.append(value.replace("+", " "))
    return out


def _http_date(t: float) -> str:
    """RFC 9110's IMF-fixdate (English names whatever the locale)."""
    g = time.gmtime(t)
    return f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} " \
           f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT"


class _BadRequest(Exception):
    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


class _Handler(socketserver.StreamRequestHandler):
    server: "ScrapeServer"
    command = "GET"  # the request's method, once read; HEAD sends no body

    def setup(self) -> None:
        super().setup()
        # reads and writes both: a client that never sends or never reads frees its worker
        self.connection.settimeout(self.server.client_timeout)

    def _line(self, what: str, code: int) -> str:
        raw = self.rfile.readline(MAX_LINE_BYTES + 1)
        if len(raw) > MAX_LINE_BYTES:
            raise _BadRequest(code, f"{what} longer than {MAX_LINE_BYTES} bytes")
        return raw.decode("iso-8859-1")

    def _read(self) -> tuple[str, str, dict[str, str]] | None:
        """(method, target, headers by lower-case name) of the request; None when the client
        closed without sending one."""
        line = self._line("request line", 414)
        if not line:
            return None
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(400, f"bad request line {line.strip()[:80]!r}; expected e.g. GET /metrics HTTP/1.1")
        if parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            raise _BadRequest(505, f"{parts[2][:20]} is not served; use HTTP/1.0 or HTTP/1.1")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            h = self._line("header line", 431)
            if h in ("\r\n", "\n", ""):
                return parts[0], parts[1], headers
            name, sep, value = h.partition(":")
            if not sep:
                raise _BadRequest(400, f"bad header line {h.strip()[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        raise _BadRequest(431, f"more than {MAX_HEADERS} headers")

    def handle(self) -> None:
        try:
            request = self._read()
        except _BadRequest as e:
            self._send(e.code, f"{e}\n".encode())
            return
        if request is None:
            return
        self.command, target, headers = request
        if self.command not in ("GET", "HEAD"):
            self._send(405, f"{self.command[:20]} is not served; rasd answers GET and HEAD\n".encode(),
                       extra={"Allow": "GET, HEAD"})
            return
        try:
            path, query = _split_target(target)
        except ValueError as e:  # e.g. an unclosed IPv6 bracket in an absolute target
            self._send(400, f"bad request target {target[:80]!r} ({e}); expected e.g. /metrics\n".encode())
            return
        if path == "/metrics":
            self._metrics(_query_values(query, "name[]"), headers.get("accept-encoding"))
        elif path in HEALTH_PATHS:
            ok, reason = self.server.health()
            self._send(200 if ok else 503, (reason or ("ok" if ok else "unhealthy")).encode() + b"\n")
        else:
            self._send(404, f"not found: {path}; rasd serves /metrics and /healthz\n".encode())

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.0 {code} {_REASONS.get(code, '')}", "Server: rasd", f"Date: {_http_date(time.time())}",
                f"Content-Type: {ctype}", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1")
        self.wfile.write(data if self.command == "HEAD" else data + body)

    def _metrics(self, names: list[str], accept_encoding: str | None) -> None:
        cache = self.server.cache
        r = cache.get()
        gz = _accepts_gzip(accept_encoding)
        extra = {"Vary": "Accept-Encoding"}
        if names:
            body = r.select(frozenset(names))
            if gz:
                body = gzip_compress(body)
        else:
            body = cache.gzipped(r) if gz else r.body
        if gz:
            extra["Content-Encoding"] = "gzip"
        self._send(200, body, CONTENT_TYPE, extra)


class ScrapeServer(socketserver.TCPServer):
    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True
    # handle_request looks once and returns: a connection gone between the accept loop's select
    # and its accept must not leave the loop blocked where shutdown's wake-up cannot reach it
    timeout = 0.0

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
        self._wake_r, self._wake_w = socket.socketpair()

    def health(self) -> tuple[bool, str]:
        if self._health is not None:
            return self._health()
        # the source's latest snapshot, not the render's: that one is held weakly, and a check
        # has no reason to render the exposition
        return (True, "ok") if self.cache.latest() is not None else (False, "no health poll yet")

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
        self._thread = threading.Thread(target=self._serve, name="rasd-http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Accept until shut down. Unlike ``serve_forever``, which wakes twice a second to look
        for a shutdown, an idle server sleeps in the selector until a client connects or
        ``shutdown`` writes to the wake pair: on a node the daemon's idle threads cost nothing."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ, "listen")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._closing.is_set():
                for key, _ in sel.select():
                    if key.data == "listen" and not self._closing.is_set():
                        self.handle_request()  # the socket is readable: it accepts at once

    def shutdown(self) -> None:
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:  # the accept loop ends at once: it was woken above
            self._thread.join(2.0)
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

