"""I/O: the feeds table: adding, removing and listing feeds, and which are due."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from listener.domain import FeedRow, FeedSource
from listener.store._base import StoreBase, from_db_time, to_db_time, wrap_errors, write_transaction


class FeedsMixin(StoreBase):
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
        with wrap_errors("adding a feed"), write_transaction(self.db):
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
        with wrap_errors("removing a feed"), write_transaction(self.db):
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

    def list_feeds(self, *, with_item_count: bool = True) -> list[FeedRow]:
        """Every feed by URL; item_count only `with_item_count` (it reads every item's index
        entry: ~50 ms at a million items, which the digest, reading health only, skips)."""
        count = "(SELECT count(*) FROM items WHERE items.feed_id = feeds.id)"
        with wrap_errors("listing feeds"):
            cursor = self.db.execute(
                f"SELECT feeds.*, {count if with_item_count else '0'} AS item_count"
                " FROM feeds ORDER BY url"
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
