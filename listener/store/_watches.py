"""I/O: watches and their mentions: the watches themselves, the items matching reads, the
mentions a backfill batch or a poll writes, and the mentions a digest or a spike check reads.

Decides nothing: what matches is `watches.matcher`'s business. Every write that adds mentions
also moves the watch's cursor (`matched_through`) in the same transaction, and only when the
watch's revision is still the one that was matched, so a query changed meanwhile never gets
mentions of its old text.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from listener.domain import MatchCursor, MatchRow, Mention, Terms, Watch, WatchRow
from listener.store._base import (
    CHUNK,
    NEVER,
    StoreBase,
    from_db_time,
    to_db_time,
    wrap_errors,
    write_transaction,
)
from listener.store._period import TAG_FILTER, window_params

# (watch id, item id, mention time as stored, matched terms)
MentionRow = tuple[int, int, str, Terms]
# (mention time as stored, watch id -> terms) of one item a poll stored
ItemMatches = tuple[str, Mapping[int, Terms]]

# Mentions of the items a digest period shows, as digest_items selects them.
_PERIOD_MENTIONS = """
    SELECT {columns}
    FROM items JOIN feeds ON feeds.id = items.feed_id
    JOIN mentions ON mentions.item_id = items.id
    JOIN watches ON watches.id = mentions.watch_id
    WHERE items.fetched_at >= :start AND items.fetched_at < :end
      AND items.published_at >= :oldest {tag_filter}
"""


class WatchesMixin(StoreBase):
    # -- watches ---------------------------------------------------------------------------

    def list_watches(self, *, with_counts: bool = False) -> list[WatchRow]:
        """Every watch by name; mention_count and last_mention_at only `with_counts` (they
        read every mention: for people, not for jobs)."""
        counts = (
            "(SELECT count(*) FROM mentions WHERE watch_id = watches.id),"
            " (SELECT max(published_at) FROM mentions WHERE watch_id = watches.id)"
            if with_counts
            else "0, NULL"
        )
        with wrap_errors("listing watches"):
            rows = self.db.execute(f"SELECT watches.*, {counts} FROM watches ORDER BY name")
            return [_watch_row(row) for row in rows.fetchall()]

    def save_watch(self, watch: Watch, *, origin: str, now: datetime) -> str:
        """Insert or update a watch: "added", "changed" (query or scope: its mentions are
        dropped and it is matched again from the first item), "updated" (kind or origin
        only: its mentions stay) or "unchanged"."""
        tags = json.dumps(sorted(set(watch.tags)))
        stamp = to_db_time(now)
        with wrap_errors("saving a watch"), write_transaction(self.db):
            row = self.db.execute(
                "SELECT id, query, tags, kind, origin FROM watches WHERE name = ?", [watch.name]
            ).fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO watches (name, kind, query, tags, origin, added_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [watch.name, watch.kind, watch.query, tags, origin, stamp, stamp],
                )
                return "added"
            watch_id, query, old_tags, kind, old_origin = row
            if (query, old_tags) != (watch.query, tags):
                self.db.execute("DELETE FROM mentions WHERE watch_id = ?", [watch_id])
                self.db.execute(
                    "UPDATE spikes SET ended_at = ? WHERE watch_id = ? AND ended_at IS NULL",
                    [stamp, watch_id],
                )
                self.db.execute(
                    "UPDATE watches SET kind = ?, query = ?, tags = ?, origin = ?,"
                    " revision = revision + 1, matched_through = 0, updated_at = ? WHERE id = ?",
                    [watch.kind, watch.query, tags, origin, stamp, watch_id],
                )
                return "changed"
            if (kind, old_origin) != (watch.kind, origin):
                self.db.execute(
                    "UPDATE watches SET kind = ?, origin = ?, updated_at = ? WHERE id = ?",
                    [watch.kind, origin, stamp, watch_id],
                )
                return "updated"
            return "unchanged"

    def remove_watch(self, name: str) -> bool:
        """Delete a watch with its mentions, spikes and alerts; False if there is none."""
        with wrap_errors("removing a watch"), write_transaction(self.db):
            return self.db.execute("DELETE FROM watches WHERE name = ?", [name]).rowcount > 0

    def remove_config_watches(self, keep: Collection[str]) -> list[str]:
        """Delete the watches that came from the config file and are no longer in it."""
        with wrap_errors("removing watches"), write_transaction(self.db):
            gone = [
                name
                for (name,) in self.db.execute("SELECT name FROM watches WHERE origin = 'config'")
                if name not in keep
            ]
            for name in gone:
                self.db.execute("DELETE FROM watches WHERE name = ?", [name])
        return gone

    # -- matching --------------------------------------------------------------------------

    def items_to_match(self, after_id: int, limit: int) -> list[MatchRow]:
        """The next `limit` items after `after_id`, by id, with their feed's tags."""
        with wrap_errors("reading items"):
            rows = self.db.execute(
                "SELECT items.id, items.title, items.summary,"
                " min(items.published_at, items.fetched_at), feeds.tags"
                " FROM items JOIN feeds ON feeds.id = items.feed_id"
                " WHERE items.id > ? ORDER BY items.id LIMIT ?",
                [after_id, limit],
            ).fetchall()
        tags: dict[str, tuple[str, ...]] = {}  # few distinct tag lists: parse each once
        return [
            MatchRow(
                row[0],
                row[1],
                row[2],
                from_db_time(row[3]) or NEVER,
                tags.get(row[4]) or tags.setdefault(row[4], tuple(json.loads(row[4]))),
            )
            for row in rows
        ]

    def save_matches(self, cursors: Sequence[MatchCursor], mentions: Iterable[Mention]) -> int:
        """One backfill batch in one transaction: the mentions of the watches whose revision
        and cursor are still those the batch started from, and their cursors moved on.
        The watches that actually moved."""
        moved: set[int] = set()
        with wrap_errors("saving mentions"), write_transaction(self.db):
            for cursor in cursors:
                # A write first: it takes the write lock before anything is read.
                updated = self.db.execute(
                    "UPDATE watches SET matched_through = ? WHERE id = ? AND revision = ?"
                    " AND matched_through >= ? AND matched_through < ?",
                    [cursor.last, cursor.watch_id, cursor.revision, cursor.after, cursor.last],
                ).rowcount
                if updated:
                    moved.add(cursor.watch_id)
            _insert_mentions(
                self.db,
                (
                    (m.watch_id, m.item_id, to_db_time(m.mentioned_at), m.terms)
                    for m in mentions
                    if m.watch_id in moved
                ),
            )
        return len(moved)

    # -- reading mentions ------------------------------------------------------------------

    def period_mentions(
        self, start: datetime, end: datetime, tags: Sequence[str]
    ) -> dict[int, dict[str, Terms]]:
        """item id -> {watch name: terms} for the items digest_items selects."""
        sql = _PERIOD_MENTIONS.format(
            columns="mentions.item_id, watches.name, mentions.terms",
            tag_filter=TAG_FILTER if tags else "",
        )
        found: dict[int, dict[str, Terms]] = {}
        with wrap_errors("reading mentions"):
            for item_id, name, terms in self.db.execute(sql, window_params(start, end, tags)):
                found.setdefault(item_id, {})[name] = tuple(json.loads(terms))
        return found

    def period_mention_counts(
        self, start: datetime, end: datetime, tags: Sequence[str]
    ) -> dict[str, int]:
        """watch name -> mentions among the items digest_items would select."""
        sql = _PERIOD_MENTIONS.format(columns="watches.name", tag_filter=TAG_FILTER if tags else "")
        with wrap_errors("counting mentions"):
            rows = self.db.execute(
                f"SELECT name, count(*) FROM ({sql}) GROUP BY name", window_params(start, end, tags)
            )
            return {name: int(count) for name, count in rows}

    def watch_mentions(
        self, watch_id: int, start: datetime, end: datetime, *, settled_before: datetime
    ) -> list[Mention]:
        """A watch's mentions in [start, end), from feeds added before `settled_before` (a
        feed's first poll brings its archive at once)."""
        with wrap_errors("reading mentions"):
            rows = self.db.execute(
                "SELECT mentions.item_id, mentions.published_at, mentions.terms FROM mentions"
                " JOIN items ON items.id = mentions.item_id"
                " JOIN feeds ON feeds.id = items.feed_id"
                " WHERE mentions.watch_id = ? AND mentions.published_at >= ?"
                " AND mentions.published_at < ? AND feeds.added_at <= ?",
                [watch_id, to_db_time(start), to_db_time(end), to_db_time(settled_before)],
            ).fetchall()
        return [
            Mention(watch_id, item_id, from_db_time(at) or NEVER, tuple(json.loads(terms)))
            for item_id, at, terms in rows
        ]


