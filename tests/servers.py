"""Misbehaving HTTP servers on 127.0.0.1 for the cases pytest-httpserver cannot play:
a server that accepts and never answers, and one whose body trickles forever."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def raw_server(behaviour: str) -> Iterator[str]:
    """Yield the base URL of a server that `hang`s after accepting, or `trickle`s a body."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(0.1)
        try:
            conn.recv(65536)
            if behaviour == "trickle":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                while not stop.wait(0.05):
                    conn.sendall(b"1\r\n \r\n")
            else:
                stop.wait()
        except OSError:
            pass  # the client gave up, which is what the test wants

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    host, port = listener.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in connections:
            conn.close()
        listener.close()
