"""Wiring of the watches: the config's [[watches]] into the store, the backfill that matches
stored items against new or changed watches, and the matching of a poll's items.

backfill: store.list_watches ─► parse_query ─► store.items_to_match (batches by id)
          ─► WatchMatcher.match_item ─► store.save_matches (mentions + cursors, one
          transaction per batch: an interrupted backfill resumes where it stopped)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from listener.config import Settings
from listener.domain import Item, MatchCursor, Mention, PollMentions, Terms, WatchRow
from listener.errors import QuerySyntaxError
from listener.store import Store
from listener.watches.matcher import ActiveWatch, WatchMatcher
from listener.watches.query import parse_query

log = structlog.get_logger(__name__)

BACKFILL_BATCH = 5000  # items per transaction: a few MB of text, a fraction of a second


@dataclass(frozen=True, slots=True)
class SyncResult:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def sync_config_watches(store: Store, settings: Settings, now: datetime) -> SyncResult:
    """Make the store's config watches those of the [[watches]] section: add new ones,
    update changed ones, remove the ones deleted from the file. Watches added with
    `listener watch add` are left alone, unless the config now defines the same name."""
    added, changed = [], []
    for watch in settings.watches:
        outcome = store.save_watch(watch, origin="config", now=now)
        if outcome == "added":
            added.append(watch.name)
        elif outcome == "changed":
            changed.append(watch.name)
    removed = store.remove_config_watches({watch.name for watch in settings.watches})
    result = SyncResult(tuple(added), tuple(changed), tuple(removed))
    if added or changed or removed:
        log.info("watches_synced", added=added, changed=changed, removed=removed)
    return result


def active_watches(rows: Sequence[WatchRow]) -> list[ActiveWatch]:
    """The stored watches with their queries parsed; one that no longer parses (stored by
    another version of listener) is skipped with a warning, never matched wrongly."""
    active = []
    for row in rows:
        try:
            query = parse_query(row.query)
        except QuerySyntaxError as exc:
            log.warning("watch_skipped", watch=row.name, reason="query_error", error=exc.message)
            continue
        active.append(ActiveWatch(row.id, row.name, row.revision, query, row.tags))
    return active


def count_to_backfill(store: Store) -> int:
    """Items the lagging watches still have to be matched against (for a progress bar)."""
    rows = store.list_watches()
    lowest = min((row.matched_through for row in rows), default=store.max_item_id())
    return store.count_items_after(lowest)


def backfill_watches(
    store: Store,
    *,
    batch_size: int = BACKFILL_BATCH,
    on_batch: Callable[[int], object] = lambda count: None,
    stop: threading.Event | None = None,
) -> int:
    """Match the stored items each watch's cursor has not reached yet, batch by batch, until
    every watch has seen every item (items stored meanwhile included), or until `stop` is
    set (each batch is its own transaction: the next run resumes there). Items read."""
    started = time.perf_counter()
    read = mentions_found = 0
    names: set[str] = set()
    while True:
        newest = store.max_item_id()
        rows = {row.id: row for row in store.list_watches() if row.matched_through < newest}
        lagging = active_watches(list(rows.values()))
        if not lagging:
            break
        cursors = {w.id: rows[w.id].matched_through for w in lagging}
        names.update(w.name for w in lagging)
        stale = False
        while lagging and not stale:
            if stop is not None and stop.is_set():
                log.info("watches_backfill_paused", items=read)
                return read
            batch = store.items_to_match(min(cursors.values()), batch_size)
            if not batch:
                break
            last = batch[-1].id
            group = [w for w in lagging if cursors[w.id] < last]
            matcher = WatchMatcher(group)
            found: list[Mention] = []
            for item in batch:
                for watch_id, terms in matcher.match_item(
                    item.title, item.summary, item.feed_tags
                ).items():
                    if item.id > cursors[watch_id]:
                        found.append(Mention(watch_id, item.id, item.mentioned_at, terms))
            moves = [MatchCursor(w.id, w.revision, cursors[w.id], last) for w in group]
            moved = store.save_matches(moves, found)
            stale = moved < len(group)  # changed or removed meanwhile: read the watches again
            for w in group:
                cursors[w.id] = last
            read += len(batch)
            mentions_found += len(found)
            on_batch(len(batch))
        if not stale:
            break
    if names:
        log.info(
            "watches_backfilled",
            watches=sorted(names),
            items=read,
            mentions=mentions_found,
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
    return read


def poll_matcher(store: Store, stop: threading.Event | None = None) -> WatchMatcher:
    """Before a poll stores anything: every watch caught up, then compiled for the poll."""
    backfill_watches(store, stop=stop)
    return WatchMatcher(active_watches(store.list_watches()))


def match_poll_items(
    matcher: WatchMatcher, items: Sequence[Item], feed_tags: Sequence[str]
) -> PollMentions | None:
    """The mentions in one feed's new and changed items, for Store.apply; None: no watches."""
    if not matcher:
        return None
    by_key = {}
    for item in items:
        found = matcher.match_item(item.title, item.summary, feed_tags)
        if found:
            by_key[item.key] = found
    return PollMentions(matcher.revisions(), by_key)


@dataclass(frozen=True, slots=True)
class WatchPreview:
    """What a query matches among the stored items (`listener watch test`)."""

    scanned: int
    matches: tuple[tuple[int, Terms], ...]  # (item id, terms), newest mention first


def preview_watch(
    store: Store,
    watch: ActiveWatch,
    *,
    since: datetime | None = None,
    batch_size: int = BACKFILL_BATCH,
    on_batch: Callable[[int], object] = lambda count: None,
) -> WatchPreview:
    """Match every stored item (mentioned since `since`) against one watch; stores nothing."""
    matcher = WatchMatcher([watch])
    oldest = since.replace(microsecond=0) if since is not None else None  # stored: whole seconds
    scanned, after = 0, 0
    found: list[tuple[datetime, int, Terms]] = []
    while batch := store.items_to_match(after, batch_size):
        for item in batch:
            if oldest is not None and item.mentioned_at < oldest:
                continue
            scanned += 1
            terms = matcher.match_item(item.title, item.summary, item.feed_tags).get(watch.id)
            if terms is not None:
                found.append((item.mentioned_at, item.id, terms))
        after = batch[-1].id
        on_batch(len(batch))
    found.sort(reverse=True)
    return WatchPreview(scanned, tuple((item_id, terms) for _, item_id, terms in found))
