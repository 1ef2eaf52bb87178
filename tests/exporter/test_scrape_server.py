"""The scrape server under load and misuse: cache, gzip, health, 404, name[] filter, backlog, limits."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from exporters.http import ScrapeServer
from exporters.prometheus import ScrapeCache, make_registry
from rasd.freshness import Freshness
from rasd.model import Health
from rasd.backends.fake.clock import ManualClock
from tests.exporter.test_exposition import fixed_snapshot


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def server(fake):
    snap = fixed_snapshot(fake)
    holder = {"snap": snap}
    cache = ScrapeCache(lambda: holder["snap"])
    clock = ManualClock()
    fresh = Freshness(lambda: 1.0, clock=clock)
    fresh.mark(snap)
    srv = ScrapeServer(("127.0.0.1", 0), cache, fresh.check, workers=4, client_timeout=0.5)
    srv.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv, base, holder, clock, fresh
    finally:
        srv.shutdown()


def test_cached_text_is_what_generate_latest_writes(fake):
    snap = fixed_snapshot(fake)
    ours = ScrapeCache(lambda: snap).get().body.decode().splitlines()
    upstream = generate_latest(make_registry(lambda: snap)).decode().splitlines()
    assert len(ours) == len(upstream) > 100
    differ = [(a, b) for a, b in zip(ours, upstream) if a != b and "collector_duration_seconds" not in a]
    assert differ == []


def test_a_snapshot_is_rendered_once_however_many_scrape(fake):
    snap = fixed_snapshot(fake)
    holder = {"snap": snap}
    cache = ScrapeCache(lambda: holder["snap"])
    bodies = []
    threads = [threading.Thread(target=lambda: bodies.append(cache.get().body)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.renders == 1 and len(set(bodies)) == 1
    holder["snap"] = replace(snap, health_polls=snap.health_polls + 1)
    assert b"rasd_health_polls_total 3.0" in cache.get().body
    assert cache.renders == 2


def test_the_cache_keeps_the_body_not_the_snapshot_it_rendered(fake):
    """Between a new snapshot and the next scrape the rendered one is not kept alive by the
    cache; the same snapshot is still rendered once, and a new one (even of equal content, or
    made where the old one lay) is rendered anew."""
    import gc
    import weakref

    snap = fixed_snapshot(fake)
    holder = {"snap": snap}
    cache = ScrapeCache(lambda: holder["snap"])
    first = cache.get()
    assert first.snapshot is snap and cache.get() is first and cache.renders == 1
    gone = weakref.ref(snap)
    holder["snap"] = replace(snap)  # equal content, another object
    del snap
    gc.collect()
    assert gone() is None and first.snapshot is None  # the cache did not keep it
    second = cache.get()
    assert cache.renders == 2 and second.snapshot is holder["snap"]

    def steady(body: bytes) -> list[bytes]:  # the sections' own timings differ from render to render
        return [ln for ln in body.splitlines() if b"collector_duration_seconds" not in ln]

    assert steady(second.body) == steady(first.body)
    assert cache.get() is second and cache.renders == 2


def test_metrics_plain_and_gzip_carry_the_same_text(server):
    _srv, base, *_ = server
    code, headers, plain = _get(base + "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'rasd_gpu_up{gpu="0"} 1.0' in plain
    code, headers, packed = _get(base + "/metrics", {"Accept-Encoding": "gzip"})
    assert code == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed) == plain and len(packed) < len(plain) / 3
    _, headers, _ = _get(base + "/metrics", {"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in headers


def test_only_metrics_and_health_are_served(server):
    _srv, base, *_ = server
    for path in ("/", "/metricsx", "/favicon.ico", "/metrics/extra"):
        code, _, body = _get(base + path)
        assert code == 404, path
        assert b"/metrics" in body


def test_health_follows_poll_freshness_with_the_reason(server):
    _srv, base, holder, clock, fresh = server
    for path in ("/healthz", "/-/healthy"):
        code, _, body = _get(base + path)
        assert code == 200 and body.startswith(b"ok"), body
    clock.advance(30.0)  # the main loop stopped publishing
    code, _, body = _get(base + "/healthz")
    assert code == 503 and b"stalled" in body and b"30.0 s ago" in body
    stale = tuple(replace(g, health=Health.STALE) for g in holder["snap"].gpus)
    fresh.mark(replace(holder["snap"], gpus=stale))
    code, _, body = _get(base + "/-/healthy")
    assert code == 503 and b"overran" in body


@pytest.mark.parametrize("fresh_object", [False, True])
def test_the_built_in_health_check_sees_a_snapshot_the_render_holds_weakly(fake, fresh_object: bool):
    """Without a freshness check of its own, the server is healthy once there is a snapshot,
    also where the source hands out a new object each call (the render's weak reference to it
    is then dead at once) and before any scrape rendered one."""
    snap = fixed_snapshot(fake)
    cache = ScrapeCache((lambda: replace(snap)) if fresh_object else (lambda: snap))
    srv = ScrapeServer(("127.0.0.1", 0), cache)
    try:
        assert srv.health() == (True, "ok")
        cache.get()  # a render in between changes nothing
        assert srv.health() == (True, "ok")
        assert cache.renders == 1  # the check itself renders nothing
    finally:
        srv.server_close()
    empty = ScrapeServer(("127.0.0.1", 0), ScrapeCache(lambda: None))
    try:
        assert empty.health() == (False, "no health poll yet")
    finally:
        empty.server_close()


def test_health_before_the_first_poll_is_503():
    fresh = Freshness(lambda: 1.0)
    ok, why = fresh.check()
    assert not ok and "no health poll yet" in why


def test_name_filter_selects_families_and_never_answers_empty(server):
    _srv, base, *_ = server
    _, _, body = _get(base + "/metrics?name[]=rasd_gpu_up&name[]=rasd_health_polls_total")
    lines = [ln for ln in body.decode().splitlines() if not ln.startswith("#")]
    assert lines and {ln.split("{")[0].split(" ")[0] for ln in lines} == {"rasd_gpu_up", "rasd_health_polls_total"}
    _, _, body = _get(base + "/metrics?name[]=no_such_metric")
    assert body.strip() and b"no_such_metric" in body
    _, headers, body = _get(base + "/metrics?name[]=rasd_gpu_up", {"Accept-Encoding": "gzip"})
    assert b"rasd_gpu_up{" in gzip.decompress(body)


def test_connections_queue_in_a_real_backlog_while_workers_are_busy(server):
    srv, base, *_ = server
    # Hold every worker with a silent client, then open many more connections at once: with a
    # backlog of 5 the kernel drops SYNs and connect() stalls for a retransmit (1 s and more).
    port = srv.server_address[1]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    time.sleep(0.1)
    waiting = []
    try:
        for _ in range(150):
            s = socket.socket()
            s.settimeout(0.9)  # below the first SYN retransmit (1 s)
            s.connect(("127.0.0.1", port))  # raises on a dropped SYN
            waiting.append(s)
        for s in waiting[:3]:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        s = waiting[0]
        s.settimeout(60.0)  # served once a held worker's client times out; generous for a loaded machine
        assert s.recv(12).startswith(b"HTTP/1.0 200")
    finally:
        for s in held + waiting:
            s.close()


def test_silent_clients_time_out_and_cost_no_thread_each(server):
    srv, base, *_ = server
    port = srv.server_address[1]
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + 4  # the fixed worker pool, not one per client
        idle[0].settimeout(60.0)
        assert idle[0].recv(100) == b""  # the server hung up after client_timeout
        # and still serves afterwards: behind the other idle clients, each hung up after
        # client_timeout by one of 4 workers (~7 s here; much longer on a loaded machine)
        code, _, _ = _get(base + "/metrics", timeout=120.0)
        assert code == 200
    finally:
        for s in idle:
            s.close()


def test_daemon_serves_health_and_metrics(tmp_path: Path):
    from tests.e2e.helpers import http_get, rasd_daemon, wait_for

    with rasd_daemon(tmp_path) as (_proc, url):
        # fresh once a poll has finished on time: wait for it rather than assume the machine's pace
        wait_for(lambda: http_get(url + "/healthz").startswith("ok"), timeout=60)
        code, _, _ = _get(url + "/nope")
        assert code == 404


def test_a_changed_value_in_a_steady_family_is_rendered_again(fake):
    from types import MappingProxyType

    snap = fixed_snapshot(fake)
    holder = {"snap": snap}
    cache = ScrapeCache(lambda: holder["snap"])
    assert b'rasd_gpu_pcie_replays_total{gpu="0"} 0.0' in cache.get().body
    g0 = snap.gpus[0]
    changed = replace(g0, counters=MappingProxyType(dict(g0.counters, pcie_replays=99)))
    holder["snap"] = replace(snap, gpus=(changed, *snap.gpus[1:]))
    body = cache.get().body
    assert b'rasd_gpu_pcie_replays_total{gpu="0"} 99.0' in body
    assert b'rasd_gpu_pcie_replays_total{gpu="1"} 0.0' in body
    holder["snap"] = snap  # and back
    assert b'rasd_gpu_pcie_replays_total{gpu="0"} 0.0' in cache.get().body


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /metrics\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"431"),
    (b"GET http://[x/metrics HTTP/1.1\r\n\r\n", b"400"),  # a target urllib cannot split
])
def test_a_bad_request_gets_one_line_saying_why_and_the_server_goes_on(server, request_bytes, status):
    _srv, base, *_ = server
    reply = _raw(base, request_bytes)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status, head
    assert body.count(b"\n") == 1 and len(body) > 10, body
    code, _, plain = _get(base + "/metrics")
    assert code == 200 and b"rasd_gpu_up" in plain


def test_head_answers_the_headers_of_get_without_a_body(server):
    _srv, base, *_ = server
    reply = _raw(base, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and body == b""
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1])
    assert length == len(_get(base + "/metrics")[2])


def test_the_accept_step_returns_at_once_when_no_client_is_waiting(server):
    """The accept loop selects, then accepts: a client gone in between must not leave it blocked
    in an accept that shutdown's wake-up cannot reach."""
    srv = server[0]
    t = threading.Thread(target=srv.handle_request, daemon=True)
    t.start()
    t.join(2.0)
    assert not t.is_alive()


