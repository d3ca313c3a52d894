"""The only wiring: each job reads like the data-flow diagram in README.md.

poll: poll_matcher (watches caught up) ─► fetch_many ─bytes─► parse_feed (worker
      processes) ─Items─► drop_duplicates ─► store.known_hashes ─new/changed─►
      classify_items + match_poll_items ─► store.save_poll (one transaction per feed:
      items, predictions, mentions, feed state, polls row)
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import structlog
from structlog.contextvars import bound_contextvars

from listener.classify.model import Classifier, Prediction, item_text
from listener.config import Settings
from listener.domain import (
    FeedSource,
    Fetched,
    Item,
    NotModified,
    ParsedFeed,
    PollPolicy,
    PollResult,
)
from listener.errors import FeedGone, FetchError, ParseError
from listener.feeds.dedupe import drop_duplicates
from listener.feeds.fetch import fetch_many
from listener.feeds.parse import parse_feed
from listener.feeds.schedule import next_poll_after_failure, next_poll_after_success
from listener.jobs_watch import match_poll_items, poll_matcher, sync_config_watches
from listener.store import Store
from listener.watches.matcher import WatchMatcher

log = structlog.get_logger(__name__)


@dataclass
class Services:
    """Everything a job needs, built once by the CLI (no module-level singletons)."""

    settings: Settings
    store: Store
    client: httpx.Client
    classifier: Classifier | None = None  # None: items are stored unclassified
    rand: Callable[[], float] = field(default=random.random)  # jitter; tests pin it


def classify_items(classifier: Classifier, items: list[Item]) -> dict[str, Prediction]:
    """Predictions for items, by item key (one batch: the model is fastest on many texts)."""
    if not items:
        return {}
    predictions = classifier.predict([item_text(item.title, item.summary) for item in items])
    return {item.key: prediction for item, prediction in zip(items, predictions, strict=True)}


def reclassify_items(
    store: Store,
    classifier: Classifier,
    *,
    since: datetime | None,
    now: datetime,
    batch_size: int,
    on_batch: Callable[[int], object] = lambda count: None,
) -> int:
    """Backfill: classify, batch by batch, the items this model has not classified yet.

    Each batch is one transaction, so an interrupted run resumes where it stopped.
    """
    done = 0
    after_id = 0
    while rows := store.items_to_classify(
        classifier.version, since=since, after_id=after_id, limit=batch_size
    ):
        predictions = classifier.predict([item_text(title, summary) for _, title, summary in rows])
        store.save_predictions(
            classifier.version,
            [(row[0], p) for row, p in zip(rows, predictions, strict=True)],
            now,
        )
        after_id = rows[-1][0]
        done += len(rows)
        on_batch(len(rows))
    log.info("items_reclassified", model_version=classifier.version, items=done)
    return done


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
    policy = services.settings.poll.policy
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
                        _store_parsed(
                            services, policy, matcher, now, source, fetched, body_hash, future
                        )
                    )

        for source, outcome in fetch_many(services.client, sources, services.settings.poll.limits):
            if isinstance(outcome, FetchError):
                results.append(_store_failure(services, policy, now, source, outcome))
            elif isinstance(outcome, NotModified):
                results.append(_store_not_modified(services, policy, now, source, outcome))
            else:
                body_hash = hashlib.sha256(outcome.body).hexdigest()
                if body_hash == source.body_hash:
                    results.append(_store_unchanged(services, policy, now, source, outcome))
                    continue
                pending[executor.submit(parse_feed, source.id, outcome)] = (
                    source,
                    outcome,
                    body_hash,
                )
                collect(max_pending)
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


def _moved(services: Services, source: FeedSource, permanent_url: str | None) -> dict[str, Any]:
    """Follow a 301/308 by updating the stored URL, unless another feed already has it."""
    if not permanent_url or permanent_url == source.url:
        return {}
    if services.store.feed_id_for_url(permanent_url) is not None:
        return {"last_warning": f"moved permanently to {permanent_url}, already a feed here"}
    log.info("feed_moved", old_url=source.url, new_url=permanent_url)
    return {"url": permanent_url, "previous_url": source.url}


def _healthy(now: datetime, status: str, http_status: int | None) -> dict[str, Any]:
    return {
        "last_polled_at": now,
        "last_status": status,
        "last_http_status": http_status,
        "error_count": 0,
        "last_error": None,
        "failing_since": None,
    }


def _store_parsed(
    services: Services,
    policy: PollPolicy,
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
        return _store_failure(services, policy, now, source, exc, http_status=fetched.status)
    started = time.monotonic()
    items = drop_duplicates(list(parsed.items))
    known = services.store.known_hashes(source.id, (item.key for item in items))
    new = [item for item in items if item.key not in known]
    changed = [item for item in items if item.key in known and known[item.key] != item.content_hash]
    changes = _healthy(now, "ok", fetched.status) | {
        "etag": fetched.headers.get("etag"),
        "last_modified": fetched.headers.get("last-modified"),
        "body_hash": body_hash,
        "last_warning": parsed.warning,
        "next_poll_at": next_poll_after_success(
            now, policy, source.interval_minutes, fetched.headers, services.rand()
        ),
    }
    if parsed.title:
        changes["title"] = parsed.title
    if parsed.site_url:
        changes["site_url"] = parsed.site_url
    if new:
        changes["last_new_item_at"] = now
    changes |= _moved(services, source, fetched.permanent_url)
    result = PollResult(
        feed_id=source.id,
        url=source.url,
        status="ok",
        started_at=now,
        duration_ms=fetched.duration_ms + int((time.monotonic() - started) * 1000),
        http_status=fetched.status,
        new=len(new),
        updated=len(changed),
        seen=len(items) - len(new) - len(changed),
    )
    classifier = services.classifier
    predictions = classify_items(classifier, new + changed) if classifier else None
    services.store.save_poll(
        result,
        changes,
        new,
        changed,
        predictions,
        classifier.version if classifier else None,
        match_poll_items(matcher, new + changed, source.tags),
    )
    _log_result(result, warning=parsed.warning, skipped=parsed.skipped)
    return result


def _store_not_modified(
    services: Services, policy: PollPolicy, now: datetime, source: FeedSource, outcome: NotModified
) -> PollResult:
    return _store_unparsed(
        services,
        policy,
        now,
        source,
        "not_modified",
        304,
        outcome.headers,
        outcome.permanent_url,
        outcome.duration_ms,
    )


def _store_unchanged(
    services: Services, policy: PollPolicy, now: datetime, source: FeedSource, outcome: Fetched
) -> PollResult:
    """Same bytes as last time: the server sends no validators, but there is nothing to parse."""
    return _store_unparsed(
        services,
        policy,
        now,
        source,
        "unchanged",
        outcome.status,
        outcome.headers,
        outcome.permanent_url,
        outcome.duration_ms,
    )


def _store_unparsed(
    services: Services,
    policy: PollPolicy,
    now: datetime,
    source: FeedSource,
    status: str,
    http_status: int,
    headers: Any,
    permanent_url: str | None,
    duration_ms: int,
) -> PollResult:
    changes = _healthy(now, status, http_status) | {
        "next_poll_at": next_poll_after_success(
            now, policy, source.interval_minutes, headers, services.rand()
        ),
    }
    changes |= _moved(services, source, permanent_url)
    result = PollResult(
        feed_id=source.id,
        url=source.url,
        status=status,
        started_at=now,
        duration_ms=duration_ms,
        http_status=http_status,
    )
    services.store.save_poll(result, changes)
    _log_result(result)
    return result


def _store_failure(
    services: Services,
    policy: PollPolicy,
    now: datetime,
    source: FeedSource,
    error: FetchError | ParseError,
    http_status: int | None = None,
) -> PollResult:
    """Record the failure on the feed (count, since when, message) and back off."""
    gone = isinstance(error, FeedGone)
    status = "gone" if gone else "failed"
    if isinstance(error, FetchError):
        http_status = error.status
    error_count = source.error_count + 1
    changes: dict[str, Any] = {
        "last_polled_at": now,
        "last_status": status,
        "last_http_status": http_status,
        "error_count": error_count,
        "last_error": error.message,
        "failing_since": source.failing_since or now,
    }
    if gone:
        changes |= {"gone_at": now, "next_poll_at": None}
    else:
        retry_after = error.retry_after if isinstance(error, FetchError) else None
        changes["next_poll_at"] = next_poll_after_failure(
            now, policy, source.interval_minutes, error_count, retry_after, services.rand()
        )
    result = PollResult(
        feed_id=source.id,
        url=source.url,
        status=status,
        started_at=now,
        duration_ms=0,
        http_status=http_status,
        error=error.message,
    )
    services.store.save_poll(result, changes)
    kind = error.kind if isinstance(error, FetchError) else "parse"
    _log_result(result, kind=kind, error_count=error_count)
    return result


def _log_result(result: PollResult, **extra: Any) -> None:
    """One canonical line per feed: feed_polled status=… new=… duration_ms=…."""
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
