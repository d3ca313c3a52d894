"""I/O: the digest and daemon side of the store: what a digest shows, the exactly-once claim
on each (recipient, day), the daemon's heartbeat, and maintenance.

Mixed into `store.Store`. Decides nothing: which period is due is `digest.periods`' business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from listener.domain import DigestItem
from listener.store_base import from_db_time, to_db_time, wrap_errors
from listener.store_claims import claim_row, mark_row_sent, release_row, row_attempts

# How far back an item's own date may be and still count as news when first seen: a new
# feed's archive is not yesterday's news.
MAX_ITEM_AGE = timedelta(days=7)
_NEVER = datetime.min.replace(tzinfo=UTC)  # NOT NULL columns: never used

# The period's items first (an index range on fetched_at), each with the model version whose
# prediction counts for it (the most recently used model that classified it); labels are read
# for those items only. Going through the item_labels view instead made SQLite build the view
# over the whole database for every query (seconds at a million items).
_VERSION = """(SELECT predictions.model_version FROM predictions
                JOIN models ON models.version = predictions.model_version
                WHERE predictions.item_id = {item_id}
                ORDER BY models.last_used_at DESC LIMIT 1)"""
_PERIOD_CTE = f"""
    WITH period AS MATERIALIZED (
        SELECT items.id, {_VERSION.format(item_id="items.id")} AS version
        FROM items JOIN feeds ON feeds.id = items.feed_id
        WHERE items.fetched_at >= :start AND items.fetched_at < :end
          AND items.published_at >= :oldest {{tag_filter}}
    )
"""
# The same for chosen items, given as a JSON array in :ids.
IDS_CTE = f"""
    WITH period AS MATERIALIZED (
        SELECT value AS id, {_VERSION.format(item_id="value")} AS version
        FROM json_each(:ids)
    )
"""
# The digest shows a few lines of each summary: reading whole summaries of a busy day held
# a hundred MB for nothing.
_ITEMS_SELECT = """
    SELECT items.id, items.title, items.url, substr(items.summary, 1, 600) AS summary,
           feeds.title AS feed_title, feeds.url AS feed_url, feeds.tags AS feed_tags,
           items.published_at, items.fetched_at, items.lang,
           predictions.scores, predictions.uncertain,
           (SELECT json_group_array(label) FROM
               (SELECT label FROM labels WHERE labels.item_id = period.id ORDER BY rank)
           ) AS human_labels,
           (SELECT json_group_array(label) FROM
               (SELECT label FROM classifications
                WHERE classifications.item_id = period.id
                  AND classifications.model_version = period.version ORDER BY rank)
           ) AS model_labels
    FROM period
    JOIN items ON items.id = period.id
    JOIN feeds ON feeds.id = items.feed_id
    LEFT JOIN predictions ON predictions.item_id = period.id
        AND predictions.model_version = period.version
    ORDER BY items.id
"""
_ITEMS_SQL = _PERIOD_CTE + _ITEMS_SELECT
# The same rows for chosen items (an alert's top mentions).
_ITEMS_BY_ID_SQL = IDS_CTE + _ITEMS_SELECT
# Effective labels as item_labels defines them: a person's, else a confident model's.
# (item id, label, rank, source) of the period's items: a person's labels (source 0), else
# those of the model that counts, when it was confident (source 1).
EFFECTIVE_LABELS = """
    SELECT period.id, labels.label, labels.rank, 0 AS source
    FROM period JOIN labels ON labels.item_id = period.id
    UNION ALL
    SELECT period.id, classifications.label, classifications.rank, 1 AS source FROM period
    JOIN predictions ON predictions.item_id = period.id
        AND predictions.model_version = period.version AND predictions.uncertain = 0
    JOIN classifications ON classifications.item_id = period.id
        AND classifications.model_version = period.version
    WHERE NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = period.id)
"""
_COUNTS_SQL = _PERIOD_CTE + f"SELECT label, count(*) FROM ({EFFECTIVE_LABELS}) GROUP BY label"
TAG_FILTER = (
    "AND EXISTS (SELECT 1 FROM json_each(feeds.tags) WHERE json_each.value IN "
    "(SELECT value FROM json_each(:tags)))"
)


def window_params(start: datetime, end: datetime, tags: Sequence[str]) -> dict[str, Any]:
    """The parameters of the queries that select a digest period's items."""
    return {
        "start": to_db_time(start),
        "end": to_db_time(end),
        "oldest": to_db_time(start - MAX_ITEM_AGE),
        "tags": json.dumps(list(tags)),
    }


