"""I/O: the benchmark's feed server, in its own process so its CPU never takes the poller's GIL.

The server process generates every feed once (first versions, and the changed versions of the
feeds picked for the "changed" cycle), keeps the rendered bytes in memory and serves them
from one ThreadingHTTPServer per port on 127.0.0.1. The poller's politeness unit is host:port,
so several ports stand for several publishers (`hosts`); feed i is served on port i % hosts.

GET /feed/<i>.xml answers 200 with an ETag and Last-Modified, or 304 when If-None-Match
carries the current ETag; gzip when asked for and enabled. The parent drives it over a pipe:
"change" switches the picked feeds to their next version (new ETag), "stats" reports request
counts and the server's CPU time, "stop" ends it.
"""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import resource
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from bench.corpus import BASE_AT, change_feed, changed_indexes, make_feed, render_feed

_READY_TIMEOUT_S = 300.0
_REPLY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    feed_count: int
    item_count: int
    seed: int
    changed_fraction: float
    latency_ms: float = 0.0
    hosts: int = 16
    gzip: bool = False


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server reports once it is ready to serve."""

    urls: tuple[str, ...]
    pid: int
    generate_s: float
    body_bytes: int  # first versions, uncompressed
    changed_feeds: int
    expected_new: int  # items the "changed" cycle must insert
    expected_updated: int  # items it must update
    rss_mb: float


@dataclass(frozen=True, slots=True)
class ServerStats:
    ok: int
    not_modified: int
    not_found: int
    connections: int
    cpu_s: float  # user + system time of the whole server process so far


@dataclass(frozen=True, slots=True)
class _Response:
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str
    content_type: str


@dataclass
class _State:
    responses: list[_Response]
    latency_s: float
    counts: dict[int, int] = field(default_factory=lambda: {200: 0, 304: 0, 404: 0, 0: 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.counts[status] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    state: _State


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.state.count(0)  # one per TCP connection accepted

    def do_GET(self) -> None:
        state = self.server.state
        if state.latency_s:
            time.sleep(state.latency_s)
        response = self._response(state)
        if response is None:
            state.count(404)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if_none_match = self.headers.get("If-None-Match", "")
        if response.etag in (tag.strip() for tag in if_none_match.split(",")):
            state.count(304)
            self.send_response(304)
            self.send_header("ETag", response.etag)
            self.send_header("Last-Modified", response.last_modified)
            self.end_headers()
            return
        state.count(200)
        body = response.body
        accepts_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        self.send_response(200)
        self.send_header("Content-Type", response.content_type)
        self.send_header("ETag", response.etag)
        self.send_header("Last-Modified", response.last_modified)
        if response.gzipped is not None and accepts_gzip:
            body = response.gzipped
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _response(self, state: _State) -> _Response | None:
        name = self.path.partition("?")[0]
        if not (name.startswith("/feed/") and name.endswith(".xml")):
            return None
        number = name[len("/feed/") : -len(".xml")]
        if not number.isdigit() or int(number) >= len(state.responses):
            return None
        return state.responses[int(number)]

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: one line per request would cost more than the request."""


def _render(index: int, version: int, body: bytes, kind: str, use_gzip: bool) -> _Response:
    digest = hashlib.sha256(body).hexdigest()[:16]
    # A fixed date per version: Last-Modified must not change while the body does not.
    modified_at = format_datetime(BASE_AT + timedelta(hours=version), usegmt=True)
    return _Response(
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0) if use_gzip else None,
        etag=f'"{index}-v{version}-{digest}"',
        last_modified=modified_at,
        content_type=f"application/{'atom' if kind == 'atom' else 'rss'}+xml; charset=utf-8",
    )


def start_servers(config: ServerConfig, state: _State) -> tuple[list[_Server], tuple[str, ...]]:
    """One HTTP server thread per politeness host on 127.0.0.1, all answering from `state`;
    the feeds' URLs spread over them."""
    servers = []
    for _ in range(config.hosts):
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = state
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    ports = [server.server_address[1] for server in servers]
    urls = tuple(
        f"http://127.0.0.1:{ports[index % len(ports)]}/feed/{index}.xml"
        for index in range(config.feed_count)
    )
    return servers, urls


def serve_feeds(config: ServerConfig, conn: Connection) -> None:
    """The server process's main function: generate, serve, obey the pipe until "stop"."""
    started = time.perf_counter()
    picked = changed_indexes(config.seed, config.feed_count, config.changed_fraction)
    picked_set = set(picked)
    first: list[_Response] = []
    second: dict[int, _Response] = {}
    body_bytes = expected_new = expected_updated = 0
    for index in range(config.feed_count):
        feed = make_feed(config.seed, index, config.item_count)
        body = render_feed(feed)
        body_bytes += len(body)
        first.append(_render(index, 1, body, feed.kind, config.gzip))
        if index in picked_set:
            changed, counts = change_feed(config.seed, feed)
            expected_new += counts.new
            expected_updated += counts.updated
            second[index] = _render(index, 2, render_feed(changed), feed.kind, config.gzip)
    generate_s = time.perf_counter() - started

    state = _State(responses=list(first), latency_s=config.latency_ms / 1000)
    servers, urls = start_servers(config, state)
    conn.send(
        ServerInfo(
            urls=urls,
            pid=multiprocessing.current_process().pid or 0,
            generate_s=generate_s,
            body_bytes=body_bytes,
            changed_feeds=len(picked),
            expected_new=expected_new,
            expected_updated=expected_updated,
            rss_mb=_self_rss_mb(),
        )
    )
    while True:
        command = conn.recv()
        if command == "change":
            for index, response in second.items():
                state.responses[index] = response
            conn.send("changed")
        elif not answer_common(command, conn, state, servers):
            return


def _self_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def answer_common(command: Any, conn: Connection, state: _State, servers: list[Any]) -> bool:
    """The commands every feed server process answers: "stats", and "stop" (False: exit)."""
    if command == "stats":
        with state.lock:
            served = dict(state.counts)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        conn.send(
            ServerStats(
                ok=served[200],
                not_modified=served[304],
                not_found=served[404],
                connections=served[0],
                cpu_s=usage.ru_utime + usage.ru_stime,
            )
        )
        return True
    for server in servers:  # "stop"
        server.shutdown()
        server.server_close()
    conn.send("stopped")
    return False


class FeedServer:
    """The parent's handle: start the server process, wait until it serves, drive it.

    Subclasses serve differently by overriding `_target` (the module-level function the
    spawned process runs) and add their own commands on top of `_ask`.
    """

    _process_name = "bench-feed-server"

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # spawn: a fresh interpreter, sharing no threads or locks with the poller.
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=type(self)._target(),
            args=(config, child_conn),
            name=self._process_name,
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        if not self._conn.poll(_READY_TIMEOUT_S):
            self.close()
            raise RuntimeError("the feed server did not start in time")
        self.info: ServerInfo = self._conn.recv()

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def change(self) -> None:
        """Switch the picked feeds to their next version."""
        self._ask("change")

    def stats(self) -> ServerStats:
        reply: ServerStats = self._ask("stats")
        return reply

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._ask("stop")
            except (OSError, EOFError, RuntimeError):
                self._process.terminate()
        self._process.join(timeout=10)
        self._conn.close()

    @classmethod
    def _target(cls) -> Any:
        return serve_feeds

    def _ask(self, command: Any) -> Any:
        self._conn.send(command)
        if not self._conn.poll(_REPLY_TIMEOUT_S):
            raise RuntimeError(f"the feed server did not answer {command!r}")
        return self._conn.recv()

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
