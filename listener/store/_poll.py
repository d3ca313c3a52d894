"""I/O: the poll write path. `apply_all` writes several feeds' FeedUpdates in one
transaction: each feed's new and changed items, their predictions and watch mentions, the
feed's state and the polls row, so a crash never leaves half a feed (it loses the whole
batch, whose feeds keep their old validators and are fetched again). One transaction per
feed made a warm poll of 1,000 unchanged feeds 1,000 commits (issue 14). The feeds columns a
poll sets are named here only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from listener.domain import FeedUpdate, Item
from listener.store._base import (
    StoreBase,
    item_values_by_key,
    to_db_time,
    wrap_errors,
    write_transaction,
)
from listener.store._labels import insert_predictions
from listener.store._watches import ItemMatches, save_poll_mentions


class PollMixin(StoreBase):
    def apply(self, update: FeedUpdate) -> None:
        """Write one feed's poll in one transaction."""
        self.apply_all([update])

    def apply_all(self, updates: Iterable[FeedUpdate]) -> None:
        """Write several feeds' polls in one transaction: all of them, or none."""
        db = self.db
        with wrap_errors("saving a poll"), write_transaction(db):
            # Items ids only grow (INTEGER PRIMARY KEY: max + 1), so the batch's new items
            # are those above this one.
            before = db.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
            indexed = False
            for update in updates:
                with wrap_errors(f"saving {update.result.url}"):
                    self._write_update(update)
                indexed = indexed or bool(update.new)
            if indexed:
                # The new items into the search index in one statement (migration m005
                # dropped the per-row trigger; changed items go through items_au).
                db.execute(
                    "INSERT INTO items_fts (rowid, title, summary)"
                    " SELECT id, title, summary FROM items WHERE id > ?",
                    [before],
                )

    def _write_update(self, update: FeedUpdate) -> None:
        db = self.db
        result = update.result
        now = to_db_time(result.started_at)
        undated = to_db_time(update.undated_at) if update.undated_at else now
        new, changed = update.new, update.changed
        if update.rekeyed:
            # Items whose identifier changed form (http -> https, say): the stored row takes
            # the new key and guid first, then is updated like any other item.
            db.conn.executemany(
                "UPDATE items SET key=?, guid=? WHERE key=?",
                [(item.key, item.guid, old) for old, item in update.rekeyed],
            )
        if new:
            db.conn.executemany(
                "INSERT INTO items (key, feed_id, guid, url, title, summary, author,"
                " published_at, published_raw, date_is_estimated, fetched_at, updated_at,"
                " lang, content_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (*_item_values(item, undated), now, now, item.lang, item.content_hash)
                    for item in new
                ],
            )
        if changed:
            # An item without a date keeps the date it was stored with: an edit is not news.
            db.conn.executemany(
                "UPDATE items SET guid=?, url=?, title=?, summary=?, author=?,"
                " published_at=coalesce(?6, published_at), published_raw=?,"
                " date_is_estimated=CASE WHEN ?6 IS NULL THEN date_is_estimated ELSE 0 END,"
                " updated_at=?, lang=?, content_hash=? WHERE key=?",
                [
                    (*_item_values(item, None)[2:9], now, item.lang, item.content_hash, item.key)
                    for item in changed
                ],
            )
        predictions, mentions = update.predictions, update.mentions
        # One lookup of the items' ids for their predictions and their mentions.
        keys = set(predictions.by_key) if predictions else set()
        if mentions is not None:
            keys.update(item.key for item in (*new, *changed))
        ids: dict[str, int] = item_values_by_key(db, "id", sorted(keys)) if keys else {}
        if predictions and predictions.by_key:
            insert_predictions(
                db,
                predictions.model_version,
                [(ids[key], prediction) for key, prediction in predictions.by_key.items()],
                result.started_at,
            )
        if mentions is not None and (new or changed):

            def matches(items: Sequence[Item]) -> dict[int, ItemMatches]:
                # A mention counts when it was published, or first seen if that is
                # earlier (a date in the future is a feed's mistake, not tomorrow's news).
                return {
                    ids[item.key]: (
                        min(_item_values(item, undated)[7], now),
                        mentions.by_key.get(item.key, {}),
                    )
                    for item in items
                }

            save_poll_mentions(db, mentions.revisions, matches(new), matches(changed))
        columns = _feed_columns(update, now)
        db.execute(
            f"UPDATE feeds SET {', '.join(f'{name} = ?' for name in columns)} WHERE id = ?",
            [*columns.values(), result.feed_id],
        )
        db.execute(
            "INSERT INTO polls (feed_id, started_at, duration_ms, status, http_status,"
            " new_count, updated_count, seen_count, error) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                result.feed_id,
                now,
                result.duration_ms,
                result.status,
                result.http_status,
                result.new,
                result.updated,
                result.seen,
                result.error,
            ],
        )


def _feed_columns(update: FeedUpdate, now: str) -> dict[str, Any]:
    """The feeds columns this poll sets (the others keep their values)."""
    result = update.result
    columns: dict[str, Any] = {
        "last_polled_at": now,
        "last_status": result.status,
        "last_http_status": result.http_status,
        "error_count": update.error_count,
        "last_error": result.error,
        "failing_since": to_db_time(update.failing_since) if update.failing_since else None,
        "next_poll_at": to_db_time(update.next_poll_at) if update.next_poll_at else None,
    }
    if update.gone_at is not None:
        columns["gone_at"] = to_db_time(update.gone_at)
    if (content := update.content) is not None:
        columns |= {
            "etag": content.etag,
            "last_modified": content.last_modified,
            "body_hash": content.body_hash,
            "last_warning": content.warning,
        }
        if content.title is not None:
            columns["title"] = content.title
        if content.site_url is not None:
            columns["site_url"] = content.site_url
    if update.new:
        columns["last_new_item_at"] = now
    if (move := update.move) is not None:
        if move.refused is not None:
            columns["last_warning"] = move.refused
        else:
            columns |= {"url": move.url, "previous_url": move.previous_url}
    return columns


def _item_values(item: Item, undated: str | None) -> tuple[Any, ...]:
    """The item's columns, key to date_is_estimated; `undated` is the date of an item
    without one."""
    published = to_db_time(item.published_at) if item.published_at else undated
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
