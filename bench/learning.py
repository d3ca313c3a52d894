"""I/O: the learning-curve benchmark. How much a team's corrections improve the classifier on
the team's other feeds.

On the real-item development set (`../shared/eval-dev/`, read through listener's parse path;
the section is skipped when it is absent), for N corrections (N = 25, 50, 100): feeds in a
seeded random order become the team's until they hold N items, the corpus model is adapted to
those N items as corrections (`adapt_to_corrections`, as `listener model train
--include-corrections` does), and macro-F1 is measured on every item of the remaining feeds,
before (the corpus model) and after. A second table reads "the team's feeds" the other way:
half of each of some feeds' items are the corrections, and the rest of those same feeds is
measured (N = 20, 40). N = 0 is the corpus model on the whole set. The dev items are
simulated corrections inside this process only: nothing is written anywhere, and the shipped
model never sees them.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

from bench.report import SectionReport, Table

NAME = "learning"
TARGET_GAIN_AT_50 = 0.05
SIZES = (25, 50, 100)
WITHIN_SIZES = (20, 40)  # the dev set's feeds of two items or more have 47 first halves in all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "learning", "corrections learning curve on the real-item dev set (section 'learning')"
    )
    group.add_argument(
        "--learning-labels",
        type=Path,
        default=Path("../shared/eval-dev/dev_labels.jsonl"),
        help="the dev set's labels file, its feeds in ../realfeeds/feeds/ beside it "
        "(default ../shared/eval-dev/dev_labels.jsonl; the section is skipped without it)",
    )
    group.add_argument(
        "--learning-splits",
        type=int,
        default=10,
        help="feed splits per N, each an adaptation of about a second (default 10)",
    )


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    labels: Path = options.learning_labels
    if not labels.is_file():
        return SectionReport(
            name=f"{NAME}: corrections learning curve",
            tables=(),
            notes=(f"skipped: {labels} not found (the real-item dev set is not in the repo)",),
        )
    from listener.classify import training
    from listener.classify.evaluation import (
        macro_f1,
        read_dev_set,
        split_by_feed,
        split_within_feeds,
    )
    from listener.classify.model import item_text, make_classifier

    items = read_dev_set(labels)
    corpus_rows, _ = training.split_heldout(training.read_corpus())
    started = time.perf_counter()
    base_pipeline, base_metadata = training.train_classifier(corpus_rows)
    base = make_classifier(base_pipeline, base_metadata)
    train_s = time.perf_counter() - started

    def score(classifier: Any, evaluation: Any) -> float:
        texts = [item_text(item.row.title, item.row.summary) for item in evaluation]
        predictions = classifier.predict(texts)
        return macro_f1([item.row.labels for item in evaluation], [p.labels for p in predictions])

    def curve(
        split_with: Any, sizes: tuple[int, ...]
    ) -> tuple[list[tuple[str, ...]], dict[int, float]]:
        rows: list[tuple[str, ...]] = []
        gains: dict[int, float] = {}
        for size in sizes:
            before, after, measured = [], [], []
            for seed in range(options.seed, options.seed + max(1, options.learning_splits)):
                split = split_with(items, size, seed)
                if split is None:
                    continue
                corrections = [item.row for item in split.corrections]
                # train_classifier(corpus_rows, corrections=...) without refitting the corpus
                # model each time: the dev ids (dev-NNNN) never collide with corpus ids.
                adapted = training.adapt_to_corrections(copy.deepcopy(base_pipeline), corrections)
                model = make_classifier(adapted, base_metadata)
                before.append(score(base, split.evaluation))
                after.append(score(model, split.evaluation))
                measured.append(len(split.evaluation))
            if not before:
                rows.append((str(size), "0", "-", "-", "-", "-", "-"))
                continue
            gains[size] = statistics.mean(after) - statistics.mean(before)
            differences = [a - b for a, b in zip(after, before, strict=True)]
            rows.append(
                (
                    str(size),
                    str(len(before)),
                    f"{statistics.mean(measured):.0f}",
                    f"{statistics.mean(before):.3f}",
                    f"{statistics.mean(after):.3f}",
                    f"{gains[size]:+.3f}",
                    f"{min(differences):+.3f}..{max(differences):+.3f}",
                )
            )
        return rows, gains

    by_feed, gains = curve(split_by_feed, SIZES)
    rows = [("0", "1", str(len(items)), f"{score(base, items):.3f}", "-", "-", "-"), *by_feed]
    within_rows, _ = curve(split_within_feeds, WITHIN_SIZES)
    on_target = gains.get(50, 0.0) >= TARGET_GAIN_AT_50
    notes = [
        f"{len(items)} dev items from {len({item.feed for item in items})} feeds ({labels}); "
        f"corrections adapt the corpus model (prior sd {training.CORRECTION_PRIOR_SD:g}); "
        f"one training "
        f"{train_s:.1f} s",
        "macro-F1 over the labels present in the measured items; before = the model trained "
        "on the corpus alone, after = adapted to the N corrections; same items for both",
        "the dev set is a closed pool: the more a label fills the corrections, the less it "
        "fills the other feeds, so learning the corrections' label mix scores against itself",
        "N = 100 leaves few items of other feeds to measure on: read it as a sign, not a figure",
        "second table: the corrections are the first half of each of some feeds' items, "
        "measured on the rest of those same feeds (the target is read on the first table)",
        f"target: +{TARGET_GAIN_AT_50:.2f} at N = 50: "
        + ("PASS" if on_target else f"MISS ({gains.get(50, 0.0):+.3f})"),
    ]
    return SectionReport(
        name=f"{NAME}: corrections learning curve (real-item dev set)",
        tables=(
            Table(
                ("N", "splits", "measured_items", "macro_f1_before", "after", "gain", "range"),
                tuple(rows),
                title="N corrections from some feeds, macro-F1 on the other feeds",
            ),
            Table(
                ("N", "splits", "measured_items", "macro_f1_before", "after", "gain", "range"),
                tuple(within_rows),
                title="N corrections, half of each of some feeds, macro-F1 on those feeds' others",
            ),
        ),
        notes=tuple(notes),
        on_target=on_target,
    )
