"""I/O: `listener stats`' counts, read with the digest's own SQL (`_period`), so a day's
figures are the ones that day's digest shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from listener.store._base import StoreBase, wrap_errors
from listener.store._period import EFFECTIVE_LABEL_PAIRS, PERIOD_CTE, TAG_FILTER, window_params

# Pseudo-labels of the counts that are not a function's.
TOTAL = "(items)"
UNCERTAIN = "(uncertain)"

_FEED_COUNTS_SQL = (
    PERIOD_CTE
    + f"""
    SELECT items.feed_id, effective.label, count(*)
    FROM ({EFFECTIVE_LABEL_PAIRS}) AS effective JOIN items ON items.id = effective.id
    GROUP BY items.feed_id, effective.label
    UNION ALL
    SELECT items.feed_id, '{TOTAL}', count(*)
    FROM period JOIN items ON items.id = period.id GROUP BY items.feed_id
    UNION ALL
    SELECT items.feed_id, '{UNCERTAIN}', count(*)
    FROM period JOIN items ON items.id = period.id
    JOIN predictions ON predictions.item_id = period.id
        AND predictions.model_version = period.version AND predictions.uncertain = 1
    WHERE NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = period.id)
    GROUP BY items.feed_id
"""
)


class StatsMixin(StoreBase):
    def feed_label_counts(
        self, start: datetime, end: datetime, tags: Sequence[str]
    ) -> dict[int, dict[str, int]]:
        """feed id -> effective label (or TOTAL, UNCERTAIN) -> items, for the items a digest
        of [start, end) reads: first seen then, not older than a week, from feeds with one of
        `tags` (every feed when empty). An item with two labels counts for both."""
        params = window_params(start, end, tags)
        sql = _FEED_COUNTS_SQL.format(tag_filter=TAG_FILTER if tags else "")
        counts: dict[int, dict[str, int]] = {}
        with wrap_errors("counting items per feed and function"):
            for feed_id, label, n in self.db.execute(sql, params).fetchall():
                counts.setdefault(int(feed_id), {})[str(label)] = int(n)
        return counts
