"""Misbehaving HTTP servers on 127.0.0.1 for the cases pytest-httpserver cannot play:
a server that accepts and never answers, and one whose body trickles forever."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.hostile import hostile_server, silent, trickle_body


@contextmanager
def raw_server(behaviour: str) -> Iterator[str]:
    """Yield the base URL of a server that `hang`s after accepting, or `trickle`s a body."""
    route = trickle_body(0.05) if behaviour == "trickle" else silent()
    with hostile_server({}, default=route) as server:
        yield server.base_url
