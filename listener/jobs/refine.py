"""Wiring of the classifier's second stage (classify/refine.py): the current model's
uncertain predictions re-scored off the poll path, newest items first.

Polls stay fast: they store the linear model's prediction of every item. This job (the
daemon runs it after each poll, `listener refine` once) embeds a bounded number of the items
that prediction left uncertain, and replaces each one's prediction by the two models' blend,
a batch per transaction. A stop request is seen between batches (about a second each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from listener.jobs.services import Services
from listener.store import Store

if TYPE_CHECKING:
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
            classifier.version,
            stage,
            now=now,
            limit=services.settings.classifier.refine_max_items,
            stop=services.stop,
        )
    finally:
        stage.embedder.close()  # between runs the daemon holds none of its pages


def refine_uncertain(
    store: Store,
    model_version: str,
    stage: SecondStage,
    *,
    now: datetime,
    limit: int,
    stop: threading.Event | None = None,
    on_batch: Callable[[int], object] = lambda count: None,
) -> int:
    """Re-score up to `limit` of this model's uncertain items; how many were re-scored."""
    from listener.classify.refine import EMBED_BATCH, refine_predictions, refine_text  # numpy

    done = settled = 0
    while done < limit and not (stop is not None and stop.is_set()):
        rows = store.items_to_refine(model_version, min(EMBED_BATCH, limit - done))
        if not rows:
            break
        vectors = stage.embedder.embed(
            [refine_text(title, summary) for _, title, summary, _ in rows]
        )
        predictions = refine_predictions(
            stage.head, [scores for *_, scores in rows], vectors, stage.uncertain_below
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
