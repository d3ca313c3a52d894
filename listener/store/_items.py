"""I/O: the items table and its full-text index, read back: search, export, counts, and
item ids and content hashes by key. (A poll writes items through `_poll`.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from listener.domain import ItemFilter
from listener.errors import QuerySyntaxError
from listener.store._base import (
    CHUNK,
    StoreBase,
    from_db_time,
    item_values_by_key,
    to_db_time,
    wrap_errors,
)
from listener.store._period import MODEL_VERSION


class ItemsMixin(StoreBase):
    def known_hashes(self, feed_id: int, keys: Iterable[str]) -> dict[str, str]:
        """content_hash of the stored items among `keys`."""
        return item_values_by_key(self.db, "content_hash", keys)

    def item_ids_for_keys(self, keys: Sequence[str]) -> dict[str, int]:
        return item_values_by_key(self.db, "id", keys)

    def search(
        self,
        fts_query: str,
        item_filter: ItemFilter | None = None,
        *,
        limit: int = 20,
        order: str = "best",
    ) -> list[dict[str, Any]]:
        """Full-text search over title + summary; rows best (bm25) or newest first, each with
        its labels, scores, model version and watches (see `_labelled_row`)."""
        item_filter = item_filter or ItemFilter()
        where = ["items_fts MATCH :query"]
        params: dict[str, Any] = {"query": fts_query, "limit": limit}
        _add_filters(where, params, item_filter)
        order_by = "base.rank" if order == "best" else "base.published_at DESC"
        sql = f"""
            SELECT base.*, {_LABEL_COLUMNS} FROM (
                SELECT items.id, items.published_at, feeds.url AS feed_url,
                       feeds.title AS feed_title, items.title, items.url, items.lang,
                       snippet(items_fts, -1, '[', ']', '…', 16) AS snippet,
                       bm25(items_fts, 5.0, 1.0) AS rank, {_VERSION} AS model_version
                FROM items_fts
                JOIN items ON items.id = items_fts.rowid
                JOIN feeds ON feeds.id = items.feed_id
                WHERE {" AND ".join(where)}
            ) AS base {_PREDICTION_JOIN}
            WHERE {_label_filters(params, item_filter)}
            ORDER BY {order_by}, base.id DESC
            LIMIT :limit
        """
        with wrap_errors("searching"):
            try:
                return [_labelled_row(row) for row in self.db.query(sql, params)]
            except sqlite3.OperationalError as exc:
                if any(word in str(exc) for word in ("locked", "busy", "readonly", "open")):
                    raise
                # FTS5 reports query syntax problems as OperationalError too.
                raise QuerySyntaxError(f"malformed search query: {exc}", fts_query) from exc

    def iter_items(self, item_filter: ItemFilter | None = None) -> Iterator[dict[str, Any]]:
        """Every item, oldest first, streamed row by row (bounded memory on any size), with
        its labels, scores, model version and watches (see `_labelled_row`)."""
        item_filter = item_filter or ItemFilter()
        where = ["1"]
        params: dict[str, Any] = {}
        _add_filters(where, params, item_filter)
        sql = f"""
            SELECT base.*, {_LABEL_COLUMNS} FROM (
                SELECT items.id, items.key, feeds.url AS feed_url, feeds.title AS feed_title,
                       items.guid, items.url, items.title, items.summary, items.author,
                       items.published_at, items.fetched_at, items.lang,
                       {_VERSION} AS model_version
                FROM items JOIN feeds ON feeds.id = items.feed_id
                WHERE {" AND ".join(where)}
            ) AS base {_PREDICTION_JOIN}
            WHERE {_label_filters(params, item_filter)}
            ORDER BY base.published_at, base.id
        """
        with wrap_errors("exporting"):
            for row in self.db.query(sql, params):
                yield _labelled_row(row)

    def counts(self) -> dict[str, int]:
        with wrap_errors("counting"):
            return {
                table: int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("feeds", "items", "polls")
            }

    def first_fetched_at(self) -> datetime | None:
        """When the oldest stored item was first seen: how far the history goes back."""
        with wrap_errors("reading items"):
            value = self.db.execute("SELECT min(fetched_at) FROM items").fetchone()[0]
        return from_db_time(value) if value else None

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


# The model version whose prediction counts for an item: the most recently used model that
# classified it (as the digest reads it).
_VERSION = MODEL_VERSION.format(item_id="items.id")
_PREDICTION_JOIN = """LEFT JOIN predictions ON predictions.item_id = base.id
    AND predictions.model_version = base.model_version"""
_HUMAN = "EXISTS (SELECT 1 FROM labels WHERE labels.item_id = base.id)"
_LABEL_COLUMNS = """
    (SELECT json_group_array(label) FROM
        (SELECT label FROM labels WHERE labels.item_id = base.id ORDER BY rank)
    ) AS human_labels,
    (SELECT json_group_array(label) FROM
        (SELECT label FROM classifications WHERE classifications.item_id = base.id
           AND classifications.model_version = base.model_version ORDER BY rank)
    ) AS model_labels,
    predictions.scores, predictions.uncertain,
    (SELECT json_group_array(name) FROM
        (SELECT watches.name FROM mentions JOIN watches ON watches.id = mentions.watch_id
         WHERE mentions.item_id = base.id ORDER BY watches.name)
    ) AS watches
