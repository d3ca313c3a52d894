"""I/O: the SQL that selects a digest period's items (or chosen items), with the model
version whose prediction counts for each, and their effective labels. Shared by the digests,
the mentions and the labels modules, so they all select the same items."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from listener.store._base import to_db_time

# How far back an item's own date may be and still count as news when first seen: a new
# feed's archive is not yesterday's news.
MAX_ITEM_AGE = timedelta(days=7)

# The period's items first (an index range on fetched_at), each with the model version whose
# prediction counts for it (the most recently used model that classified it); labels are read
# for those items only. Going through the item_labels view instead made SQLite build the view
# over the whole database for every query (seconds at a million items).
# Models newest first (index models_last_used), each checked with one probe of predictions'
# primary key: the CROSS JOIN keeps SQLite from sorting every item's predictions instead.
MODEL_VERSION = """(SELECT models.version FROM models CROSS JOIN predictions
                ON predictions.item_id = {item_id} AND predictions.model_version = models.version
                ORDER BY models.last_used_at DESC LIMIT 1)"""
PERIOD_CTE = f"""
    WITH period AS MATERIALIZED (
        SELECT items.id, {MODEL_VERSION.format(item_id="items.id")} AS version
        FROM items JOIN feeds ON feeds.id = items.feed_id
        WHERE items.fetched_at >= :start AND items.fetched_at < :end
          AND items.published_at >= :oldest {{tag_filter}}
    )
"""
# The same for chosen items, given as a JSON array in :ids.
IDS_CTE = f"""
    WITH period AS MATERIALIZED (
        SELECT value AS id, {MODEL_VERSION.format(item_id="value")} AS version
        FROM json_each(:ids)
    )
"""
# Effective labels as item_labels defines them, of the period's items:
# a person's labels (source 0), else those of the model that counts, when it was confident
# (source 1).
_EFFECTIVE = """
    SELECT period.id, labels.label{human}
    FROM period JOIN labels ON labels.item_id = period.id
    UNION ALL
    SELECT period.id, classifications.label{model} FROM period
    JOIN predictions ON predictions.item_id = period.id
        AND predictions.model_version = period.version AND predictions.uncertain = 0
    JOIN classifications ON classifications.item_id = period.id
        AND classifications.model_version = period.version
    WHERE NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = period.id)
"""
# (item id, label, rank, source): to list each item's labels in order.
EFFECTIVE_LABELS = _EFFECTIVE.format(
    human=", labels.rank, 0 AS source", model=", classifications.rank, 1 AS source"
)
# (item id, label): to count them. Only primary-key columns, so SQLite reads the labels and
# classifications indexes and no table row (it reads the columns of a UNION ALL subquery
# whether the outer query uses them or not).
EFFECTIVE_LABEL_PAIRS = _EFFECTIVE.format(human="", model="")
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
