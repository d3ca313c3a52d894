"""Wiring of the poll job; reads like the data-flow diagram in README.md.

poll: poll_matcher (watches caught up) ─► fetcher.fetch_many ─bytes─► parse (worker
      processes) ─ParsedFeed─► store.known_hashes ─► decide ─FeedUpdate─► (a batch of feeds)
      classify_items (all their new and changed items at once) + match_poll_items ─►
      store.apply_all (one transaction per batch: each feed's items, predictions, mentions,
      feed state and polls row together)
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from listener.domain import (
    FeedSource,
    FeedUpdate,
    Fetched,
    FetchOutcome,
    Item,
    Known,
    Parsed,
    ParsedFeed,
    ParseFailure,
    PollResult,
    Predictions,
)
from listener.errors import FetchError, ParseError
from listener.feeds.decide import PollOutcome, decide
from listener.jobs.classify import predict_items
from listener.jobs.services import Services
from listener.jobs.watches import match_poll_items, poll_matcher, sync_config_watches
from listener.store import Store
from listener.watches.matcher import WatchMatcher

log = structlog.get_logger(__name__)

# A poll writes and classifies its feeds in batches (issue 14): one transaction per feed made
# a warm poll of 1,000 unchanged feeds 1,000 commits, and the model is several times faster
# per item on hundreds of texts than on one feed's 30. A batch is written when it holds this
# many feeds or new/changed items; each feed's items stay atomic with its state (the batch
# is one transaction), and a crash loses only unwritten feeds, which keep their validators
# and are fetched again.
BATCH_FEEDS = 250
BATCH_ITEMS = 1000


def sync_config_feeds(services: Services, now: datetime) -> int:
    """Add the [[feeds]] of the config file to the database (never removes any). New count."""
    added = 0
    for feed in services.settings.feeds:
        added += services.store.add_feed(
            feed.url,
            now=now,
            tags=feed.tags,
            interval_minutes=feed.interval_minutes,
            title=feed.title,
        )
    return added


def sync_config(services: Services, now: datetime) -> None:
    """The config's [[feeds]] and [[watches]] into the store (before each poll)."""
    sync_config_feeds(services, now)
    sync_config_watches(services.store, services.settings, now)


def poll_feeds(services: Services, now: datetime, *, all_feeds: bool = False) -> list[PollResult]:
    """Poll the feeds that are due at `now` (every feed with all_feeds); one result per feed."""
    sources = services.store.feed_sources(None if all_feeds else now)
    results: list[PollResult] = []
    if not sources:
        return results
    writer = _BatchWriter(services, poll_matcher(services.store), now, results)
    workers = services.settings.poll.parse_workers or os.cpu_count() or 1
    max_pending = 2 * workers + 2  # bounds the bodies held in memory while parsing
    with _parse_executor(workers) as executor:
        pending: dict[Future[ParsedFeed], tuple[FeedSource, Fetched, str]] = {}

        def collect(block_until: int) -> None:
            while len(pending) > block_until:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    source, fetched, body_hash = pending.pop(future)
                    _add_parsed(writer, source, fetched, body_hash, future)

        for source, outcome in services.fetcher.fetch_many(sources):
            if isinstance(outcome, Fetched):
                body_hash = hashlib.sha256(outcome.body).hexdigest()
                # The same bytes as last time (a server without validators): nothing to parse.
                if body_hash != source.body_hash:
                    future = executor.submit(services.parse, source.id, outcome)
                    pending[future] = (source, outcome, body_hash)
                    collect(max_pending)
                    continue
            writer.add(source, outcome, _known(services.store, source, (), _permanent_url(outcome)))
        collect(0)
    writer.flush()
    return results