"""


def _label_filters(params: dict[str, Any], item_filter: ItemFilter) -> str:
    """The WHERE clause over `base` and its `predictions` row for the label options: the
    effective labels (a person's, else the confident model's), or for uncertain items the
    model's best guess."""
    where = ["1"]
    functions = "(SELECT value FROM json_each(:functions))"
    params["functions"] = json.dumps(list(item_filter.functions))
    params["min_score"] = item_filter.min_score
    if item_filter.uncertain:
        where.append(f"predictions.uncertain = 1 AND NOT {_HUMAN}")
        guess = (
            "(SELECT {column} FROM json_each(predictions.scores)"
            " ORDER BY json_each.value DESC, json_each.key LIMIT 1)"
        )
        if item_filter.functions:
            where.append(f"{guess.format(column='key')} IN {functions}")
        if item_filter.min_score is not None:
            where.append(f"{guess.format(column='value')} >= :min_score")
        return " AND ".join(where)
    if not item_filter.functions and item_filter.min_score is None:
        return "1"
    label_in = f"label IN {functions}" if item_filter.functions else "1"
    score_at_least = "1" if item_filter.min_score is None else "score >= :min_score"
    human_score = "1" if item_filter.min_score is None else "1.0 >= :min_score"
    where.append(
        f"""(EXISTS (SELECT 1 FROM labels WHERE labels.item_id = base.id
                     AND {label_in} AND {human_score})
             OR (NOT {_HUMAN} AND predictions.uncertain = 0
                 AND EXISTS (SELECT 1 FROM classifications
                             WHERE classifications.item_id = base.id
                               AND classifications.model_version = base.model_version
                               AND {label_in} AND {score_at_least})))"""
    )
    return " AND ".join(where)


def _labelled_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row read with `_LABEL_COLUMNS`, decoded: `labels` (the effective ones, best first),
    `label_source` (`human`, `model` or None), `scores` (the model's, per label),
    `uncertain` (None when a person labelled it or no model has), `model_version`,
    `watches` (the names of the watches that mention it)."""
    human = json.loads(row.pop("human_labels"))
    model = json.loads(row.pop("model_labels"))
    uncertain = row.pop("uncertain")
    scores = row.pop("scores")
    row.pop("rank", None)
    row["labels"] = human or ([] if uncertain else model)
    row["label_source"] = "human" if human else ("model" if row["labels"] else None)
    row["uncertain"] = None if human or uncertain is None else bool(uncertain)
    row["scores"] = json.loads(scores) if scores else {}
    row["watches"] = json.loads(row.pop("watches"))
    return row


def _add_filters(where: list[str], params: dict[str, Any], item_filter: ItemFilter) -> None:
    since, feed_url, tag, watch = (
        item_filter.since,
        item_filter.feed_url,
        item_filter.tag,
        item_filter.watch,
    )
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
