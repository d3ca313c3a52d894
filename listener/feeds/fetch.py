"""I/O: HTTP. Fetch feeds politely and within hard limits; decide nothing about the results.

Every network or HTTP failure becomes a FetchError whose `kind` is one of: bad_url,
bad_redirect, redirect_loop, too_many_redirects, timeout, dns, tls, connect, network,
protocol, decode, too_large, throttled, http_error, and gone (FeedGone, HTTP 410).
Any other exception is a bug and propagates.

Time: `total_timeout_s` covers the whole fetch, redirects included, whatever the server does.
httpx talks to the network through `_DeadlineBackend`, which sees every connect, read and
write of every connection, new or reused from the pool, and clips its timeout to what is left
of the fetch's deadline; so a server that trickles its headers or body one byte at a time on a
kept-alive connection is cut off at the deadline like any other. `abort` (a poll asked to
stop) shuts down the socket being read, which wakes a blocked read at once. DNS is the one
phase outside it (getaddrinfo blocks; the resolver bounds it). A body ended by the deadline or
an abort is a timeout, never parsed: without a length, its end would look like the end of the
stream.

Addresses: with `refuse_private_addresses`, a connection (redirects included) to a loopback,
private, link-local, reserved or multicast address is refused after DNS resolution, and the
socket connects to the address that was checked (no second lookup to rebind).

Memory: a body is decoded here, in pieces of about 64 KiB (brotli may overshoot by half), and
counted as it grows, so a compression bomb is refused at max_body_bytes (plus a piece) instead
of being inflated whole.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import itertools
import queue
import socket
import ssl
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]  # no stubs; its Any stays in _unbrotli
import httpcore
import httpx

from listener.domain import FeedSource, Fetched, FetchLimits, FetchOutcome, NotModified
from listener.errors import FeedGone, FetchError

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_STATUSES = frozenset({301, 308})
_THROTTLED_STATUSES = frozenset({429, 503})
_PIECE_BYTES = 64 * 1024
_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Exactly the codings _DECODERS inflate in bounded pieces; httpx would also offer zstd
# when the zstandard package happens to be installed.
_ACCEPT_ENCODING = "gzip, deflate, br"
# They describe the bytes on the wire; Fetched.body is already decoded and de-chunked.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_DECODE_ERRORS = (zlib.error, brotli.error)


def make_client(limits: FetchLimits) -> FeedClient:
    """The connections fetch_many shares; fetch_feed sets headers and timeouts per request."""
    return FeedClient(_DeadlineTransport(limits))


class FeedClient:
    """httpx's transport (its connection pool, TLS, our deadline backend) without
    httpx.Client's per-request machinery: cookie jar, auth and redirect flows, event hooks,
    header and URL merging. fetch_feed needs none of them (it follows redirects itself, to
    see the chain, with the chain's cookies, and sends its own headers), and they were a
    third of the CPU of a conditional GET (0.40 -> 0.27 ms, measured on loopback): a warm
    poll is 1,000 of them.
    Thread-safe as the transport is; no proxy or CA comes from the environment."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport
        self.closed = False

    def send(self, request: httpx.Request) -> httpx.Response:
        """The response, its body not read yet (stream it, then close it)."""
        if self.closed:  # a programming error, not a feed's problem: never a FetchError
            raise RuntimeError("cannot send a request: the client is closed")
        response = self.transport.handle_request(request)
        response.request = request
        return response

    def close(self) -> None:
        self.closed = True
        self.transport.close()

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpFetcher:
    """The poll job's fetcher: fetch_many over one client, opened at the first fetch and
    kept (its connections too) until `close`."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self._client: FeedClient | None = None

    def fetch_many(
        self, sources: Iterable[FeedSource], stop: threading.Event | None = None
    ) -> Iterator[tuple[FeedSource, FetchOutcome | FetchError]]:
        if self._client is None:
            self._client = make_client(self.limits)
        return fetch_many(self._client, sources, self.limits, stop)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def fetch_feed(client: FeedClient, source: FeedSource, limits: FetchLimits) -> FetchOutcome:
    """GET a feed conditionally, following redirects; raise FetchError or FeedGone on failure."""
    return _fetch_within(client, source, limits, _Deadline(limits.total_timeout_s))


def _fetch_within(
    client: FeedClient, source: FeedSource, limits: FetchLimits, deadline: _Deadline
) -> FetchOutcome:
    token = _CURRENT.set(deadline)  # the backend bounds this thread's socket calls by it
    try:
        return _follow(client, source, limits, deadline)
    except httpx.HTTPError as exc:
        raise _error_for(source.url, exc, deadline) from exc
    finally:
        _CURRENT.reset(token)
        deadline.finish()


def fetch_many(
    client: FeedClient,
    sources: Iterable[FeedSource],
    limits: FetchLimits,
    stop: threading.Event | None = None,
) -> Iterator[tuple[FeedSource, FetchOutcome | FetchError]]:
    """Fetch on a bounded pool, at most max_per_host at once per host; yield as they complete.

    This thread schedules: a feed is submitted only when its host has a free slot, so no
    worker ever sits waiting for a busy host while other hosts' feeds queue behind it, and at
    most max_in_flight bodies are held at once. Feeds for a busy host wait here in order.
    When `stop` is set, no feed is started any more and the requests in flight are aborted
    (their sockets shut down); what completed before is yielded, the aborted and the unstarted
    are not, so nothing is recorded against a feed for a fetch we cut short ourselves.
    (A FeedClient is shared between threads, as httpx's transport and pool allow.)
    """
    todo = iter(sources)
    busy: Counter[str] = Counter()  # slots taken per host, including handed-over ones
    waiting: dict[str, deque[FeedSource]] = {}  # feeds whose host was full, in order
    ready: deque[tuple[FeedSource, str]] = deque()  # their turn came; the slot is theirs
    running: dict[Future[FetchOutcome | FetchError], tuple[FeedSource, str, _Deadline]] = {}

    def next_feed() -> tuple[FeedSource, str] | None:
        if ready:
            return ready.popleft()
        for source in todo:
            host = _host_key(source.url)
            if busy[host] < limits.max_per_host:
                busy[host] += 1
                return source, host
            waiting.setdefault(host, deque()).append(source)
        return None

    def release(host: str) -> None:
        queue = waiting.get(host)
        if queue:  # hand the slot straight to the next feed for this host
            ready.append((queue.popleft(), host))
            if not queue:
                del waiting[host]
        else:
            busy[host] -= 1
            if not busy[host]:
                del busy[host]

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    # Each fetch puts its future here when it completes: concurrent.futures.wait would hook
    # and unhook a waiter on every running future for each completion (a fifth of a warm
    # poll's 1,000 fetches of CPU, measured).
    completed: queue.SimpleQueue[Future[FetchOutcome | FetchError]] = queue.SimpleQueue()
    with ThreadPoolExecutor(limits.max_in_flight, thread_name_prefix="fetch") as pool:
        while True:
            while (
                not stopping()
                and len(running) < limits.max_in_flight
                and (job := next_feed()) is not None
            ):
                deadline = _Deadline(limits.total_timeout_s)
                future = pool.submit(_fetch_or_error, client, job[0], limits, deadline)
                running[future] = (*job, deadline)
                future.add_done_callback(completed.put)
            if not running:
                return
            # A stop request is seen within a fifth of a second even while every fetch waits.
            done = []
            with contextlib.suppress(queue.Empty):
                done.append(completed.get(timeout=0.2))
                while True:
                    done.append(completed.get_nowait())
            if stopping():
                for _, _, deadline in running.values():
                    deadline.abort()
            for future in done:
                source, host, deadline = running.pop(future)
                release(host)
                result = future.result()  # re-raises a bug from the worker
                # A fetch that completed is kept even when the stop came in the same instant;
                # only the ones the stop cut short are dropped.
                if not (deadline.aborted and isinstance(result, FetchError)):
                    yield source, result


def _fetch_or_error(
    client: FeedClient, source: FeedSource, limits: FetchLimits, deadline: _Deadline
) -> FetchOutcome | FetchError:
    try:
        return _fetch_within(client, source, limits, deadline)
    except FetchError as exc:
        return exc


def _follow(
    client: FeedClient, source: FeedSource, limits: FetchLimits, deadline: _Deadline
) -> FetchOutcome:
    url = _feed_url(source.url)
    seen = {url}
    moved_for_good = True
    # Cookies live for one fetch's redirect chain (a server that sets one on a redirect may
    # check it at the next hop); no feed's cookie reaches another fetch.
    cookies = httpx.Cookies()
    for hop in range(limits.max_redirects + 1):
        if deadline.remaining_s() <= 0:
            raise FetchError(source.url, deadline.message(), kind="timeout")
        request = httpx.Request(
            "GET",
            url,
            headers=_request_headers(source, limits),
            extensions={"timeout": _timeouts(limits, deadline.remaining_s()).as_dict()},
        )
        if cookies:
            cookies.set_cookie_header(request)
        response = client.send(request)
        with contextlib.closing(response):
            final_url = source.url if hop == 0 else str(url)
            if response.status_code not in _REDIRECT_STATUSES:
                permanent_url = final_url if hop and moved_for_good else None
                return _outcome(response, source.url, final_url, permanent_url, limits, deadline)
            target = _redirect_target(source.url, url, response)
            if "set-cookie" in response.headers:
                cookies.extract_cookies(response)
            _drain(response)
        if target in seen:
            message = f"redirect loop back to {target}"
            status = response.status_code
            raise FetchError(source.url, message, status=status, kind="redirect_loop")
        seen.add(target)
        moved_for_good = moved_for_good and response.status_code in _PERMANENT_STATUSES
        url = target
    message = f"more than {limits.max_redirects} redirects"
    raise FetchError(source.url, message, status=response.status_code, kind="too_many_redirects")


_DRAIN_MAX_BYTES = 64 * 1024


def _outcome(
    response: httpx.Response,
    feed_url: str,
    final_url: str,
    permanent_url: str | None,
    limits: FetchLimits,
    deadline: _Deadline,
) -> FetchOutcome:
    status = response.status_code
    headers = {k: v for k, v in response.headers.items() if k not in _WIRE_HEADERS}
    if status == 304:
        _drain(response)
        return NotModified(
            url=final_url,
            headers=headers,
            permanent_url=permanent_url,
            duration_ms=deadline.elapsed_ms(),
        )
    where = "" if final_url == feed_url else f" (at {final_url})"
    if status == 410:
        raise FeedGone(feed_url)
    if status in _THROTTLED_STATUSES:
        retry_after = response.headers.get("retry-after")
        message = f"HTTP {status} {_reason(response)}{where}"
        raise FetchError(
            feed_url, message, status=status, retry_after=retry_after, kind="throttled"
        )
    if not 200 <= status < 300:
        message = f"HTTP {status} {_reason(response)}{where}"
        raise FetchError(feed_url, message, status=status, kind="http_error")
    body = _read_body(response, feed_url, limits, deadline)
    return Fetched(
        url=final_url,
        status=status,
        body=body,
        headers=headers,
        permanent_url=permanent_url,
        duration_ms=deadline.elapsed_ms(),
    )


def _drain(response: httpx.Response) -> None:
    """Read a body we do not want (a 304's, a redirect's), if it is small, so that httpcore
    returns the connection to the pool instead of dropping it: a warm poll is mostly 304s,
    and without this each one costs a new TCP (or TLS) connection."""
    length = response.headers.get("content-length")
    if length is None or (length.isdigit() and int(length) <= _DRAIN_MAX_BYTES):
        read = 0
        with contextlib.suppress(httpx.HTTPError):
            for chunk in response.iter_raw():
                read += len(chunk)
                if read > _DRAIN_MAX_BYTES:
                    break  # not worth it: closing drops the connection instead


def _reason(response: httpx.Response) -> str:
    # The standard phrase: servers send any case, or nothing, or noise.
    return httpx.codes.get_reason_phrase(response.status_code) or response.reason_phrase


def _read_body(
    response: httpx.Response, feed_url: str, limits: FetchLimits, deadline: _Deadline
) -> bytes:
    cap = limits.max_body_bytes
    too_large = FetchError(
        feed_url, f"body larger than {cap} bytes", status=response.status_code, kind="too_large"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    encoding = response.headers.get("content-encoding", "").lower()
    codings = [c.strip() for c in encoding.split(",") if c.strip() not in ("", "identity")]
    if unknown := [c for c in codings if c not in _DECODERS]:
        raise FetchError(feed_url, f"unsupported Content-Encoding {unknown[0]!r}", kind="decode")

    def raw() -> Iterator[bytes]:
        received = 0
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > cap:  # also bounds data that decodes to nothing
                raise too_large
            if deadline.remaining_s() <= 0:  # for transports without our network backend
                raise FetchError(feed_url, deadline.message(), kind="timeout")
            yield chunk

    pieces: Iterator[bytes] = raw()
    for coding in reversed(codings):
        pieces = _DECODERS[coding](pieces)
    body = bytearray()
    try:
        for piece in pieces:
            body += piece
            if len(body) > cap:
                raise too_large
    except _DECODE_ERRORS as exc:
        message = f"cannot decode {', '.join(codings)} body: {exc}"
        raise FetchError(feed_url, message, kind="decode") from exc
    if deadline.fired:  # the end we saw was our own shutdown, not the server's
        raise FetchError(feed_url, deadline.message(), kind="timeout")
    return bytes(body)


def _inflate(chunks: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    """Decompress zlib/gzip/raw deflate without ever producing more than one piece at once."""
    inflater = zlib.decompressobj(wbits)
    received = False
    for chunk in chunks:
        received = received or bool(chunk)
        data = chunk
        while not inflater.eof:  # bytes after the end of the stream are ignored
            piece = inflater.decompress(data, _PIECE_BYTES)
            if piece:
                yield piece
            data = inflater.unconsumed_tail
            if not data and len(piece) < _PIECE_BYTES:
                break
    if received and not inflater.eof:
        raise zlib.error("compressed stream is truncated")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    return _inflate(chunks, zlib.MAX_WBITS | 16)


def _undeflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """HTTP "deflate" should be zlib-wrapped but some servers send raw deflate; sniff it."""
    rest = iter(chunks)
    head = b""
    for chunk in rest:
        head += chunk
        if len(head) >= 2:
            break
    zlib_wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and int.from_bytes(head[:2]) % 31 == 0
    yield from _inflate(
        itertools.chain([head], rest), zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
    )


def _unbrotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    # output_buffer_limit needs brotli >= 1.2 (the fix for CVE-2025-6176, a brotli bomb).
    decompressor = brotli.Decompressor()
    received = False
    for chunk in chunks:
        received = received or bool(chunk)
        piece: bytes = decompressor.process(chunk, output_buffer_limit=_PIECE_BYTES)
        while piece:  # the rest of this chunk's output waits in the decoder: drain it
            yield piece
            piece = decompressor.process(b"", output_buffer_limit=_PIECE_BYTES)
    if received and not decompressor.is_finished():
        raise brotli.error("compressed stream is truncated")


_DECODERS: dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _undeflate,
    "br": _unbrotli,
}


class _Deadline:
    """The time left for one fetch, and the socket it is using (for `abort`)."""

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self.started_at = time.monotonic()
        self.fired = False  # ran out, or aborted: whatever was read last is not a whole body
        self.aborted = False
        self.finished = False  # the fetch has ended: its connections may be closed
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._streams: list[_DeadlineStream] = []

    def remaining_s(self) -> float:
        if self.aborted:
            return 0.0
        return self.started_at + self.total_s - time.monotonic()

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started_at) * 1000)

    def message(self) -> str:
        if self.aborted:
            return "aborted: the poll is stopping"
        return f"no complete response within the {self.total_s:g}s total deadline"

    def clip(self, timeout: float | None) -> float:
        """A socket call's timeout, cut to what is left; ReadTimeout once nothing is."""
        remaining = self.remaining_s()
        if remaining <= 0:
            self.fired = True
            raise httpcore.ReadTimeout(self.message())
        return remaining if timeout is None else min(timeout, remaining)

    def watch(self, sock: object) -> None:
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self.aborted and self._socket is not None:
                _shut_down(self._socket)

    def using(self, stream: _DeadlineStream) -> None:
        with self._lock:
            self._streams.append(stream)

    def finish(self) -> None:
        """The fetch has ended: close what the pool asked to close while it ran."""
        with self._lock:
            self.finished = True
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.release()

    def abort(self) -> None:
        """Stop now: a blocked read wakes (shutdown), every later socket call fails."""
        with self._lock:
            self.aborted = self.fired = True
            if self._socket is not None:
                _shut_down(self._socket)


# The deadline of the fetch running on this thread (fetch_feed sets it for its duration).
_CURRENT: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "listener_fetch_deadline", default=None
)


class _RefusedAddress(httpcore.ConnectError):
    """A destination the settings forbid (refuse_private_addresses)."""


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write is bounded by the current fetch's deadline.

    It also keeps httpcore's pool from closing it under a fetch (encode/httpcore#1110, open in
    1.0.9): the pool can take a connection it has just handed to a waiting request for an idle
    one and close it from another thread, which left that fetch waiting for its read timeout
    (30 s) or failed it with EBADF, once in a few polls of many hosts. A close while a fetch
    uses the connection now waits for that fetch to end, and a fetch that starts on a
    connection already closed asks httpcore for another one (ConnectionNotAvailable).

    It checks that a kept-alive connection is still open just before a request goes out on
    it, instead of when httpcore's pool asks: the pool polls every idle socket each time a
    request arrives or ends (encode/httpcore#928, open in 1.0.9), some 60 poll() calls per
    fetch of a warm poll, each one handing the GIL to another fetch thread.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._user: _Deadline | None = None  # the fetch using it last
        self._closed = False
        self._close_when_done = False
        self._answered = False  # a response was read since the last request went out

    def _clip(self, timeout: float | None) -> float | None:
        deadline = _CURRENT.get()
        if deadline is None:
            return timeout
        with self._lock:
            if self._closed:
                raise httpcore.ConnectionNotAvailable()
            if self._user is not deadline:
                self._user = deadline
                deadline.using(self)
        deadline.watch(self._inner.get_extra_info("socket"))
        return deadline.clip(timeout)

    def release(self) -> None:
        """The fetch that used it ended: a close asked for meanwhile happens now."""
        with self._lock:
            if not self._close_when_done:
                return
            self._close_when_done = False
            self._closed = True
        self._inner.close()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, self._clip(timeout))
        self._answered = True
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout = self._clip(timeout)
        if self._answered:  # a new request on a kept-alive connection
            self._answered = False
            # Readable while idle: the server hung up (or sent what nobody asked for).
            if self._inner.get_extra_info("is_readable"):
                with self._lock:
                    self._closed = True
                self._inner.close()
                raise httpcore.ConnectionNotAvailable()  # httpcore retries elsewhere
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._user is not None and not self._user.finished:
                self._close_when_done = True
                return
            self._closed = True
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The TLS stream wraps a new socket object: watch that one from now on.
        inner = self._inner.start_tls(ssl_context, server_hostname, self._clip(timeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # only the pool's sweep asks; `write` checks (see above)
            return False
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, with connects bounded by the deadline and checked addresses."""

    def __init__(self, refuse_private: bool) -> None:
        self._inner = httpcore.SyncBackend()
        self._refuse_private = refuse_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = _CURRENT.get()
        if deadline is not None:
            timeout = deadline.clip(timeout)
        if self._refuse_private:
            host = _public_address(host, port)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        if deadline is not None:
            deadline.watch(stream.get_extra_info("socket"))
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("listener fetches over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _public_address(host: str, port: int) -> str:
    """The first address `host` resolves to, if every one of them is public; else refuse."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"DNS lookup failed: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise _RefusedAddress(
                f"{host} resolves to {address}, a non-public address "
                "(poll.refuse_private_addresses is on)"
            )
    return addresses[0]


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport over `_DeadlineBackend` (httpx has no option to pass a backend,
    so the connection pool it builds is replaced by the same pool with our backend)."""

    def __init__(self, limits: FetchLimits) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            # fetch_many bounds the requests in flight. A pool capped at that number closed
            # an idle connection to open each new one once feeds spread over more hosts
            # (337 connections for 1,000 304s on 16 hosts): it keeps twice that many now.
            max_connections=None,
            max_keepalive_connections=2 * limits.max_in_flight,
            network_backend=_DeadlineBackend(limits.refuse_private_addresses),
        )


def _shut_down(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() (close() does not). Called as the plain
    # socket method: SSLSocket's override drops its SSL object under the reading thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _feed_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError(url, f"invalid URL: {exc}", kind="bad_url") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(url, "not an absolute http(s) URL", kind="bad_url")
    return parsed.copy_with(fragment=None)


def _redirect_target(feed_url: str, current: httpx.URL, response: httpx.Response) -> httpx.URL:
    status = response.status_code
    location = response.headers.get("location")
    if not location:
        message = f"HTTP {status} redirect without a Location header"
        raise FetchError(feed_url, message, status=status, kind="bad_redirect")
    try:
        target = current.join(location)
    except httpx.InvalidURL as exc:
        message = f"HTTP {status} redirect to an invalid URL {location!r}"
        raise FetchError(feed_url, message, status=status, kind="bad_redirect") from exc
    if target.scheme not in ("http", "https") or not target.host:
        message = f"HTTP {status} redirect to a non-HTTP URL {location!r} refused"
        raise FetchError(feed_url, message, status=status, kind="bad_redirect")
    return target.copy_with(fragment=None)


def _request_headers(source: FeedSource, limits: FetchLimits) -> dict[bytes, bytes]:
    # Validators go back as UTF-8: that is how httpx decoded them if they were not ASCII.
    headers = {
        b"User-Agent": limits.user_agent.encode(),
        b"Accept": _ACCEPT.encode(),
        b"Accept-Encoding": _ACCEPT_ENCODING.encode(),
    }
    if source.etag:
        headers[b"If-None-Match"] = source.etag.encode()
    if source.last_modified:
        headers[b"If-Modified-Since"] = source.last_modified.encode()
    return headers


def _timeouts(limits: FetchLimits, remaining_s: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=min(limits.connect_timeout_s, remaining_s),
        read=min(limits.read_timeout_s, remaining_s),
        write=min(limits.read_timeout_s, remaining_s),
        pool=min(limits.connect_timeout_s, remaining_s),
    )


def _error_for(feed_url: str, exc: httpx.HTTPError, deadline: _Deadline) -> FetchError:
    detail = str(exc) or type(exc).__name__
    if deadline.fired or deadline.remaining_s() <= 0.01:  # a read cut to the deadline
        return FetchError(feed_url, deadline.message(), kind="timeout")
    if isinstance(exc, httpx.TimeoutException):
        phase = type(exc).__name__.removesuffix("Timeout").lower()
        message = f"{phase} timed out after {deadline.elapsed_ms() / 1000:.1f}s"
        return FetchError(feed_url, message, kind="timeout")
    if isinstance(exc, httpx.ConnectError):
        if _caused_by(exc, _RefusedAddress):
            return FetchError(feed_url, f"refused: {detail}", kind="refused")
        if _caused_by(exc, socket.gaierror):
            return FetchError(feed_url, f"DNS lookup failed: {detail}", kind="dns")
        if _caused_by(exc, ssl.SSLError):
            return FetchError(feed_url, f"TLS handshake failed: {detail}", kind="tls")
        return FetchError(feed_url, f"cannot connect: {detail}", kind="connect")
    if isinstance(exc, httpx.ProtocolError):
        return FetchError(feed_url, f"HTTP protocol error: {detail}", kind="protocol")
    return FetchError(feed_url, f"network error: {detail}", kind="network")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _host_key(url: str) -> str:
    """The unit of politeness, host:port; an unparseable URL is its own key (and fails fast)."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return url
    return f"{parts.hostname or ''}:{port}"