@contextmanager
def _parse_executor(workers: int) -> Iterator[Executor]:
    """Worker processes parse in parallel (feedparser is CPU-bound and holds the GIL).

    forkserver: forking the poller itself would copy its HTTP threads' locks mid-use.
    """
    if workers <= 1:
        yield _InlineExecutor()
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["listener.feeds.parse"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        yield executor


class _InlineExecutor(Executor):
    """Runs the call at submit time, on this thread: one parse worker, no process."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except ParseError as exc:
            future.set_exception(exc)
        return future


def _add_parsed(
    writer: _BatchWriter,
    source: FeedSource,
    fetched: Fetched,
    body_hash: str,
    future: Future[ParsedFeed],
) -> None:
    try:
        parsed = future.result()
    except ParseError as exc:
        writer.add(source, ParseFailure(fetched, exc), Known())
        return
    started = time.monotonic()
    known = _known(writer.services.store, source, parsed.items, fetched.permanent_url)
    duration_ms = fetched.duration_ms + int((time.monotonic() - started) * 1000)
    writer.add(source, Parsed(fetched, parsed, body_hash, duration_ms), known)


def _known(
    store: Store, source: FeedSource, items: Iterable[Item], permanent_url: str | None
) -> Known:
    """What the store holds that deciding this feed's poll needs."""
    keys = list(dict.fromkeys(item.key for item in items))
    hashes = store.known_hashes(source.id, keys) if keys else {}
    taken = (
        permanent_url is not None
        and permanent_url != source.url
        and store.feed_id_for_url(permanent_url) is not None
    )
    return Known(hashes, frozenset({permanent_url}) if taken and permanent_url else frozenset())


def _permanent_url(outcome: FetchOutcome | FetchError) -> str | None:
    return None if isinstance(outcome, FetchError) else outcome.permanent_url


@dataclass
class _BatchWriter:
    """Decides each feed's update as it comes, and classifies, matches and writes them a
    batch at a time (BATCH_FEEDS, BATCH_ITEMS); results are appended once written."""

    services: Services
    matcher: WatchMatcher
    now: datetime
    results: list[PollResult]
    batch: list[tuple[FeedUpdate, PollOutcome, tuple[str, ...]]] = field(default_factory=list)
    items: int = 0

    def add(self, source: FeedSource, outcome: PollOutcome, known: Known) -> None:
        policy = self.services.settings.poll.policy
        update = decide(source, outcome, known, self.now, policy, rand=self.services.rand())
        # The unchanged items are not written: holding them for a batch only costs memory.
        update = replace(update, unchanged=())
        if update.move is not None:
            # A move changes a feed's URL, which later feeds' decisions read from the store
            # (is the new URL taken?): it is written alone, with what came before it.
            self.flush()
            if update.move.refused is None:
                log.info("feed_moved", old_url=update.move.previous_url, new_url=update.move.url)
        self.batch.append((update, outcome, source.tags))
        self.items += len(update.new) + len(update.changed)
        if update.move is not None or len(self.batch) >= BATCH_FEEDS or self.items >= BATCH_ITEMS:
            self.flush()

    def flush(self) -> None:
        """Classify the batch's new and changed items in one call, add each feed's labels
        and mentions, write the batch in one transaction, then log each feed."""
        if not self.batch:
            return
        items = [item for update, _, _ in self.batch for item in (*update.new, *update.changed)]
        classifier = self.services.classifier
        predicted = iter(predict_items(classifier, items) if classifier else ())
        updates = []
        for update, _, tags in self.batch:
            if update.new or update.changed:
                own = [*update.new, *update.changed]
                # The predictions come in the batch's item order: feed by feed, item by item.
                by_key = {item.key: next(predicted) for item in own} if classifier else None
                update = replace(
                    update,
                    predictions=(
                        Predictions(classifier.version, by_key)
                        if classifier and by_key is not None
                        else None
                    ),
                    mentions=match_poll_items(self.matcher, own, tags),
                )
            updates.append(update)
        self.services.store.apply_all(updates)
        for update, (_, outcome, _) in zip(updates, self.batch, strict=True):
            _log_result(update, outcome)
            self.results.append(update.result)
        self.batch.clear()
        self.items = 0


def _log_result(update: FeedUpdate, outcome: PollOutcome) -> None:
    """One canonical line per feed: feed_polled status=… new=… duration_ms=…."""
    result = update.result
    extra: dict[str, Any] = {}
    if isinstance(outcome, FetchError | ParseFailure):
        kind = outcome.kind if isinstance(outcome, FetchError) else "parse"
        extra = {"kind": kind, "error_count": update.error_count}
    elif isinstance(outcome, Parsed):
        extra = {"warning": outcome.feed.warning, "skipped": outcome.feed.skipped}
    fields = {k: v for k, v in extra.items() if v not in (None, 0)}
    with bound_contextvars(feed=result.url):
        event = log.warning if result.status in ("failed", "gone") else log.info
        event(
            "feed_polled",
            status=result.status,
            http_status=result.http_status,
            new=result.new,
            updated=result.updated,
            seen=result.seen,
            duration_ms=result.duration_ms,
            error=result.error,
            **fields,
        )


def poll_job(services: Services, now: datetime) -> list[PollResult]:
    """The daemon's poll job: the config's feeds and watches into the store, then every
    feed that is due."""
    sync_config(services, now)
    return poll_feeds(services, now)
