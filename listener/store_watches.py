"""I/O: watches, their mentions, spike episodes and alert claims. Mixed into `store.Store`.

Decides nothing: what matches is `watches.matcher`'s business, what is a spike `watches.spikes`'s.
Every write that adds mentions also moves the watch's cursor (`matched_through`) in the same
transaction, and only when the watch's revision is still the one that was matched, so a
query changed meanwhile never gets mentions of its old text.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from listener.domain import Terms, Watch
from listener.store_base import CHUNK, from_db_time, to_db_time, wrap_errors
from listener.store_claims import claim_row, mark_row_sent, release_row, row_attempts
from listener.store_digest import EFFECTIVE_LABELS, IDS_CTE, TAG_FILTER, window_params

# (watch id, revision matched, cursor the batch starts after, last item id of the batch)
Cursor = tuple[int, int, int, int]
# (watch id, item id, mention time as stored, matched terms)
MentionRow = tuple[int, int, str, Terms]
# (mention time as stored, watch id -> terms) for one item
ItemMatches = tuple[str, Mapping[int, Terms]]


@dataclass(frozen=True, slots=True)
class WatchRow:
    id: int
    name: str
    kind: str
    query: str
    tags: tuple[str, ...]
    origin: str  # config | cli
    revision: int
    matched_through: int
    added_at: datetime
    updated_at: datetime
    mention_count: int
    last_mention_at: datetime | None

    def watch(self) -> Watch:
        return Watch(name=self.name, query=self.query, kind=self.kind, tags=self.tags)


@dataclass(frozen=True, slots=True)
class MatchRow:
    """An item as matching reads it."""

    id: int
    title: str
    summary: str
    mentioned_at: str  # min(published_at, fetched_at), as stored
    feed_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpikeRow:
    id: int
    watch_id: int
    function: str
    started_at: datetime
    count: int
    peak_count: int
    baseline_mean: float
    baseline_sd: float


# Mentions of the items a digest period shows, as digest_items selects them.
_PERIOD_MENTIONS = """
    SELECT {columns}
    FROM items JOIN feeds ON feeds.id = items.feed_id
    JOIN mentions ON mentions.item_id = items.id
    JOIN watches ON watches.id = mentions.watch_id
    WHERE items.fetched_at >= :start AND items.fetched_at < :end
      AND items.published_at >= :oldest {tag_filter}
