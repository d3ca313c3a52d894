"""I/O: the poll write path. One feed's poll in one transaction: its new and changed items,
their predictions and watch mentions, the feed's state and the polls row, so a crash never
leaves half a feed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from listener.domain import Item, PollMentions, PollResult, ScoredLabels
from listener.store._base import StoreBase, item_values_by_key, to_db_time, wrap_errors
from listener.store._labels import insert_predictions
from listener.store._watches import ItemMatches, save_poll_mentions


class PollMixin(StoreBase):
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
        db = self.db
        now = to_db_time(poll.started_at)
        with wrap_errors(f"saving {poll.url}"), db.atomic():
            if new_items:
                db.conn.executemany(
                    "INSERT INTO items (key, feed_id, guid, url, title, summary, author,"
                    " published_at, published_raw, date_is_estimated, fetched_at, updated_at,"
                    " lang, content_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (*_item_values(item, now), now, now, item.lang, item.content_hash)
                        for item in new_items
                    ],
                )
            if changed_items:
                db.conn.executemany(
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
            ids: dict[str, int] = item_values_by_key(db, "id", sorted(keys)) if keys else {}
            if predictions and model_version:
                insert_predictions(
                    db,
                    model_version,
                    [(ids[key], prediction) for key, prediction in predictions.items()],
                    poll.started_at,
                )
            if mentions is not None and (new_items or changed_items):

                def matches(items: Sequence[Item]) -> dict[int, ItemMatches]:
                    # A mention counts when it was published, or first seen if that is
                    # earlier (a date in the future is a feed's mistake, not tomorrow's news).
                    return {
                        ids[item.key]: (
                            min(_item_values(item, now)[7], now),
                            mentions.by_key.get(item.key, {}),
                        )
                        for item in items
                    }

                save_poll_mentions(
                    db, mentions.revisions, matches(new_items), matches(changed_items)
                )
            if feed_changes:
                columns = ", ".join(f"{name} = ?" for name in feed_changes)
                values = [_db_value(v) for v in feed_changes.values()]
                db.execute(f"UPDATE feeds SET {columns} WHERE id = ?", [*values, poll.feed_id])
            db.execute(
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
