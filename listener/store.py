"""I/O: SQLite through sqlite-utils. Translates between rows and domain types; decides nothing.

One writer (the job's thread), any number of readers (WAL). Each feed's poll is written in one
transaction (`save_poll`), so a crash never leaves half a feed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from listener.domain import FeedSource, Item, PollMentions, PollResult
from listener.errors import QuerySyntaxError
from listener.feeds.schedule import feed_health
from listener.migrations import migrations
from listener.store_base import from_db_time, item_values_by_key, to_db_time, wrap_errors
from listener.store_digest import DigestMixin
from listener.store_labels import LabelsMixin, ScoredLabels
from listener.store_watches import ItemMatches, WatchesMixin


@dataclass(frozen=True, slots=True)
class FeedRow:
    """A feeds row as the CLI and the digest read it."""

    id: int
    url: str
    title: str | None
    tags: tuple[str, ...]
    interval_minutes: int | None
    added_at: datetime
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_status: str | None
    last_http_status: int | None
    error_count: int
    last_error: str | None
    failing_since: datetime | None
    gone_at: datetime | None
    last_warning: str | None
    last_new_item_at: datetime | None
    item_count: int

    def health(self, now: datetime, silent_after_days: int) -> str:
        """ok, new, gone, failing since…, silent for… (schedule.feed_health decides)."""
        return feed_health(
            now=now,
            last_status=self.last_status,
            error_count=self.error_count,
            failing_since=self.failing_since,
            gone_at=self.gone_at,
            last_new_item_at=self.last_new_item_at,
            added_at=self.added_at,
            silent_after_days=silent_after_days,
        )


class Store(LabelsMixin, DigestMixin, WatchesMixin):
    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path

    def close(self) -> None:
        self.db.close()

    # -- feeds -------------------------------------------------------------------------

    def add_feed(
        self,
        url: str,
        *,
        now: datetime,
        tags: Sequence[str] = (),
        interval_minutes: int | None = None,
        title: str | None = None,
    ) -> bool:
        """Insert a feed, or merge tags/interval/title into an existing one. True if new."""
        with wrap_errors("adding a feed"), self.db.atomic():
            row = self.db.execute("SELECT id, tags FROM feeds WHERE url = ?", [url]).fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO feeds (url, title, tags, interval_minutes, added_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [url, title, json.dumps(sorted(set(tags))), interval_minutes, to_db_time(now)],
                )
                return True
            merged = sorted(set(json.loads(row[1])) | set(tags))
            self.db.execute(
                "UPDATE feeds SET tags = ?, interval_minutes = coalesce(?, interval_minutes),"
                " title = coalesce(title, ?) WHERE id = ?",
                [json.dumps(merged), interval_minutes, title, row[0]],
            )
            return False

    def remove_feed(self, url: str) -> int | None:
        """Delete a feed with its items and polls; the number of items removed, None if unknown."""
        with wrap_errors("removing a feed"), self.db.atomic():
            row = self.db.execute("SELECT id FROM feeds WHERE url = ?", [url]).fetchone()
            if row is None:
                return None
            count: int = self.db.execute(
                "SELECT count(*) FROM items WHERE feed_id = ?", [row[0]]
            ).fetchone()[0]
            self.db.execute("DELETE FROM items WHERE feed_id = ?", [row[0]])
            self.db.execute("DELETE FROM polls WHERE feed_id = ?", [row[0]])
            self.db.execute("DELETE FROM feeds WHERE id = ?", [row[0]])
            return count

    def feed_id_for_url(self, url: str) -> int | None:
        row = self.db.execute("SELECT id FROM feeds WHERE url = ?", [url]).fetchone()
        return None if row is None else int(row[0])

    def list_feeds(self) -> list[FeedRow]:
        with wrap_errors("listing feeds"):
            cursor = self.db.execute(
                "SELECT feeds.*, (SELECT count(*) FROM items WHERE items.feed_id = feeds.id)"
                " AS item_count FROM feeds ORDER BY url"
            )
            names = [d[0] for d in cursor.description]
            return [_feed_row(dict(zip(names, values, strict=True))) for values in cursor]

    def feed_sources(self, due_at: datetime | None) -> list[FeedSource]:
        """Feeds to poll: those due at `due_at`, or all of them when it is None. Never gone ones."""
        sql = (
            "SELECT id, url, etag, last_modified, body_hash, error_count, interval_minutes,"
            " failing_since, tags FROM feeds WHERE gone_at IS NULL"
        )
        params: list[str] = []
        if due_at is not None:
            sql += " AND (next_poll_at IS NULL OR next_poll_at <= ?)"
            params.append(to_db_time(due_at))
        sql += " ORDER BY next_poll_at IS NOT NULL, next_poll_at, id"
        with wrap_errors("reading feeds"):
            return [
                FeedSource(
                    id=row[0],
                    url=row[1],
                    etag=row[2],
                    last_modified=row[3],
                    body_hash=row[4],
                    error_count=row[5],
                    interval_minutes=row[6],
                    failing_since=from_db_time(row[7]),
                    tags=tuple(json.loads(row[8])),
                )
                for row in self.db.execute(sql, params)
            ]

    # -- polling -----------------------------------------------------------------------

    def known_hashes(self, feed_id: int, keys: Iterable[str]) -> dict[str, str]:
        """content_hash of the stored items among `keys`."""
        return item_values_by_key(self.db, "content_hash", keys)

    def save_poll(
        self,
        poll: PollResult,
        feed_changes: Mapping[str, Any],
        new_items: Sequence[Item] = (),
        changed_items: Sequence[Item] = (),
        predictions: Mapping[str, ScoredLabels] | None = None,
        model_version: str | None = None,
        mentions: PollMentions | None = None,
    ) -> None:
        """Write one feed's poll in one transaction: items, their predictions and watch
        mentions (by item key), the feed's state, the polls row."""
        now = to_db_time(poll.started_at)
        with wrap_errors(f"saving {poll.url}"), self.db.atomic():
            if new_items:
                self.db.conn.executemany(
                    "INSERT INTO items (key, feed_id, guid, url, title, summary, author,"
                    " published_at, published_raw, date_is_estimated, fetched_at, updated_at,"
                    " lang, content_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (*_item_values(item, now), now, now, item.lang, item.content_hash)
                        for item in new_items
                    ],
                )
            if changed_items:
                self.db.conn.executemany(
                    "UPDATE items SET guid=?, url=?, title=?, summary=?, author=?,"
                    " published_at=?, published_raw=?, date_is_estimated=?, updated_at=?,"
                    " lang=?, content_hash=? WHERE key=?",
                    [
                        (*_item_values(item, now)[2:], now, item.lang, item.content_hash, item.key)
                        for item in changed_items
                    ],
                )
            # One lookup of the items' ids for their predictions and their mentions.
            keys = set(predictions or ()) if model_version else set()
            if mentions is not None:
                keys.update(item.key for item in (*new_items, *changed_items))
            ids = self.item_ids_for_keys(sorted(keys)) if keys else {}
            if predictions and model_version:
                self.save_predictions(
                    model_version,
                    [(ids[key], prediction) for key, prediction in predictions.items()],
                    poll.started_at,
                )
            if mentions is not None and (new_items or changed_items):
                self._save_item_mentions(mentions, ids, new_items, changed_items, now)
            if feed_changes:
                columns = ", ".join(f"{name} = ?" for name in feed_changes)
                values = [_db_value(v) for v in feed_changes.values()]
                self.db.execute(f"UPDATE feeds SET {columns} WHERE id = ?", [*values, poll.feed_id])
            self.db.execute(
                "INSERT INTO polls (feed_id, started_at, duration_ms, status, http_status,"
                " new_count, updated_count, seen_count, error) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    poll.feed_id,
                    now,
                    poll.duration_ms,
                    poll.status,
                    poll.http_status,
                    poll.new,
                    poll.updated,
                    poll.seen,
                    poll.error,
                ],
            )

    def _save_item_mentions(
        self,
        mentions: PollMentions,
        ids: Mapping[str, int],
        new_items: Sequence[Item],
        changed_items: Sequence[Item],
        now: str,
    ) -> None:
        def matches(items: Sequence[Item]) -> dict[int, ItemMatches]:
            # A mention counts when it was published, or first seen if that is earlier (a
            # date in the future is a feed's mistake, not tomorrow's news).
            return {
                ids[item.key]: (
                    min(_item_values(item, now)[7], now),
                    mentions.by_key.get(item.key, {}),
                )
                for item in items
            }

        self.save_poll_mentions(mentions.revisions, matches(new_items), matches(changed_items))

    # -- reading back ------------------------------------------------------------------

    def search(
        self,
        fts_query: str,
        *,
        since: datetime | None = None,
        feed_url: str | None = None,
        tag: str | None = None,
        watch: str | None = None,
        limit: int = 20,
        order: str = "best",
    ) -> list[dict[str, Any]]:
        """Full-text search over title + summary; rows newest or best (bm25) first."""
        where = ["items_fts MATCH :query"]
        params: dict[str, Any] = {"query": fts_query, "limit": limit}
        _add_filters(where, params, since=since, feed_url=feed_url, tag=tag, watch=watch)
        order_by = "rank" if order == "best" else "items.published_at DESC"
        sql = f"""
            SELECT items.id, items.published_at, feeds.url AS feed_url,
                   feeds.title AS feed_title, items.title, items.url, items.lang,
                   snippet(items_fts, -1, '[', ']', '…', 16) AS snippet,
                   bm25(items_fts, 5.0, 1.0) AS rank
            FROM items_fts
            JOIN items ON items.id = items_fts.rowid
            JOIN feeds ON feeds.id = items.feed_id
            WHERE {" AND ".join(where)}
            ORDER BY {order_by}, items.id DESC
            LIMIT :limit
        """
        with wrap_errors("searching"):
            try:
                return list(self.db.query(sql, params))
            except sqlite3.OperationalError as exc:
                if any(word in str(exc) for word in ("locked", "busy", "readonly", "open")):
                    raise
                # FTS5 reports query syntax problems as OperationalError too.
                raise QuerySyntaxError(f"malformed search query: {exc}", fts_query) from exc

    def iter_items(
        self,
        *,
        since: datetime | None = None,
        feed_url: str | None = None,
        tag: str | None = None,
        watch: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item, oldest first, streamed row by row (bounded memory on any size)."""
        where = ["1"]
        params: dict[str, Any] = {}
        _add_filters(where, params, since=since, feed_url=feed_url, tag=tag, watch=watch)
        sql = f"""
            SELECT items.id, items.key, feeds.url AS feed_url, feeds.title AS feed_title,
                   items.guid, items.url, items.title, items.summary, items.author,
                   items.published_at, items.fetched_at, items.lang
            FROM items JOIN feeds ON feeds.id = items.feed_id
            WHERE {" AND ".join(where)}
            ORDER BY items.published_at, items.id
        """
        with wrap_errors("exporting"):
            yield from self.db.query(sql, params)

    def counts(self) -> dict[str, int]:
        with wrap_errors("counting"):
            return {
                table: int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("feeds", "items", "polls")
            }


def _add_filters(
    where: list[str],
    params: dict[str, Any],
    *,
    since: datetime | None,
    feed_url: str | None,
    tag: str | None,
    watch: str | None = None,
) -> None:
    if since is not None:
        where.append("items.published_at >= :since")
        params["since"] = to_db_time(since)
    if feed_url is not None:
        where.append("feeds.url = :feed_url")
        params["feed_url"] = feed_url
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(feeds.tags) WHERE value = :tag)")
        params["tag"] = tag
    if watch is not None:
        where.append(
            "EXISTS (SELECT 1 FROM mentions JOIN watches ON watches.id = mentions.watch_id"
            " WHERE mentions.item_id = items.id AND watches.name = :watch)"
        )
        params["watch"] = watch


def _item_values(item: Item, now: str) -> tuple[Any, ...]:
    published = to_db_time(item.published_at) if item.published_at else now
    return (
        item.key,
        item.feed_id,
        item.guid,
        item.url,
        item.title,
        item.summary,
        item.author,
        published,
        item.published_raw,
        int(item.published_at is None),
    )


def _db_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_db_time(value)
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return value


def _feed_row(row: dict[str, Any]) -> FeedRow:
    return FeedRow(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        tags=tuple(json.loads(row["tags"])),
        interval_minutes=row["interval_minutes"],
        added_at=from_db_time(row["added_at"]) or datetime.min.replace(tzinfo=UTC),
        next_poll_at=from_db_time(row["next_poll_at"]),
        last_polled_at=from_db_time(row["last_polled_at"]),
        last_status=row["last_status"],
        last_http_status=row["last_http_status"],
        error_count=row["error_count"],
        last_error=row["last_error"],
        failing_since=from_db_time(row["failing_since"]),
        gone_at=from_db_time(row["gone_at"]),
        last_warning=row["last_warning"],
        last_new_item_at=from_db_time(row["last_new_item_at"]),
        item_count=row["item_count"],
    )


def open_store(path: Path, *, busy_timeout_s: float = 5.0) -> Store:
    """Open (creating if needed) the database, switch to WAL and apply pending migrations."""
    with wrap_errors(f"opening {path}"):
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, check_same_thread=False)
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        # In WAL mode NORMAL keeps the database consistent through crashes and only risks the
        # last transactions on power loss; FULL would fsync every feed's poll (most of a warm
        # cycle's time: https://www.sqlite.org/pragma.html#pragma_synchronous).
        db.execute("PRAGMA synchronous = NORMAL")
        if migrations.pending(db) or "_sqlite_migrations" not in db.table_names():
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.enable_wal()
            migrations.apply(db)
        return Store(db, path)
