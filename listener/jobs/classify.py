"""Wiring of the classifier: a poll's new and changed items, and the backfill of the stored
items a model has not classified yet (`listener reclassify`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from listener.classify.decision import Classifier, Prediction, item_text
from listener.domain import Item
from listener.store import Store

log = structlog.get_logger(__name__)


def classify_items(classifier: Classifier, items: Sequence[Item]) -> dict[str, Prediction]:
    """Predictions for items, by item key (one batch: the model is fastest on many texts)."""
    predictions = predict_items(classifier, items)
    return {item.key: prediction for item, prediction in zip(items, predictions, strict=True)}


def predict_items(classifier: Classifier, items: Sequence[Item]) -> list[Prediction]:
    """One prediction per item, in order (a poll classifies many feeds' items in one call)."""
    if not items:
        return []
    return classifier.predict([item_text(item.title, item.summary) for item in items])


def reclassify_items(
    store: Store,
    classifier: Classifier,
    *,
    since: datetime | None,
    now: datetime,
    batch_size: int,
    on_batch: Callable[[int], object] = lambda count: None,
) -> int:
    """Backfill: classify, batch by batch, the items this model has not classified yet.

    Each batch is one transaction, so an interrupted run resumes where it stopped.
    """
    done = 0
    after_id = 0
    while rows := store.items_to_classify(
        classifier.version, since=since, after_id=after_id, limit=batch_size
    ):
        predictions = classifier.predict([item_text(title, summary) for _, title, summary in rows])
        store.save_predictions(
            classifier.version,
            [(row[0], p) for row, p in zip(rows, predictions, strict=True)],
            now,
        )
        after_id = rows[-1][0]
        done += len(rows)
        on_batch(len(rows))
    log.info("items_reclassified", model_version=classifier.version, items=done)
    return done
