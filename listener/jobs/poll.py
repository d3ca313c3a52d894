"""Wiring of the poll job; reads like the data-flow diagram in README.md.

poll: poll_matcher (watches caught up) ─► fetcher.fetch_many ─bytes─► parse (worker
      processes) ─ParsedFeed─► store.known_hashes ─► decide ─FeedUpdate─► classify_items
      + match_poll_items (new and changed items) ─► store.apply (one transaction per feed:
      items, predictions, mentions, feed state, polls row)
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
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
from listener.feeds.schedule import is_network_down
from listener.jobs.classify import classify_items
from listener.jobs.services import Services
from listener.jobs.watches import match_poll_items, poll_matcher, sync_config_watches
from listener.store import Store
from listener.watches.matcher import WatchMatcher

log = structlog.get_logger(__name__)


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
    matcher = poll_matcher(services.store)
    workers = services.settings.poll.parse_workers or os.cpu_count() or 1
    max_pending = 2 * workers + 2  # bounds the bodies held in memory while parsing
    with _parse_executor(workers) as executor:
        pending: dict[Future[ParsedFeed], tuple[FeedSource, Fetched, str]] = {}

        def collect(block_until: int) -> None:
            while len(pending) > block_until:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    source, fetched, body_hash = pending.pop(future)
                    results.append(
                        _store_parsed(services, matcher, now, source, fetched, body_hash, future)
                    )

        for source, outcome in services.fetcher.fetch_many(sources):
            if isinstance(outcome, Fetched):
                body_hash = hashlib.sha256(outcome.body).hexdigest()
                # The same bytes as last time (a server without validators): nothing to parse.
                if body_hash != source.body_hash:
                    future = executor.submit(services.parse, source.id, outcome)
                    pending[future] = (source, outcome, body_hash)
                    collect(max_pending)
                    continue
            known = _known(services.store, source, (), _permanent_url(outcome))
            results.append(_store(services, matcher, now, source, outcome, known))
        collect(0)
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


def _store_parsed(
    services: Services,
    matcher: WatchMatcher,
    now: datetime,
    source: FeedSource,
    fetched: Fetched,
    body_hash: str,
    future: Future[ParsedFeed],
) -> PollResult:
    try:
        parsed = future.result()
    except ParseError as exc:
        return _store(services, matcher, now, source, ParseFailure(fetched, exc), Known())
    started = time.monotonic()
    known = _known(services.store, source, parsed.items, fetched.permanent_url)
    duration_ms = fetched.duration_ms + int((time.monotonic() - started) * 1000)
    outcome = Parsed(fetched, parsed, body_hash, duration_ms)
    return _store(services, matcher, now, source, outcome, known)


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


def _store(
    services: Services,
    matcher: WatchMatcher,
    now: datetime,
    source: FeedSource,
    outcome: PollOutcome,
    known: Known,
) -> PollResult:
    """Decide the poll's update, add the new and changed items' labels and mentions, write
    it, and log it."""
    policy = services.settings.poll.policy
    update = decide(source, outcome, known, now, policy, rand=services.rand())
    if update.new or update.changed:
        items = [*update.new, *update.changed]
        classifier = services.classifier
        update = replace(
            update,
            predictions=(
                Predictions(classifier.version, classify_items(classifier, items))
                if classifier
                else None
            ),
            mentions=match_poll_items(matcher, items, source.tags),
        )
    if update.move is not None and update.move.refused is None:
        log.info("feed_moved", old_url=update.move.previous_url, new_url=update.move.url)
    services.store.apply(update)
    _log_result(update, outcome)
    return update.result


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
    results = poll_feeds(services, now)
    if is_network_down(results):  # once, rather than only one warning per feed
        log.warning("network_unreachable", feeds=len(results), error=results[0].error)
    return results