_TARGET_CHARS = st.sampled_from(list("/?#&=+%:ab[]5BD") + ["name[]", "name%5B%5D", "%zz", "%C3%A9", "é", "//h"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TARGET_CHARS, max_size=12).map("".join))
def test_request_targets_split_and_read_as_urllib_parse_reads_them(tail: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    from exporters.http import _query_values, _split_target

    for target in ("/metrics" + tail, tail, "/" + tail):
        try:
            url = urlsplit(target)
        except ValueError:  # e.g. "//[": refused alike
            with pytest.raises(ValueError):
                _split_target(target)
            continue
        path, query = _split_target(target)
        assert (path, query) == (url.path, url.query), target
        assert _query_values(query, "name[]") == parse_qs(url.query).get("name[]", []), target


def test_the_scrape_server_loads_no_url_parser_for_the_usual_requests() -> None:
    """urllib.parse (with ipaddress, which it imports) is 0.4 MB of a daemon's memory: the
    server splits origin-form targets and plain queries itself."""
    import subprocess
    import sys

    code = ("import sys, exporters.http as h\n"
            "assert h._split_target('/metrics?name[]=a+b&x=') == ('/metrics', 'name[]=a+b&x=')\n"
            "assert h._query_values('name[]=a+b&name[]=c&x=', 'name[]') == ['a b', 'c']\n"
            "print(sorted(m for m in ('urllib.parse', 'ipaddress', 'pathlib') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000) | st.text(alphabet="rasd_gpu{}=\"0123456789. \n#", max_size=20000).map(str.encode))
def test_bodies_are_gzipped_as_the_gzip_module_writes_them(data: bytes) -> None:
    from exporters.prometheus import GZIP_LEVEL, gzip_compress

    assert gzip_compress(data) == gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    assert gzip.decompress(gzip_compress(data)) == data
