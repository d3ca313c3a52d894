"""The services every job runs on, built once by app.make_services (no module-level
singletons); fetching and parsing are handed in, so a test can run a poll on fakes."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from listener.classify.decision import Classifier  # light: no scikit-learn
from listener.config import Settings
from listener.domain import FeedSource, Fetched, FetchOutcome, ParsedFeed
from listener.errors import FetchError
from listener.feeds.parse import parse_feed
from listener.store import Store

if TYPE_CHECKING:  # numpy: only the daemon and `listener refine` load the second stage
    from listener.classify.embedding import SecondStage


class Fetcher(Protocol):
    """Fetches feeds (feeds.fetch.HttpFetcher; tests hand in a fake)."""

    def fetch_many(
        self, sources: Iterable[FeedSource], stop: threading.Event | None = None
    ) -> Iterator[tuple[FeedSource, FetchOutcome | FetchError]]: ...

    def close(self) -> None: ...


# Parses one fetched body; runs in worker processes, so it must pickle (a module function).
Parser = Callable[[int, Fetched], ParsedFeed]


@dataclass
class Services:
    """Everything a job needs, built once by app.make_services (no module-level singletons)."""

    settings: Settings
    store: Store
    fetcher: Fetcher
    parse: Parser = parse_feed
    classifier: Classifier | None = None  # None: items are stored unclassified
    second_stage: SecondStage | None = None  # None: uncertain items stay as polls left them
    rand: Callable[[], float] = field(default=random.random)  # jitter; tests pin it
    # Set by SIGTERM/SIGINT: a poll starts no more fetches, aborts those in flight, and saves
    # what it already fetched; a backfill stops between batches.
    stop: threading.Event = field(default_factory=threading.Event)


# What the daemon schedules: every job is called the same way (app.daemon_jobs).
Job = Callable[[Services, datetime], object]