"""


class WatchesMixin:
    db: Database

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
        with wrap_errors("saving a watch"), self.db.atomic():
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
        with wrap_errors("removing a watch"), self.db.atomic():
            return self.db.execute("DELETE FROM watches WHERE name = ?", [name]).rowcount > 0

    def remove_config_watches(self, keep: Collection[str]) -> list[str]:
        """Delete the watches that came from the config file and are no longer in it."""
        with wrap_errors("removing watches"), self.db.atomic():
            gone = [
                name
                for (name,) in self.db.execute("SELECT name FROM watches WHERE origin = 'config'")
                if name not in keep
            ]
            for name in gone:
                self.db.execute("DELETE FROM watches WHERE name = ?", [name])
        return gone

    # -- matching --------------------------------------------------------------------------

    def max_item_id(self) -> int:
        with wrap_errors("reading items"):
            return int(self.db.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0])

    def count_items_after(self, after_id: int) -> int:
        with wrap_errors("counting items"):
            return int(
                self.db.execute("SELECT count(*) FROM items WHERE id > ?", [after_id]).fetchone()[0]
            )

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
                row[3],
                tags.get(row[4]) or tags.setdefault(row[4], tuple(json.loads(row[4]))),
            )
            for row in rows
        ]

    def save_matches(self, cursors: Sequence[Cursor], mentions: Iterable[MentionRow]) -> int:
        """One backfill batch in one transaction: the mentions of the watches whose revision
        and cursor are still those the batch started from, and their cursors moved on.
        The watches that actually moved."""
        moved: set[int] = set()
        with wrap_errors("saving mentions"), self.db.atomic():
            for watch_id, revision, after, last in cursors:
                # A write first: it takes the write lock before anything is read.
                updated = self.db.execute(
                    "UPDATE watches SET matched_through = ? WHERE id = ? AND revision = ?"
                    " AND matched_through >= ? AND matched_through < ?",
                    [last, watch_id, revision, after, last],
                ).rowcount
                if updated:
                    moved.add(watch_id)
            self._insert_mentions(row for row in mentions if row[0] in moved)
        return len(moved)

    def save_poll_mentions(
        self,
        revisions: Mapping[int, int],
        new: Mapping[int, ItemMatches],
        changed: Mapping[int, ItemMatches],
    ) -> None:
        """Inside save_poll's transaction, after its item writes: the mentions of the items
        it stored (item id -> (mention time, watch id -> terms)).

        Changed items are matched again for every watch still at the revision matched. New
        items count for a watch only when its cursor had reached them (a watch added or
        changed during the poll is left to its backfill), and move that cursor past them.
        """
        current = {
            row[0]: (row[1], row[2])
            for row in self.db.execute("SELECT id, revision, matched_through FROM watches")
        }
        valid = {w for w, rev in revisions.items() if w in current and current[w][0] == rev}
        rows: list[MentionRow] = []
        if changed and valid:
            ids = list(changed)
            marks = ",".join("?" * len(valid))
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                self.db.execute(
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
                self.db.execute(
                    f"UPDATE watches SET matched_through = ? WHERE id IN ({marks})"
                    " AND matched_through < ?",
                    [last, *caught_up, last],
                )
        self._insert_mentions(rows)

    def _insert_mentions(self, rows: Iterable[MentionRow]) -> None:
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO mentions (watch_id, item_id, published_at, terms)"
            " VALUES (?, ?, ?, ?)",
            ((w, i, at, json.dumps(list(terms), ensure_ascii=False)) for w, i, at, terms in rows),
        )

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
    ) -> list[tuple[int, datetime, Terms]]:
        """(item id, mention time, terms) of a watch's mentions in [start, end), from feeds
        added before `settled_before` (a feed's first poll brings its archive at once)."""
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
            (item_id, from_db_time(at) or _NEVER, tuple(json.loads(terms)))
            for item_id, at, terms in rows
        ]

    def effective_labels(self, item_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """item id -> the labels that count for it (item_labels' rule), best first."""
        found: dict[int, list[str]] = {}
        ids = list(item_ids)
        with wrap_errors("reading labels"):
            for start in range(0, len(ids), CHUNK):
                chunk = json.dumps(ids[start : start + CHUNK])
                for item_id, label in self.db.execute(_EFFECTIVE_LABELS, {"ids": chunk}):
                    found.setdefault(item_id, []).append(label)
        return {item_id: tuple(labels) for item_id, labels in found.items()}

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

    # -- spikes and alerts -----------------------------------------------------------------

    def open_spikes(self) -> dict[tuple[int, str], SpikeRow]:
        with wrap_errors("reading spikes"):
            rows = self.db.execute(
                "SELECT id, watch_id, function, started_at, count, peak_count, baseline_mean,"
                " baseline_sd FROM spikes WHERE ended_at IS NULL"
            ).fetchall()
        return {
            (row[1], row[2]): SpikeRow(
                row[0], row[1], row[2], from_db_time(row[3]) or _NEVER, *row[4:]
            )
            for row in rows
        }

    def record_spikes(
        self,
        *,
        opened: Sequence[tuple[int, str, int, float, float, float]],
        updated: Sequence[tuple[int, int]],
        closed: Sequence[int],
        now: datetime,
    ) -> int:
        """Open episodes (watch id, function, count, mean, sd, threshold), update the counts
        of open ones (id, count), close others; one transaction. The episodes opened (one
        already open for the same watch and function is left alone)."""
        stamp = to_db_time(now)
        with wrap_errors("recording spikes"), self.db.atomic():
            added = 0
            for watch_id, function, count, mean, sd, threshold in opened:
                added += self.db.execute(
                    "INSERT OR IGNORE INTO spikes (watch_id, function, started_at, count,"
                    " baseline_mean, baseline_sd, threshold, peak_count)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [watch_id, function, stamp, count, mean, sd, threshold, count],
                ).rowcount
            for spike_id, count in updated:
                self.db.execute(
                    "UPDATE spikes SET count = ?, peak_count = max(peak_count, ?) WHERE id = ?",
                    [count, count, spike_id],
                )
            for spike_id in closed:
                self.db.execute("UPDATE spikes SET ended_at = ? WHERE id = ?", [stamp, spike_id])
        return added

    def claim_alert(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        functions: Sequence[str],
        *,
        now: datetime,
        stale_before: datetime,
    ) -> str | None:
        """Claim one alert email for sending (store_claims.claim_row); None: not ours."""
        return claim_row(
            self.db,
            "alerts",
            _alert_keys(recipient, watch_id, opened_at),
            columns={"functions": json.dumps(list(functions))},
            now=now,
            stale_before=stale_before,
        )

    def mark_alert_sent(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        claim_id: str,
        *,
        now: datetime,
        message_id: str,
        delivery: str,
    ) -> None:
        keys = _alert_keys(recipient, watch_id, opened_at)
        mark_row_sent(
            self.db, "alerts", keys, claim_id, now=now, message_id=message_id, delivery=delivery
        )

    def release_alert(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        claim_id: str,
        *,
        error: str,
        retry_at: datetime,
    ) -> int:
        keys = _alert_keys(recipient, watch_id, opened_at)
        return release_row(self.db, "alerts", keys, claim_id, error=error, retry_at=retry_at)

    def alert_attempts(self, recipient: str, watch_id: int, opened_at: datetime) -> int:
        return row_attempts(self.db, "alerts", _alert_keys(recipient, watch_id, opened_at))

    def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        with wrap_errors("reading alerts"):
            return list(
                self.db.query(
                    "SELECT alerts.recipient, watches.name AS watch, alerts.opened_at,"
                    " alerts.functions, alerts.sent_at, alerts.delivery, alerts.attempts,"
                    " alerts.last_error FROM alerts JOIN watches ON watches.id = alerts.watch_id"
                    " ORDER BY alerts.opened_at DESC, watches.name, alerts.recipient LIMIT ?",
                    [limit],
                )
            )

    def recent_spikes(self, limit: int = 20) -> list[dict[str, Any]]:
        with wrap_errors("reading spikes"):
            return list(
                self.db.query(
                    "SELECT watches.name AS watch, spikes.* FROM spikes"
                    " JOIN watches ON watches.id = spikes.watch_id"
                    " ORDER BY spikes.ended_at IS NOT NULL, spikes.started_at DESC, spikes.id DESC"
                    " LIMIT ?",
                    [limit],
                )
            )


_NEVER = datetime.min.replace(tzinfo=UTC)

_EFFECTIVE_LABELS = (
    IDS_CTE + f"SELECT id, label FROM ({EFFECTIVE_LABELS}) ORDER BY id, source, rank"
)


def _rows(matches: Mapping[int, ItemMatches], watches: Collection[int]) -> list[MentionRow]:
    return [
        (watch_id, item_id, mentioned_at, terms)
        for item_id, (mentioned_at, found) in matches.items()
        for watch_id, terms in found.items()
        if watch_id in watches
    ]


def _alert_keys(recipient: str, watch_id: int, opened_at: datetime) -> dict[str, Any]:
    return {"recipient": recipient, "watch_id": watch_id, "opened_at": to_db_time(opened_at)}


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
        added_at=from_db_time(row[8]) or _NEVER,
        updated_at=from_db_time(row[9]) or _NEVER,
        mention_count=row[10],
        last_mention_at=from_db_time(row[11]),
    )
