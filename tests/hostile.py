"""A hostile HTTP/1.1 server on 127.0.0.1 for fault-injection tests.

pytest-httpserver answers well-formed requests promptly; the faults that stall a poll need a
server that misbehaves at the byte level on a *kept-alive* connection: headers sent one byte at
a time, a body without a length cut off by our own deadline, a connection held open forever.
Each route is a function that writes the whole response to the socket; the server counts
requests per path and which connection served them, so a test can prove a connection was
reused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Route = Callable[[socket.socket, threading.Event], None]


@dataclass
class Hostile:
    base_url: str
    routes: dict[str, Route]
    requests: Counter[str] = field(default_factory=Counter)
    # (path, serial number of the connection that carried it, its request number on it)
    served: list[tuple[str, int, int]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def reused(self, path: str) -> bool:
        """Was `path` requested on a connection that had already carried a request?"""
        return any(p == path and n > 1 for p, _, n in self.served)


def ok(body: bytes, content_type: str = "application/rss+xml", **headers: str) -> Route:
    """A prompt 200 with a Content-Length, keeping the connection alive."""
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}\r\n"
    ).encode()

    def route(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head + body)

    return route


def trickle_headers(interval_s: float, body: bytes = b"<rss/>") -> Route:
    """The status line and headers one byte every `interval_s`: a read never times out."""
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
        + "".join(f"X-Padding-{n}: {'x' * 40}\r\n" for n in range(20))
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def route(conn: socket.socket, stop: threading.Event) -> None:
        for byte in head:
            if stop.wait(interval_s):
                return
            conn.sendall(bytes([byte]))
        conn.sendall(body)

    return route


def unterminated_body(first: bytes, interval_s: float) -> Route:
    """A 200 without Content-Length or chunking (the body ends when the connection closes):
    `first` at once, then a space every `interval_s`, for as long as the client listens."""

    def route(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n"
            + first
        )
        while not stop.wait(interval_s):
            conn.sendall(b" ")
        raise ConnectionAbortedError  # never reuse this connection

    return route


def trickle_body(interval_s: float) -> Route:
    """A chunked 200 whose body is one space every `interval_s`, forever."""

    def route(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        while not stop.wait(interval_s):
            conn.sendall(b"1\r\n \r\n")

    return route


def silent() -> Route:
    """Accept the request and never answer."""

    def route(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait()

    return route


def _read_request(conn: socket.socket, buffer: bytearray) -> str | None:
    """The path of the next request on the connection (GET only, no body), or None at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")


@contextmanager
def hostile_server(routes: dict[str, Route], default: Route | None = None) -> Iterator[Hostile]:
    """Serve `routes` (path → Route) on 127.0.0.1 with keep-alive; `default` (or a 404) for
    any other path."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    host, port = listener.getsockname()
    server = Hostile(f"http://{host}:{port}", routes)
    stop = threading.Event()
    lock = threading.Lock()
    connections: list[socket.socket] = []
    serial = iter(range(1, 1_000_000))

    def handle(conn: socket.socket, number: int) -> None:
        buffer = bytearray()
        try:
            for count in range(1, 1_000_000):
                path = _read_request(conn, buffer)
                if path is None:
                    return
                with lock:
                    server.requests[path] += 1
                    server.served.append((path, number, count))
                route = routes.get(path, default)
                if route is None:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    route(conn, stop)
        except OSError:
            pass  # the client hung up or gave up: what these tests provoke
        finally:
            conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(conn)
            threading.Thread(target=handle, args=(conn, next(serial)), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        listener.close()