class DigestMixin:
    db: Database

    # -- what a digest shows ---------------------------------------------------------------

    def digest_items(self, start: datetime, end: datetime, tags: Sequence[str]) -> list[DigestItem]:
        """Items first seen in [start, end) and not older than a week, from feeds with one of
        `tags` (every feed when empty), with their effective labels and latest scores."""
        params = self._window(start, end, tags)
        sql = _ITEMS_SQL.format(tag_filter=TAG_FILTER if tags else "")
        with wrap_errors("reading the digest's items"):
            return [_digest_item(row) for row in self.db.query(sql, params)]

    def digest_items_by_id(self, item_ids: Sequence[int]) -> list[DigestItem]:
        """These items as digest_items reads them, by id."""
        with wrap_errors("reading items"):
            rows = self.db.query(_ITEMS_BY_ID_SQL, {"ids": json.dumps(list(item_ids))})
            return [_digest_item(row) for row in rows]

    def label_counts(self, start: datetime, end: datetime, tags: Sequence[str]) -> dict[str, int]:
        """Items per effective label in a window, counted as digest_items selects them."""
        params = self._window(start, end, tags)
        sql = _COUNTS_SQL.format(tag_filter=TAG_FILTER if tags else "")
        with wrap_errors("counting labels"):
            return {label: int(n) for label, n in self.db.execute(sql, params).fetchall()}

    @staticmethod
    def _window(start: datetime, end: datetime, tags: Sequence[str]) -> dict[str, Any]:
        return window_params(start, end, tags)

    # -- exactly once ----------------------------------------------------------------------

    def claim_digest(
        self,
        recipient: str,
        day: str,
        *,
        period: tuple[datetime, datetime],
        now: datetime,
        stale_before: datetime,
    ) -> str | None:
        """Claim (recipient, day) for sending; the claim id, or None when it is sent, claimed
        by a live sender, or waiting for its next retry (store_claims.claim_row)."""
        return claim_row(
            self.db,
            "digests",
            {"recipient": recipient, "day": day},
            columns={"period_start": to_db_time(period[0]), "period_end": to_db_time(period[1])},
            now=now,
            stale_before=stale_before,
        )

    def mark_digest_sent(
        self,
        recipient: str,
        day: str,
        claim_id: str,
        *,
        now: datetime,
        item_count: int,
        message_id: str | None,
        delivery: str,
    ) -> None:
        mark_row_sent(
            self.db,
            "digests",
            {"recipient": recipient, "day": day},
            claim_id,
            now=now,
            message_id=message_id,
            delivery=delivery,
            extra={"item_count": item_count},
        )

    def release_digest(
        self, recipient: str, day: str, claim_id: str, *, error: str, retry_at: datetime
    ) -> int:
        """A failed send gives the claim back, to be retried at `retry_at`; the attempts."""
        keys = {"recipient": recipient, "day": day}
        return release_row(self.db, "digests", keys, claim_id, error=error, retry_at=retry_at)

    def digest_sent_at(self, recipient: str, day: str) -> datetime | None:
        with wrap_errors("reading digests"):
            row = self.db.execute(
                "SELECT sent_at FROM digests WHERE recipient = ? AND day = ?", [recipient, day]
            ).fetchone()
        return from_db_time(row[0]) if row else None

    def digest_attempts(self, recipient: str, day: str) -> int:
        return row_attempts(self.db, "digests", {"recipient": recipient, "day": day})

    def recent_digests(self, limit: int = 10) -> list[dict[str, Any]]:
        with wrap_errors("reading digests"):
            return list(
                self.db.query(
                    "SELECT recipient, day, sent_at, item_count, delivery, attempts, last_error,"
                    " next_attempt_at FROM digests ORDER BY day DESC, recipient LIMIT ?",
                    [limit],
                )
            )

    # -- the daemon ------------------------------------------------------------------------

    def record_heartbeat(
        self,
        *,
        pid: int,
        host: str,
        version: str,
        started_at: datetime,
        now: datetime,
        next_runs: Mapping[str, datetime | None],
    ) -> None:
        runs = {name: to_db_time(at) if at else None for name, at in next_runs.items()}
        with wrap_errors("writing the heartbeat"), self.db.atomic():
            self.db.execute(
                "INSERT INTO daemon (id, pid, host, version, started_at, heartbeat_at,"
                " stopped_at, next_runs) VALUES (1, ?, ?, ?, ?, ?, NULL, ?)"
                " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host,"
                " version = excluded.version, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,"
                " next_runs = excluded.next_runs",
                [pid, host, version, to_db_time(started_at), to_db_time(now), json.dumps(runs)],
            )

    def record_daemon_stopped(self, pid: int, now: datetime) -> None:
        with wrap_errors("recording the daemon's stop"), self.db.atomic():
            self.db.execute(
                "UPDATE daemon SET stopped_at = ? WHERE id = 1 AND pid = ?", [to_db_time(now), pid]
            )

    def daemon_state(self) -> dict[str, Any] | None:
        with wrap_errors("reading the daemon state"):
            rows = list(self.db.query("SELECT * FROM daemon WHERE id = 1"))
        return rows[0] if rows else None

    # -- maintenance -----------------------------------------------------------------------

    def run_maintenance(self, *, polls_before: datetime) -> dict[str, int]:
        """Drop old polls rows, optimise the full-text index and the query planner's stats."""
        with wrap_errors("maintenance"):
            with self.db.atomic():
                deleted = self.db.execute(
                    "DELETE FROM polls WHERE started_at < ?", [to_db_time(polls_before)]
                ).rowcount
                self.db.execute("INSERT INTO items_fts(items_fts) VALUES ('optimize')")
            self.db.execute("PRAGMA optimize")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"polls_deleted": deleted}


def _digest_item(row: Mapping[str, Any]) -> DigestItem:
    human = json.loads(row["human_labels"])
    scores = json.loads(row["scores"]) if row["scores"] else {}
    uncertain = bool(row["uncertain"]) and not human
    labels = human or ([] if uncertain else json.loads(row["model_labels"]))
    return DigestItem(
        item_id=row["id"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        feed_title=row["feed_title"],
        feed_url=row["feed_url"],
        feed_tags=tuple(json.loads(row["feed_tags"])),
        published_at=from_db_time(row["published_at"]) or _NEVER,
        fetched_at=from_db_time(row["fetched_at"]) or _NEVER,
        lang=row["lang"],
        labels=tuple(labels),
        scores=scores,
        uncertain=uncertain,
    )
