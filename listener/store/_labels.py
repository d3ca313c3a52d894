"""I/O: the classification side of the store: predictions (and their labels), human
corrections, the models used, and the labels that count for an item."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from listener.domain import ScoredLabels
from listener.store._base import CHUNK, StoreBase, to_db_time, wrap_errors, write_transaction
from listener.store._period import EFFECTIVE_LABELS, IDS_CTE

# (item id, label) of chosen items, best first: a person's labels, else a confident model's.
_EFFECTIVE_LABELS_BY_ID = (
    IDS_CTE + f"SELECT id, label FROM ({EFFECTIVE_LABELS}) ORDER BY id, source, rank"
)

# Review candidates: uncertain predictions, and any whose best score is below this (two
# labels can both score 0.9: a close call that passed its thresholds).
REVIEW_BELOW_TOP_SCORE = 0.95


# A model's uncertain predictions that no second stage has re-scored and nobody has
# corrected (one ? for the model version), read through the partial index made for them
# (predictions_to_refine, migration m007): the job's batches and its count of what is
# left are the same rows.
_TO_REFINE = (
    "predictions.model_version = ? AND predictions.uncertain = 1"
    " AND predictions.refined_by IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = predictions.item_id)"
)


class LabelsMixin(StoreBase):
    def record_model(self, version: str, metadata: Mapping[str, Any], now: datetime) -> None:
        """Note that this model version is the one in use from `now` on."""
        stamp = to_db_time(now)
        with wrap_errors("recording the model"), write_transaction(self.db):
            self.db.execute(
                "INSERT INTO models (version, first_used_at, last_used_at, metadata)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(version) DO UPDATE SET"
                " last_used_at = excluded.last_used_at, metadata = excluded.metadata",
                [version, stamp, stamp, json.dumps(metadata, sort_keys=True)],
            )

    def save_predictions(
        self,
        model_version: str,
        predictions: Sequence[tuple[int, ScoredLabels]],
        now: datetime,
        *,
        refined_by: str | None = None,
    ) -> None:
        """Store (or replace) this model's predictions for these item ids; `refined_by`: the
        second stage that re-scored them."""
        if not predictions:
            return
        with wrap_errors("saving predictions"), write_transaction(self.db):
            insert_predictions(self.db, model_version, predictions, now, refined_by=refined_by)

    def items_to_classify(
        self, model_version: str, *, since: datetime | None, after_id: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """(id, title, summary) of items this model has not classified yet, by id."""
        sql = (
            "SELECT id, title, summary FROM items WHERE id > ? AND NOT EXISTS"
            " (SELECT 1 FROM predictions WHERE predictions.item_id = items.id"
            " AND predictions.model_version = ?)"
        )
        params: list[Any] = [after_id, model_version]
        if since is not None:
            sql += " AND published_at >= ?"
            params.append(to_db_time(since))
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        with wrap_errors("reading items"):
            return [(r[0], r[1], r[2]) for r in self.db.execute(sql, params)]

    def items_to_refine(self, model_version: str, limit: int) -> list[tuple[int, str, str]]:
        """(id, title, summary) of this model's uncertain predictions that no e5 stage has
        re-scored and nobody has corrected, newest items first. (Not their stored scores:
        the refine job blends with the linear model's own, recomputed from the text.)"""
        sql = (
            "SELECT predictions.item_id, items.title, items.summary"
            " FROM predictions INDEXED BY predictions_to_refine"
            f" JOIN items ON items.id = predictions.item_id WHERE {_TO_REFINE}"
            " ORDER BY predictions.item_id DESC LIMIT ?"
        )
        with wrap_errors("reading items to refine"):
            return [(r[0], r[1], r[2]) for r in self.db.execute(sql, [model_version, limit])]

    def count_to_refine(self, model_version: str) -> int:
        sql = (
            f"SELECT count(*) FROM predictions INDEXED BY predictions_to_refine WHERE {_TO_REFINE}"
        )
        with wrap_errors("counting items to refine"):
            return int(self.db.execute(sql, [model_version]).fetchone()[0])

    def count_to_classify(self, model_version: str, *, since: datetime | None) -> int:
        sql = (
            "SELECT count(*) FROM items WHERE NOT EXISTS (SELECT 1 FROM predictions WHERE"
            " predictions.item_id = items.id AND predictions.model_version = ?)"
        )
        params: list[Any] = [model_version]
        if since is not None:
            sql += " AND published_at >= ?"
            params.append(to_db_time(since))
        with wrap_errors("counting items"):
            return int(self.db.execute(sql, params).fetchone()[0])

    def set_labels(
        self, item_id: int, labels: Sequence[str], *, by: str | None, now: datetime
    ) -> None:
        """A person's labels for an item; they replace earlier corrections and always win."""
        with wrap_errors("saving labels"), write_transaction(self.db):
            self.db.execute("DELETE FROM labels WHERE item_id = ?", [item_id])
            self.db.conn.executemany(
                "INSERT INTO labels (item_id, label, rank, labelled_by, labelled_at)"
                " VALUES (?,?,?,?,?)",
                [(item_id, label, rank, by, to_db_time(now)) for rank, label in enumerate(labels)],
            )

    def clear_labels(self, item_id: int) -> bool:
        """Remove a person's labels for an item (the model's count again); False when it had
        none."""
        with wrap_errors("removing labels"), self.db.atomic():
            cursor = self.db.execute("DELETE FROM labels WHERE item_id = ?", [item_id])
            return cursor.rowcount > 0

    def review_items(self, limit: int) -> list[dict[str, Any]]:
        """Candidates for review, newest first: the current model's uncertain or close calls
        without a correction, with how many items of their feed people have corrected.
        `classify.rank_for_review` orders them."""
        sql = """
            WITH corrected AS (
                SELECT items.feed_id, count(DISTINCT labels.item_id) AS n
                FROM labels JOIN items ON items.id = labels.item_id
                GROUP BY items.feed_id
            )
            SELECT items.id, items.published_at, items.title, items.url, items.lang,
                   items.feed_id, predictions.scores, predictions.top_score,
                   predictions.uncertain, coalesce(corrected.n, 0) AS feed_corrections
            FROM predictions
            JOIN items ON items.id = predictions.item_id
            LEFT JOIN corrected ON corrected.feed_id = items.feed_id
            WHERE (predictions.uncertain = 1 OR predictions.top_score < ?)
              AND predictions.model_version = (
                  SELECT version FROM models ORDER BY last_used_at DESC LIMIT 1)
              AND NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = items.id)
            ORDER BY items.published_at DESC, items.id DESC
            LIMIT ?
        """
        with wrap_errors("reading items to review"):
            return list(self.db.query(sql, [REVIEW_BELOW_TOP_SCORE, limit]))

    def corrections(self) -> list[dict[str, Any]]:
        """Every human-labelled item, for training: title, summary, lang, labels."""
        sql = """
            SELECT items.id, items.title, items.summary, items.lang,
                   (SELECT group_concat(label, ';') FROM
                       (SELECT label FROM labels WHERE labels.item_id = items.id
                        ORDER BY rank)) AS labels
            FROM items WHERE EXISTS (SELECT 1 FROM labels WHERE labels.item_id = items.id)
            ORDER BY items.id
        """
        with wrap_errors("reading corrections"):
            return list(self.db.query(sql))

    def effective_labels(self, item_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """item id -> the labels that count for it (item_labels' rule), best first."""
        found: dict[int, list[str]] = {}
        ids = list(item_ids)
        with wrap_errors("reading labels"):
            for start in range(0, len(ids), CHUNK):
                chunk = json.dumps(ids[start : start + CHUNK])
                for item_id, label in self.db.execute(_EFFECTIVE_LABELS_BY_ID, {"ids": chunk}):
                    found.setdefault(item_id, []).append(label)
        return {item_id: tuple(labels) for item_id, labels in found.items()}


def insert_predictions(
    db: Database,
    model_version: str,
    predictions: Sequence[tuple[int, ScoredLabels]],
    now: datetime,
    *,
    refined_by: str | None = None,
) -> None:
    """(Re)write this model's predictions of these item ids, inside the caller's transaction
    (a replaced row loses its refined_by unless this write is the second stage's)."""
    stamp = to_db_time(now)
    conn = db.conn
    ids = [(item_id, model_version) for item_id, _ in predictions]
    conn.executemany("DELETE FROM classifications WHERE item_id = ? AND model_version = ?", ids)
    conn.executemany(
        "INSERT OR REPLACE INTO predictions (item_id, model_version, classified_at,"
        " uncertain, top_score, scores, refined_by) VALUES (?,?,?,?,?,?,?)",
        [
            (
                item_id,
                model_version,
                stamp,
                int(p.uncertain),
                max(p.scores.values(), default=0.0),
                json.dumps(dict(p.scores)),
                refined_by,
            )
            for item_id, p in predictions
        ],
    )
    conn.executemany(
        "INSERT INTO classifications (item_id, model_version, label, score, rank)"
        " VALUES (?,?,?,?,?)",
        [
            (item_id, model_version, label, p.scores.get(label, 0.0), rank)
            for item_id, p in predictions
            for rank, label in enumerate(p.labels)
        ],
    )
