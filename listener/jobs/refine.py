"""Wiring of the classifier's e5 stage (classify/refine.py): the current model's uncertain
predictions re-scored off the poll path, newest items first.

Polls stay fast: they store the poll path's prediction of every item (the linear model's,
blended with its static stage where it was unsure). This job (the daemon runs it after each
poll, `listener refine` once) embeds a bounded number of the items that prediction left
uncertain, and replaces each one's prediction by the blend of the sentence model's head with
the linear model's scores, a batch per transaction. A stop request is seen between batches
(about a second each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from listener.classify.decision import item_text
from listener.jobs.services import Services
from listener.store import Store

if TYPE_CHECKING:
    from listener.classify.decision import Classifier
    from listener.classify.embedding import SecondStage

log = structlog.get_logger(__name__)


def refine_job(services: Services, now: datetime) -> int:
    """The daemon's job: at most `classifier.refine_max_items` (`listener refine` calls
    refine_uncertain with its own limit)."""
    stage, classifier = services.second_stage, services.classifier
    if stage is None or classifier is None:
        return 0
    try:
        return refine_uncertain(
            services.store,
            classifier,
            stage,
            now=now,
            limit=services.settings.classifier.refine_max_items,
            stop=services.stop,
        )
    finally:
        stage.embedder.close()  # between runs the daemon holds none of its pages


def refine_uncertain(
    store: Store,
    classifier: Classifier,
    stage: SecondStage,
    *,
    now: datetime,
    limit: int,
    stop: threading.Event | None = None,
    on_batch: Callable[[int], object] = lambda count: None,
) -> int:
    """Re-score up to `limit` of this model's uncertain items; how many were re-scored. The
    sentence model's head blends with the linear model's scores, recomputed from the items'
    text (the stored ones include the poll path's static stage)."""
    from listener.classify.refine import EMBED_BATCH, refine_predictions, refine_text  # numpy

    model_version = classifier.version
    done = settled = 0
    while done < limit and not (stop is not None and stop.is_set()):
        rows = store.items_to_refine(model_version, min(EMBED_BATCH, limit - done))
        if not rows:
            break
        vectors = stage.embedder.embed([refine_text(title, summary) for _, title, summary in rows])
        linear = classifier.predict_linear(
            [item_text(title, summary) for _, title, summary in rows]
        )
        predictions = refine_predictions(
            stage.head, [p.scores for p in linear], vectors, stage.uncertain_below
        )
        store.save_predictions(
            model_version,
            [(row[0], p) for row, p in zip(rows, predictions, strict=True)],
            now,
            refined_by=stage.head.version,
        )
        done += len(rows)
        on_batch(len(rows))
        settled += sum(not p.uncertain for p in predictions)
    if done:
        log.info(
            "items_refined",
            model_version=model_version,
            second_stage=stage.head.version,
            items=done,
            now_certain=settled,
            left=store.count_to_refine(model_version),
        )
    return done
