"""I/O: bench/server.py's feed server, for the daemon benchmark: feeds change again and again.

bench/server.py prepares one "changed" version per picked feed for the poll benchmark's
single change. Here the parent asks for a new round before each poll cycle ("advance"):
a fresh sample of the feeds (a fraction of them, drawn from the seed and the round) each
moves to its next version, generated on the spot by `corpus.change_feed` (a few new items,
the newest old one edited, the oldest dropped), with a new ETag. Everything else (the HTTP
handler, ETag/304, ports as hosts, the pipe protocol for "stats" and "stop") is server.py's.
"""

from __future__ import annotations

import multiprocessing
import random
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.corpus import change_feed, make_feed, render_feed
from bench.server import (
    FeedServer,
    ServerConfig,
    ServerInfo,
    _render,
    _State,
    answer_common,
    start_servers,
)

_READY_TIMEOUT_S = 300.0
_REPLY_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Round:
    """What one "advance" changed: the polls after it must store exactly this."""

    feeds: int
    new: int
    updated: int


def serve_changing_feeds(config: ServerConfig, conn: Connection) -> None:
    """The server process: generate the first versions, serve, obey the pipe until "stop"."""
    started = time.perf_counter()
    feeds = [make_feed(config.seed, index, config.item_count) for index in range(config.feed_count)]
    versions = [1] * config.feed_count
    responses = []
    body_bytes = 0
    for feed in feeds:
        body = render_feed(feed)
        body_bytes += len(body)
        responses.append(_render(feed.index, 1, body, feed.kind, config.gzip))
    generate_s = time.perf_counter() - started

    state = _State(responses=responses, latency_s=config.latency_ms / 1000)
    servers, urls = start_servers(config, state)
    conn.send(
        ServerInfo(
            urls=urls,
            pid=multiprocessing.current_process().pid or 0,
            generate_s=generate_s,
            body_bytes=body_bytes,
            changed_feeds=0,
            expected_new=0,
            expected_updated=0,
            rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
    )
    while True:
        command = conn.recv()
        if isinstance(command, tuple) and command[0] == "advance":
            _, round_number, fraction = command
            conn.send(_advance(config, feeds, versions, state, round_number, fraction))
        elif not answer_common(command, conn, state, servers):
            return


def _advance(
    config: ServerConfig,
    feeds: list[Any],
    versions: list[int],
    state: _State,
    round_number: int,
    fraction: float,
) -> Round:
    count = min(len(feeds), round(len(feeds) * fraction))
    picked = random.Random(f"{config.seed}:round:{round_number}").sample(range(len(feeds)), count)
    new = updated = 0
    for index in picked:
        versions[index] += 1
        # change_feed draws from (seed, feed index): a per-version seed makes each version's
        # new items different from the last one's.
        changed, counts = change_feed(config.seed * 1_000_003 + versions[index], feeds[index])
        feeds[index] = changed
        new += counts.new
        updated += counts.updated
        response = _render(index, versions[index], render_feed(changed), changed.kind, config.gzip)
        state.responses[index] = response  # one list store: atomic for the handler threads
    return Round(feeds=count, new=new, updated=updated)


class ChangingFeedServer(FeedServer):
    """A FeedServer whose feeds can change any number of times (`advance`)."""

    _process_name = "bench-changing-feed-server"

    @classmethod
    def _target(cls) -> Any:
        return serve_changing_feeds

    def advance(self, round_number: int, fraction: float) -> Round:
        """Move a fresh sample of `fraction` of the feeds to their next version."""
        reply: Round = self._ask(("advance", round_number, fraction))
        return reply