def save_poll_mentions(
    db: Database,
    revisions: Mapping[int, int],
    new: Mapping[int, ItemMatches],
    changed: Mapping[int, ItemMatches],
) -> None:
    """Inside the poll's transaction, after its item writes: the mentions of the items
    it stored (item id -> (mention time, watch id -> terms)).

    Changed items are matched again for every watch still at the revision matched. New
    items count for a watch only when its cursor had reached them (a watch added or
    changed during the poll is left to its backfill), and move that cursor past them.
    """
    current = {
        row[0]: (row[1], row[2])
        for row in db.execute("SELECT id, revision, matched_through FROM watches")
    }
    valid = {w for w, rev in revisions.items() if w in current and current[w][0] == rev}
    rows: list[MentionRow] = []
    if changed and valid:
        ids = list(changed)
        marks = ",".join("?" * len(valid))
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            db.execute(
                f"DELETE FROM mentions WHERE watch_id IN ({marks})"
                f" AND item_id IN ({','.join('?' * len(chunk))})",
                [*valid, *chunk],
            )
        rows += _rows(changed, valid)
    if new:
        before, last = min(new) - 1, max(new)
        caught_up = {w for w in valid if current[w][1] >= before}
        rows += _rows(new, caught_up)
        if caught_up:
            marks = ",".join("?" * len(caught_up))
            db.execute(
                f"UPDATE watches SET matched_through = ? WHERE id IN ({marks})"
                " AND matched_through < ?",
                [last, *caught_up, last],
            )
    _insert_mentions(db, rows)


def _insert_mentions(db: Database, rows: Iterable[MentionRow]) -> None:
    db.conn.executemany(
        "INSERT OR REPLACE INTO mentions (watch_id, item_id, published_at, terms)"
        " VALUES (?, ?, ?, ?)",
        ((w, i, at, json.dumps(list(terms), ensure_ascii=False)) for w, i, at, terms in rows),
    )


def _rows(matches: Mapping[int, ItemMatches], watches: Collection[int]) -> list[MentionRow]:
    return [
        (watch_id, item_id, mentioned_at, terms)
        for item_id, (mentioned_at, found) in matches.items()
        for watch_id, terms in found.items()
        if watch_id in watches
    ]


def _watch_row(row: Sequence[Any]) -> WatchRow:
    return WatchRow(
        id=row[0],
        name=row[1],
        kind=row[2],
        query=row[3],
        tags=tuple(json.loads(row[4])),
        origin=row[5],
        revision=row[6],
        matched_through=row[7],
        added_at=from_db_time(row[8]) or NEVER,
        updated_at=from_db_time(row[9]) or NEVER,
        mention_count=row[10],
        last_mention_at=from_db_time(row[11]),
    )
