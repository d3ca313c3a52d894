"""I/O: the items table and its full-text index, read back: search, export, counts, and
item ids and content hashes by key. (A poll writes items through `_poll`.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from listener.errors import QuerySyntaxError
from listener.store._base import CHUNK, StoreBase, item_values_by_key, to_db_time, wrap_errors


class ItemsMixin(StoreBase):
    def known_hashes(self, feed_id: int, keys: Iterable[str]) -> dict[str, str]:
        """content_hash of the stored items among `keys`."""
        return item_values_by_key(self.db, "content_hash", keys)

    def item_ids_for_keys(self, keys: Sequence[str]) -> dict[str, int]:
        return item_values_by_key(self.db, "id", keys)

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

    def max_item_id(self) -> int:
        with wrap_errors("reading items"):
            return int(self.db.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0])

    def count_items_after(self, after_id: int) -> int:
        with wrap_errors("counting items"):
            return int(
                self.db.execute("SELECT count(*) FROM items WHERE id > ?", [after_id]).fetchone()[0]
            )

    def items_by_ids(self, item_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """items_view rows (with labels) of some items, by id."""
        found: dict[int, dict[str, Any]] = {}
        ids = list(item_ids)
        with wrap_errors("reading items"):
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self.db.query(f"SELECT * FROM items_view WHERE id IN ({marks})", chunk):
                    found[row["id"]] = row
        return found

    def item_brief(self, item_id: int) -> dict[str, Any] | None:
        with wrap_errors("reading an item"):
            rows = list(
                self.db.query(
                    "SELECT id, title, url, summary, lang, labels, uncertain FROM items_view"
                    " WHERE id = ?",
                    [item_id],
                )
            )
        return rows[0] if rows else None


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
