"""I/O: the digests' side of the store: what a digest shows (the period's items with their
effective labels and latest scores, label counts), and the exactly-once row of each
(recipient, day). Decides nothing: which period is due is `digest.periods`' business."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from listener.domain import DigestItem
from listener.store._base import NEVER, StoreBase, from_db_time, to_db_time, wrap_errors
from listener.store._claims import claim_row, mark_row_sent, release_row, row_attempts
from listener.store._period import (
    EFFECTIVE_LABEL_PAIRS,
    IDS_CTE,
    PERIOD_CTE,
    TAG_FILTER,
    window_params,
)

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
_ITEMS_SQL = PERIOD_CTE + _ITEMS_SELECT
# The same rows for chosen items (an alert's top mentions).
_ITEMS_BY_ID_SQL = IDS_CTE + _ITEMS_SELECT
_COUNTS_SQL = PERIOD_CTE + f"SELECT label, count(*) FROM ({EFFECTIVE_LABEL_PAIRS}) GROUP BY label"


class DigestsMixin(StoreBase):
    # -- what a digest shows ---------------------------------------------------------------

    def digest_items(self, start: datetime, end: datetime, tags: Sequence[str]) -> list[DigestItem]:
        """Items first seen in [start, end) and not older than a week, from feeds with one of
        `tags` (every feed when empty), with their effective labels and latest scores."""
        params = window_params(start, end, tags)
        sql = _ITEMS_SQL.format(tag_filter=TAG_FILTER if tags else "")
        with wrap_errors("reading the digest's items"):
            return _digest_items(self.db.execute(sql, params))

    def digest_items_by_id(self, item_ids: Sequence[int]) -> list[DigestItem]:
        """These items as digest_items reads them, by id."""
        with wrap_errors("reading items"):
            return _digest_items(
                self.db.execute(_ITEMS_BY_ID_SQL, {"ids": json.dumps(list(item_ids))})
            )

    def label_counts(self, start: datetime, end: datetime, tags: Sequence[str]) -> dict[str, int]:
        """Items per effective label in a window, counted as digest_items selects them."""
        params = window_params(start, end, tags)
        sql = _COUNTS_SQL.format(tag_filter=TAG_FILTER if tags else "")
        with wrap_errors("counting labels"):
            return {label: int(n) for label, n in self.db.execute(sql, params).fetchall()}

    def first_added_at(self, tags: Sequence[str]) -> datetime | None:
        """When the first of the feeds with one of `tags` (every feed when empty) was added."""
        sql = "SELECT min(added_at) FROM feeds WHERE 1 " + (TAG_FILTER if tags else "")
        with wrap_errors("reading feeds"):
            value = self.db.execute(sql, {"tags": json.dumps(list(tags))}).fetchone()[0]
        return from_db_time(value) if value else None

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
        by a live sender, or waiting for its next retry (_claims.claim_row)."""
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

    def last_digest_end(self, recipient: str, before_day: str) -> datetime | None:
        """The end of the period the recipient's latest sent digest before `before_day`
        covered (None: never sent one)."""
        with wrap_errors("reading digests"):
            row = self.db.execute(
                "SELECT period_end FROM digests WHERE recipient = ? AND day < ?"
                " AND sent_at IS NOT NULL ORDER BY day DESC LIMIT 1",
                [recipient, before_day],
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


def _digest_items(rows: Iterable[tuple[Any, ...]]) -> list[DigestItem]:
    """DigestItems from _ITEMS_SELECT's rows, in its column order."""
    # A busy day has ~16,000 items but ~1,000 feeds and a few label lists: each distinct
    # JSON text is parsed once (the per-row json.loads and dicts took ~0.1 s of a digest).
    lists: dict[str, tuple[str, ...]] = {}

    def parse_list(text: str) -> tuple[str, ...]:
        parsed = lists.get(text)
        if parsed is None:
            parsed = lists[text] = tuple(json.loads(text))
        return parsed

    items = []
    for (
        item_id,
        title,
        url,
        summary,
        feed_title,
        feed_url,
        feed_tags,
        published_at,
        fetched_at,
        lang,
        scores,
        uncertain_flag,
        human_labels,
        model_labels,
    ) in rows:
        human = parse_list(human_labels)
        uncertain = bool(uncertain_flag) and not human
        items.append(
            DigestItem(
                item_id=item_id,
                title=title,
                url=url,
                summary=summary,
                feed_title=feed_title,
                feed_url=feed_url,
                feed_tags=parse_list(feed_tags),
                published_at=from_db_time(published_at) or NEVER,
                fetched_at=from_db_time(fetched_at) or NEVER,
                lang=lang,
                labels=human or (() if uncertain else parse_list(model_labels)),
                scores=json.loads(scores) if scores else {},
                uncertain=uncertain,
                corrected=bool(human),
            )
        )
    return items
