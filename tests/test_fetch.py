"""fetch.py against real servers on 127.0.0.1: pytest-httpserver, raw sockets to misbehave."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli  # type: ignore[import-untyped]  # no stubs
import httpcore
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from listener.domain import FeedSource, Fetched, FetchLimits, NotModified
from listener.errors import FeedGone, FetchError
from listener.feeds.fetch import (
    _CURRENT,
    _DECODERS,
    _PIECE_BYTES,
    FeedClient,
    _Deadline,
    _DeadlineStream,
    fetch_feed,
    fetch_many,
    make_client,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
LIMITS = FetchLimits(connect_timeout_s=2, read_timeout_s=2, total_timeout_s=5)
MB = 1024 * 1024

Handler = Callable[[socket.socket, bytes, threading.Event], None]


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def client() -> Iterator[FeedClient]:
    # Shared, as in the daemon (and building its TLS context takes ~0.1 s).
    with make_client(LIMITS) as client:
        yield client


class RawServer:
    """A TCP server on 127.0.0.1 handing each request's connection to `handler` in a thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stop = threading.Event()
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def url(self, path: str = "/feed") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            if self.stop.is_set():  # woken by close()
                conn.close()
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):  # the client gave up, as several tests want
                conn.settimeout(5)
                if self.tls:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                head = b""
                while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                    head += data
                if head:
                    self.heads.append(head)
                    self.handler(conn, head, self.stop)
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        socket.create_connection(("127.0.0.1", self.port)).close()  # wake the accept loop
        self.threads[0].join(5)  # no thread is added after it ends
        for thread in self.threads[1:]:
            thread.join(5)
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(handler, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def response(body: bytes = FEED, *headers: str, close: bool = True) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    head += ["Connection: close"] if close else []
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Gauge:
    """Counts requests a server is handling at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            with self.lock:
                self.now -= 1


def slow_echo(gauge: Gauge, delay_s: float = 0.05) -> Handler:
    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        with gauge.counting():
            stop.wait(delay_s)  # deliberately slow, so that requests overlap
        conn.sendall(response(head.split(b" ")[1]))

    return handle


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed"


def source(
    url: str, id: int = 1, etag: str | None = None, last_modified: str | None = None
) -> FeedSource:
    return FeedSource(id=id, url=url, etag=etag, last_modified=last_modified)


def fetch_error(client: FeedClient, url: str, limits: FetchLimits = LIMITS) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_feed(client, source(url), limits)
    return caught.value


# --- success, headers, conditional GET -------------------------------------------------------


def test_fetch_feed_returns_body_status_and_lowercased_headers(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    headers = {
        "ETag": '"v1"',
        "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
        "Content-Location": "https://example.org/feed.xml",
        "Cache-Control": "max-age=600",
    }
    httpserver.expect_request("/feed").respond_with_data(
        FEED, content_type="application/rss+xml", headers=headers
    )
    url = httpserver.url_for("/feed")

    result = fetch_feed(client, source(url), LIMITS)

    assert isinstance(result, Fetched)
    assert (result.url, result.status, result.body, result.permanent_url) == (url, 200, FEED, None)
    assert result.headers["content-type"] == "application/rss+xml"
    assert result.headers["etag"] == '"v1"'
    assert result.headers["last-modified"] == headers["Last-Modified"]
    assert result.headers["content-location"] == headers["Content-Location"]
    assert result.headers["cache-control"] == "max-age=600"
    assert "content-length" not in result.headers  # it described the wire, not the body
    assert result.duration_ms >= 0


def test_fetch_feed_sends_user_agent_and_accepted_encodings(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    limits = FetchLimits(user_agent="listener-test/1.0 (+https://example.org)")
    httpserver.expect_request(
        "/feed",
        headers={"User-Agent": limits.user_agent, "Accept-Encoding": "gzip, deflate, br"},
    ).respond_with_data(FEED)

    assert isinstance(fetch_feed(client, source(httpserver.url_for("/feed")), limits), Fetched)


def test_fetch_feed_sends_validators_and_returns_not_modified_on_304(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    last_modified = "Wed, 01 Jan 2025 00:00:00 GMT"
    httpserver.expect_request(
        "/feed", headers={"If-None-Match": '"v1"', "If-Modified-Since": last_modified}
    ).respond_with_data(b"", status=304, headers={"ETag": '"v1"'})
    feed = source(httpserver.url_for("/feed"), etag='"v1"', last_modified=last_modified)

    result = fetch_feed(client, feed, LIMITS)

    assert isinstance(result, NotModified)
    assert (result.url, result.permanent_url) == (feed.url, None)
    assert result.headers["etag"] == '"v1"'


def test_fetch_feed_sends_no_validators_when_it_has_none(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    server = raw_server(lambda conn, head, stop: conn.sendall(response()))

    fetch_feed(client, source(server.url()), LIMITS)

    assert b"if-none-match" not in server.heads[0].lower()
    assert b"if-modified-since" not in server.heads[0].lower()


def test_fetch_feed_sends_a_non_ascii_etag_back_as_utf8(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    server = raw_server(lambda conn, head, stop: conn.sendall(response()))

    fetch_feed(client, source(server.url(), etag='W/"café"'), LIMITS)

    assert 'If-None-Match: W/"café"'.encode() in server.heads[0]


# --- content codings and the size cap ---------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate, sent by some
        ("br", brotli.compress),
        ("identity", lambda data: data),
    ],
)
def test_fetch_feed_decodes_compressed_bodies(
    httpserver: HTTPServer,
    client: FeedClient,
    coding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    body = FEED * 5000  # several decoded pieces
    httpserver.expect_request("/feed").respond_with_data(
        compress(body), headers={"Content-Encoding": coding}
    )

    result = fetch_feed(client, source(httpserver.url_for("/feed")), LIMITS)

    assert isinstance(result, Fetched)
    assert result.body == body
    assert "content-encoding" not in result.headers  # the body is no longer encoded


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(FEED)[:-12]),  # truncated
        ("deflate", b"\x00\x01 garbage"),
        ("br", b"not brotli either"),
        ("zstd", FEED),  # we never offered it
    ],
)
def test_fetch_feed_refuses_a_body_it_cannot_decode(
    httpserver: HTTPServer, client: FeedClient, coding: str, body: bytes
) -> None:
    httpserver.expect_request("/feed").respond_with_data(body, headers={"Content-Encoding": coding})

    error = fetch_error(client, httpserver.url_for("/feed"))

    assert error.kind == "decode"


def test_fetch_feed_refuses_a_declared_length_over_the_cap_without_reading_it(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        stop.wait()  # the body never comes: only a fetch that waits for it notices

    started = time.monotonic()
    error = fetch_error(client, raw_server(handle).url(), FetchLimits(max_body_bytes=1000))

    assert error.kind == "too_large"
    assert time.monotonic() - started < 5  # long before the 30 s read timeout


def test_fetch_feed_refuses_an_undeclared_length_over_the_cap(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 2000)

    error = fetch_error(client, raw_server(handle).url(), FetchLimits(max_body_bytes=1000))

    assert error.kind == "too_large"


def test_fetch_feed_accepts_a_body_exactly_at_the_cap(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    httpserver.expect_request("/feed").respond_with_data(b"x" * 1000)

    result = fetch_feed(
        client, source(httpserver.url_for("/feed")), FetchLimits(max_body_bytes=1000)
    )

    assert isinstance(result, Fetched)
    assert len(result.body) == 1000


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [compressor.compress(bytes(MB)) for _ in range(size // MB)]
    return b"".join(chunks) + compressor.flush()


def _brotli_of_zeros(size: int) -> bytes:
    compressor = brotli.Compressor(quality=5)
    chunks: list[bytes] = [compressor.process(bytes(MB)) for _ in range(size // MB)]
    tail: bytes = compressor.finish()
    return b"".join(chunks) + tail


@pytest.mark.parametrize(("coding", "bomb"), [("gzip", _gzip_of_zeros), ("br", _brotli_of_zeros)])
def test_fetch_feed_refuses_a_compression_bomb_without_inflating_it(
    raw_server: Callable[..., RawServer],
    client: FeedClient,
    coding: str,
    bomb: Callable[[int], bytes],
) -> None:
    reply = response(bomb(20 * MB), f"Content-Encoding: {coding}")
    assert len(reply) < 64 * 1024  # tiny on the wire, so no Content-Length check can catch it
    # Our own server, which allocates little: werkzeug's handler peaks at ~10 MB by itself.
    server = raw_server(lambda conn, head, stop: conn.sendall(reply))

    tracemalloc.start()
    try:
        error = fetch_error(client, server.url(), FetchLimits(max_body_bytes=MB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.kind == "too_large"
    assert peak < 4 * MB  # the cap plus a piece and some overhead, far from 20 MB


# too_slow: generation can lag on a loaded CI machine; the property itself is cheap.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=3000),
    repeat=st.integers(1, 100),
    cuts=st.lists(st.integers(0, 400_000), max_size=8),
    coding=st.sampled_from(["gzip", "deflate", "br"]),
)
def test_decoders_are_exact_and_bounded_however_the_body_is_split(
    data: bytes, repeat: int, cuts: list[int], coding: str
) -> None:
    body = data * repeat
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding]
    wire = compress(body)
    bounds = sorted({0, len(wire), *(cut % (len(wire) + 1) for cut in cuts)})
    chunks = [wire[a:b] for a, b in itertools.pairwise(bounds)]

    pieces = list(_DECODERS[coding](iter(chunks)))

    assert b"".join(pieces) == body
    assert all(len(piece) <= 2 * _PIECE_BYTES for piece in pieces)  # bounded, bomb or not


# --- HTTP statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_fetch_feed_reports_http_errors_with_status(
    httpserver: HTTPServer, client: FeedClient, status: int, reason: str
) -> None:
    httpserver.expect_request("/feed").respond_with_data(b"nope", status=status)

    error = fetch_error(client, httpserver.url_for("/feed"))

    assert (error.kind, error.status, error.message) == (
        "http_error",
        status,
        f"HTTP {status} {reason}",
    )


def test_fetch_feed_raises_feed_gone_on_410(httpserver: HTTPServer, client: FeedClient) -> None:
    httpserver.expect_request("/feed").respond_with_data(b"", status=410)
    url = httpserver.url_for("/feed")

    with pytest.raises(FeedGone) as caught:
        fetch_feed(client, source(url), LIMITS)

    assert (caught.value.url, caught.value.status) == (url, 410)


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "120"), (503, "Wed, 21 Oct 2025 07:28:00 GMT"), (503, None)],
)
def test_fetch_feed_reports_throttling_with_the_raw_retry_after(
    httpserver: HTTPServer, client: FeedClient, status: int, retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    httpserver.expect_request("/feed").respond_with_data(b"", status=status, headers=headers)

    error = fetch_error(client, httpserver.url_for("/feed"))

    assert (error.kind, error.status, error.retry_after) == ("throttled", status, retry_after)


# --- redirects --------------------------------------------------------------------------------


def redirect(server: HTTPServer, path: str, status: int, location: str) -> None:
    server.expect_request(path).respond_with_data(
        b"", status=status, headers={"Location": location}
    )


def test_a_cookie_set_on_a_redirect_goes_to_the_next_hop_and_no_further(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    httpserver.expect_request("/feed").respond_with_data(
        b"", status=302, headers={"Location": "/checked", "Set-Cookie": "seen=1; Path=/"}
    )
    httpserver.expect_request("/checked", headers={"Cookie": "seen=1"}).respond_with_data(FEED)

    outcome = fetch_feed(client, source(httpserver.url_for("/feed")), LIMITS)

    assert isinstance(outcome, Fetched)
    assert outcome.body == FEED
    httpserver.clear()
    httpserver.expect_request("/checked").respond_with_data(FEED)
    fetch_feed(client, source(httpserver.url_for("/checked")), LIMITS)
    [(request, _)] = httpserver.log
    assert "Cookie" not in request.headers  # the next fetch starts without it


@pytest.mark.parametrize(
    ("status", "permanent"), [(301, True), (308, True), (302, False), (303, False), (307, False)]
)
def test_fetch_feed_follows_a_redirect_and_reports_only_permanent_moves(
    httpserver: HTTPServer, client: FeedClient, status: int, permanent: bool
) -> None:
    redirect(httpserver, "/old", status, "/new")  # relative Location
    httpserver.expect_request("/new").respond_with_data(FEED)
    new_url = httpserver.url_for("/new")

    result = fetch_feed(client, source(httpserver.url_for("/old")), LIMITS)

    assert isinstance(result, Fetched)
    assert (result.url, result.body) == (new_url, FEED)
    assert result.permanent_url == (new_url if permanent else None)


@pytest.mark.parametrize(
    ("first", "second", "permanent"), [(301, 308, True), (301, 302, False), (302, 301, False)]
)
def test_fetch_feed_reports_a_permanent_move_only_when_every_hop_is_permanent(
    httpserver: HTTPServer, client: FeedClient, first: int, second: int, permanent: bool
) -> None:
    redirect(httpserver, "/a", first, httpserver.url_for("/b"))  # absolute Location
    redirect(httpserver, "/b", second, "c")  # relative to /b
    httpserver.expect_request("/c").respond_with_data(FEED)

    result = fetch_feed(client, source(httpserver.url_for("/a")), LIMITS)

    assert result.url == httpserver.url_for("/c")
    assert result.permanent_url == (httpserver.url_for("/c") if permanent else None)


def test_fetch_feed_returns_not_modified_at_the_end_of_a_permanent_redirect(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    redirect(httpserver, "/old", 301, "/new")
    httpserver.expect_request("/new", headers={"If-None-Match": '"v1"'}).respond_with_data(
        b"", status=304
    )

    result = fetch_feed(client, source(httpserver.url_for("/old"), etag='"v1"'), LIMITS)

    assert isinstance(result, NotModified)
    assert result.permanent_url == httpserver.url_for("/new")


@pytest.mark.parametrize("chain", [["/a", "/a"], ["/a", "/b", "/a"]])
def test_fetch_feed_detects_a_redirect_loop(
    httpserver: HTTPServer, client: FeedClient, chain: list[str]
) -> None:
    for path, target in itertools.pairwise(chain):
        redirect(httpserver, path, 302, target)

    assert fetch_error(client, httpserver.url_for("/a")).kind == "redirect_loop"


@pytest.mark.parametrize(("hops", "ok"), [(3, True), (4, False)])
def test_fetch_feed_follows_at_most_max_redirects(
    httpserver: HTTPServer, client: FeedClient, hops: int, ok: bool
) -> None:
    for hop in range(hops):
        redirect(httpserver, f"/r{hop}", 301, f"/r{hop + 1}")
    httpserver.expect_request(f"/r{hops}").respond_with_data(FEED)
    feed = source(httpserver.url_for("/r0"))
    limits = FetchLimits(max_redirects=3)

    if ok:
        assert isinstance(fetch_feed(client, feed, limits), Fetched)
    else:
        assert fetch_error(client, feed.url, limits).kind == "too_many_redirects"


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/feed", "file:///etc/passwd", None])
def test_fetch_feed_refuses_a_redirect_to_a_non_http_url_or_nowhere(
    httpserver: HTTPServer, client: FeedClient, location: str | None
) -> None:
    headers = {"Location": location} if location else {}
    httpserver.expect_request("/feed").respond_with_data(b"", status=301, headers=headers)

    error = fetch_error(client, httpserver.url_for("/feed"))

    assert (error.kind, error.status) == ("bad_redirect", 301)


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/feed", "file:///etc/passwd", "feed.xml", "http://", "http://[::1"]
)
def test_fetch_feed_refuses_urls_that_are_not_absolute_http(client: FeedClient, url: str) -> None:
    assert fetch_error(client, url).kind == "bad_url"


# --- network failures and time limits ---------------------------------------------------------


def test_fetch_feed_reports_a_refused_connection(client: FeedClient) -> None:
    error = fetch_error(client, closed_port_url())

    assert error.kind == "connect"
    assert isinstance(error.__cause__, httpx.ConnectError)


def test_fetch_feed_reports_a_connection_closed_before_any_response(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    server = raw_server(lambda conn, head, stop: None)  # reads the request, hangs up

    assert fetch_error(client, server.url()).kind == "protocol"


def test_fetch_feed_times_out_when_the_server_never_answers(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    server = raw_server(lambda conn, head, stop: stop.wait())
    limits = FetchLimits(read_timeout_s=0.3, total_timeout_s=10)

    started = time.monotonic()
    error = fetch_error(client, server.url(), limits)

    assert error.kind == "timeout"
    assert 0.25 <= time.monotonic() - started < 3  # not the 10 s total


def trickle(head: bytes, interval_s: float = 0.1) -> Handler:
    """Send `head` one byte at a time, then an endless body, one byte every interval."""

    def handle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        for byte in itertools.chain(head, itertools.repeat(ord("x"))):
            conn.sendall(bytes([byte]))
            if stop.wait(interval_s):
                return

    return handle


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",  # a body that trickles
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # headers that trickle (and never end)
    ],
)
def test_fetch_feed_enforces_the_total_deadline_on_a_trickling_server(
    raw_server: Callable[..., RawServer], client: FeedClient, head: bytes
) -> None:
    server = raw_server(trickle(head, interval_s=0.05))
    limits = FetchLimits(read_timeout_s=0.3, total_timeout_s=0.6)

    started = time.monotonic()
    error = fetch_error(client, server.url(), limits)

    assert error.kind == "timeout"
    assert 0.6 <= time.monotonic() - started < 2  # a trickle that would go on for an hour or more


def test_fetch_feed_deadline_interrupts_a_read_blocked_longer_than_it(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    def stall(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<rss>")
        stop.wait()

    limits = FetchLimits(read_timeout_s=30, total_timeout_s=0.5)

    started = time.monotonic()
    error = fetch_error(client, raw_server(stall).url(), limits)

    assert error.kind == "timeout"
    assert time.monotonic() - started < 3  # not the 30 s read timeout


def test_fetch_feed_deadline_of_a_finished_fetch_spares_the_reused_connection(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    def keep_alive(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        while head:
            if head.startswith(b"GET /slow "):
                stop.wait(0.8)  # deliberately slow: past the first fetch's deadline
            conn.sendall(response(close=False))
            head = conn.recv(65536)

    server = raw_server(keep_alive)

    first = fetch_feed(client, source(server.url("/fast")), FetchLimits(total_timeout_s=0.5))
    second = fetch_feed(client, source(server.url("/slow")), LIMITS)

    assert isinstance(first, Fetched)
    assert isinstance(second, Fetched)
    assert len(server.heads) == 1  # one connection served both


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(
    raw_server: Callable[..., RawServer], tls_cert: tuple[Path, Path]
) -> Callable[[Handler], RawServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_cert)
    return lambda handler: raw_server(handler, context)


def test_fetch_feed_reports_an_untrusted_certificate_as_tls(
    tls_server: Callable[[Handler], RawServer], client: FeedClient
) -> None:
    server = tls_server(lambda conn, head, stop: conn.sendall(response()))

    assert fetch_error(client, server.url()).kind == "tls"


def test_fetch_feed_deadline_interrupts_a_blocked_read_over_tls(
    tls_server: Callable[[Handler], RawServer], tls_cert: tuple[Path, Path]
) -> None:
    def stall(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<rss>")
        stop.wait()

    server = tls_server(stall)
    trusting = FeedClient(
        httpx.HTTPTransport(verify=ssl.create_default_context(cafile=tls_cert[0]), trust_env=False)
    )

    started = time.monotonic()
    with trusting:
        error = fetch_error(trusting, server.url(), FetchLimits(total_timeout_s=0.5))

    assert error.kind == "timeout"
    assert time.monotonic() - started < 3  # not the 30 s read timeout


# --- fetch_many -------------------------------------------------------------------------------


def test_fetch_many_never_exceeds_max_per_host_and_yields_each_feed_once(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    gauge = Gauge()
    server = raw_server(slow_echo(gauge))
    feeds = [source(server.url(f"/{i}"), id=i) for i in range(30)]
    limits = FetchLimits(max_in_flight=8, max_per_host=2, read_timeout_s=5)

    results = list(fetch_many(client, iter(feeds), limits))

    assert sorted(feed.id for feed, _ in results) == list(range(30))
    assert all(isinstance(r, Fetched) and r.body == f"/{f.id}".encode() for f, r in results)
    assert gauge.peak == 2


def test_fetch_many_never_exceeds_max_in_flight_across_hosts(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    gauge = Gauge()
    servers = [raw_server(slow_echo(gauge)) for _ in range(3)]
    feeds = [source(s.url(f"/{i}"), id=i) for i, s in enumerate(servers * 6)]
    limits = FetchLimits(max_in_flight=3, max_per_host=2, read_timeout_s=5)

    results = list(fetch_many(client, feeds, limits))

    assert sorted(feed.id for feed, _ in results) == list(range(18))
    assert gauge.peak == 3


def test_fetch_many_yields_results_as_they_complete(
    raw_server: Callable[..., RawServer], client: FeedClient
) -> None:
    def handle(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        if head.startswith(b"GET /slow "):
            stop.wait(0.3)  # deliberately slow
        conn.sendall(response())

    server = raw_server(handle)
    feeds = [source(server.url("/slow"), id=1), source(server.url("/fast"), id=2)]

    ids = [feed.id for feed, _ in fetch_many(client, feeds, LIMITS)]

    assert ids == [2, 1]


def test_fetch_many_yields_failures_alongside_successes(
    httpserver: HTTPServer, client: FeedClient
) -> None:
    httpserver.expect_request("/ok").respond_with_data(FEED)
    httpserver.expect_request("/same").respond_with_data(b"", status=304)
    httpserver.expect_request("/missing").respond_with_data(b"", status=404)
    httpserver.expect_request("/gone").respond_with_data(b"", status=410)
    urls = [
        httpserver.url_for("/ok"),
        httpserver.url_for("/same"),
        httpserver.url_for("/missing"),
        httpserver.url_for("/gone"),
        "gopher://127.0.0.1/feed",
        closed_port_url(),
    ]

    results = {
        feed.id: result
        for feed, result in fetch_many(
            client, [source(u, id=i) for i, u in enumerate(urls)], LIMITS
        )
    }

    assert sorted(results) == list(range(len(urls)))
    assert isinstance(results[0], Fetched)
    assert isinstance(results[1], NotModified)
    kinds = {i: getattr(results[i], "kind", None) for i in range(2, len(urls))}
    assert kinds == {2: "http_error", 3: "gone", 4: "bad_url", 5: "connect"}
    assert isinstance(results[3], FeedGone)


def test_fetch_many_of_nothing_yields_nothing(client: FeedClient) -> None:
    assert list(fetch_many(client, [], LIMITS)) == []


def test_fetch_many_lets_an_unexpected_error_propagate(httpserver: HTTPServer) -> None:
    closed = make_client(LIMITS)
    closed.close()  # sending on a closed client is a programming error, not a feed's problem

    with pytest.raises(RuntimeError, match="closed"):
        list(fetch_many(closed, [source(httpserver.url_for("/feed"))], LIMITS))


def test_fetch_limits_refuse_a_pool_that_could_never_start_a_request() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FetchLimits(max_per_host=0)


def test_a_connection_the_pool_closes_under_a_fetch_is_closed_when_the_fetch_ends(
    raw_server: Callable[..., RawServer],
) -> None:
    """encode/httpcore#1110: the pool can close, from another thread, a connection it has
    just handed to a request. Before the fix the fetch then waited for its read timeout (or
    failed with EBADF); now it completes, and the connection is closed after it."""
    asked, answer, hung_up = threading.Event(), threading.Event(), threading.Event()

    def handler(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        asked.set()
        answer.wait(5)
        conn.sendall(response(FEED, close=False))  # keep-alive: only the client may close
        if conn.recv(1) == b"":
            hung_up.set()

    server = raw_server(handler)
    outcome: list[object] = []
    with make_client(LIMITS) as client:
        thread = threading.Thread(
            target=lambda: outcome.append(fetch_feed(client, source(server.url()), LIMITS))
        )
        thread.start()
        assert asked.wait(5)  # the request is on the wire, the fetch waits for the answer
        [connection] = client.transport._pool.connections  # type: ignore[attr-defined]
        connection.close()  # what another thread's pool pass does
        answer.set()
        thread.join(10)
        assert isinstance(outcome[0], Fetched)
        assert outcome[0].body == FEED
        assert hung_up.wait(5)  # the close the pool asked for, once the fetch was over


def test_a_kept_alive_connection_the_server_hung_up_on_is_not_reused(
    raw_server: Callable[..., RawServer],
) -> None:
    """The server promises keep-alive, answers, then hangs up while the connection waits
    in the pool: the next fetch goes out on a new connection instead of failing."""
    hung_up = threading.Event()

    def handler(conn: socket.socket, head: bytes, stop: threading.Event) -> None:
        conn.sendall(response(FEED, close=False))
        conn.shutdown(socket.SHUT_RDWR)
        hung_up.set()

    server = raw_server(handler)
    with make_client(LIMITS) as client:
        first = fetch_feed(client, source(server.url()), LIMITS)
        assert hung_up.wait(5)
        [connection] = client.transport._pool.connections  # type: ignore[attr-defined]
        sock = connection._connection._network_stream.get_extra_info("socket")
        assert select.select([sock], [], [], 5)[0]  # the hang-up has reached this side
        second = fetch_feed(client, source(server.url()), LIMITS)

    assert isinstance(first, Fetched)
    assert isinstance(second, Fetched)
    assert second.body == FEED
    assert len(server.heads) == 2  # a second connection


class _FakeNetworkStream(httpcore.NetworkStream):
    def __init__(self, readable: bool = False) -> None:
        self.closed = 0
        self.written = 0
        self.readable = readable

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.written += 1

    def close(self) -> None:
        self.closed += 1

    def get_extra_info(self, info: str) -> object:
        return self.readable if info == "is_readable" else None


def test_a_fetch_that_starts_on_a_connection_already_closed_asks_for_another() -> None:
    inner = _FakeNetworkStream()
    stream = _DeadlineStream(inner)
    stream.close()  # by the pool, between handing it out and the request's first write
    assert inner.closed == 1
    token = _CURRENT.set(_Deadline(5.0))
    try:
        with pytest.raises(httpcore.ConnectionNotAvailable):  # httpcore retries elsewhere
            stream.write(b"GET / HTTP/1.1\r\n\r\n")
    finally:
        _CURRENT.reset(token)


def test_a_close_during_a_fetch_waits_for_its_end_and_happens_once() -> None:
    inner = _FakeNetworkStream()
    stream = _DeadlineStream(inner)
    deadline = _Deadline(5.0)
    token = _CURRENT.set(deadline)
    try:
        stream.write(b"GET / HTTP/1.1\r\n\r\n")
        stream.close()
        assert inner.closed == 0  # the fetch is still reading its answer
        stream.read(100)
    finally:
        _CURRENT.reset(token)
    deadline.finish()
    assert inner.closed == 1
    deadline.finish()  # once
    assert inner.closed == 1


@pytest.mark.parametrize("readable", [False, True])
def test_a_connection_is_checked_once_per_request_and_not_when_the_pool_sweeps(
    readable: bool,
) -> None:
    """encode/httpcore#928: the pool asks every idle connection whether it is readable each
    time a request comes or goes; the stream answers no and checks before the next request."""
    inner = _FakeNetworkStream(readable=readable)
    stream = _DeadlineStream(inner)
    assert stream.get_extra_info("is_readable") is False
    deadline = _Deadline(5.0)
    token = _CURRENT.set(deadline)
    try:
        stream.write(b"GET /a HTTP/1.1\r\n\r\n")  # a new connection: nothing to check
        stream.read(100)
        if readable:  # the server hung up meanwhile
            with pytest.raises(httpcore.ConnectionNotAvailable):  # httpcore retries elsewhere
                stream.write(b"GET /b HTTP/1.1\r\n\r\n")
            stream.close()  # what httpcore does next: closed once, not twice
        else:
            stream.write(b"GET /b HTTP/1.1\r\n\r\n")
    finally:
        _CURRENT.reset(token)
    deadline.finish()
    assert inner.written == (1 if readable else 2)
    assert inner.closed == (1 if readable else 0)
