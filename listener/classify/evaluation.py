"""I/O: the real-item development set (hand-labelled items of real feeds), read through
listener's own parse path so the model is measured on the text the poller stores.

The set lives outside the repository (`../shared/eval-dev/dev_labels.jsonl` by default, its
feeds in `../shared/realfeeds/feeds/`); its README gives the format. It is for measuring and
studying mistakes only: nothing here writes it anywhere, and training never reads it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from listener.classify.model import OTHER
from listener.classify.training import LabelledRow
from listener.domain import LABELS, Fetched, Item
from listener.errors import ClassifierError, ParseError
from listener.feeds.parse import MAX_SUMMARY_CHARS, parse_feed
from listener.feeds.text import clean_text, truncate

DEV_LABELS = Path("../shared/eval-dev/dev_labels.jsonl")
FEEDS_FOLDER = Path("../realfeeds/feeds")  # relative to the labels file's folder
_FAKE_ORIGIN = "https://dev-set.invalid/"  # parse_feed wants a URL to resolve links against


class DevSetError(ClassifierError):
    """The development set cannot be read, or an item in it is not in its feed."""


@dataclass(frozen=True, slots=True)
class DevItem:
    """One labelled real item: the row the model is evaluated on, and the feed it came from."""

    feed: str  # feed_file as the labels file names it
    row: LabelledRow


def default_feeds_dir(labels_path: Path) -> Path:
    return labels_path.parent / FEEDS_FOLDER


def read_dev_set(labels_path: Path, feeds_dir: Path | None = None) -> list[DevItem]:
    """Every labelled item, with the title and summary `parse_feed` gives it; DevSetError."""
    feeds_dir = feeds_dir or default_feeds_dir(labels_path)
    try:
        records = [
            json.loads(line)
            for line in labels_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DevSetError(f"cannot read {labels_path}: {exc}") from exc
    parsed: dict[str, Mapping[str, tuple[str, str]]] = {}
    items, problems = [], []
    for number, record in enumerate(records, start=1):
        where = f"{labels_path}:{number}"
        try:
            feed, item_id = str(record["feed_file"]), str(record["item_id"])
            labels = tuple(str(label) for label in record["labels"])
            lang = str(record.get("lang") or "und")
        except (KeyError, TypeError) as exc:
            problems.append(f"{where}: missing field {exc}")
            continue
        if not labels or not set(labels) <= set(LABELS) or (OTHER in labels and len(labels) > 1):
            problems.append(f"{where}: bad labels {list(labels)}")
            continue
        if feed not in parsed:
            try:
                parsed[feed] = read_feed_texts(feeds_dir / feed)
            except (OSError, ParseError, ValueError) as exc:
                problems.append(f"{where}: cannot read {feed}: {exc}")
                parsed[feed] = {}
        text = parsed[feed].get(item_id)
        if text is None:
            problems.append(f"{where}: item {item_id!r} not found in {feed}")
            continue
        title, summary = text
        row = LabelledRow(f"dev-{number:04d}", lang, labels, title, summary, where)
        items.append(DevItem(feed, row))
    if problems:
        raise DevSetError("bad development set:\n  " + "\n  ".join(problems[:20]))
    return items


def read_feed_texts(path: Path) -> dict[str, tuple[str, str]]:
    """item id (guid, else link) -> (title, summary) as the poller would store them."""
    if path.suffix == ".jsonl":
        return _read_posts(path)
    fetched = Fetched(url=_FAKE_ORIGIN + path.name, status=200, body=path.read_bytes(), headers={})
    texts: dict[str, tuple[str, str]] = {}
    for item in parse_feed(0, fetched).items:
        for key in _item_ids(item):
            texts.setdefault(key, (item.title, item.summary))
    return texts


def _item_ids(item: Item) -> list[str]:
    # feedparser's id is the guid; without one, the link as written (a relative link is
    # resolved against our fake origin, so strip it back).
    ids = [item.guid] if item.guid else []
    if item.url:
        ids += [item.url, item.url.removeprefix(_FAKE_ORIGIN)]
    return ids


def _read_posts(path: Path) -> dict[str, tuple[str, str]]:
    """Blog excerpts (not a feed): slug -> (title, description + first paragraph)."""
    texts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            post = json.loads(line)
            summary = " ".join(
                part for part in (post.get("description"), post.get("first_paragraph")) if part
            )
            summary_text = clean_text(summary, MAX_SUMMARY_CHARS)
            title = clean_text(str(post.get("title") or "")) or truncate(summary_text, 80)
            texts[str(post["slug"])] = (title, summary_text)
    return texts


def rows_of(items: Sequence[DevItem]) -> list[LabelledRow]:
    return [item.row for item in items]


# --- simulated corrections (the learning curve of `make bench`) ------------------------------


@dataclass(frozen=True, slots=True)
class CorrectionSplit:
    """Corrections taken from some feeds, and the items of the other feeds to measure on."""

    corrections: tuple[DevItem, ...]
    evaluation: tuple[DevItem, ...]


def _by_feed(items: Sequence[DevItem]) -> dict[str, list[DevItem]]:
    """Pure: each feed's items, in the labels file's order."""
    by_feed: dict[str, list[DevItem]] = {}
    for item in items:
        by_feed.setdefault(item.feed, []).append(item)
    return by_feed


def split_by_feed(items: Sequence[DevItem], corrections: int, seed: int) -> CorrectionSplit | None:
    """Pure: feeds in a seeded random order are added to the "team's" feeds until they hold
    `corrections` items; the first `corrections` of them are corrected, and every item of the
    remaining feeds is measured. None when no feed would be left to measure on."""
    by_feed = _by_feed(items)
    feeds = sorted(by_feed)
    random.Random(f"{seed}:{corrections}").shuffle(feeds)  # noqa: S311 (a reproducible split, not a secret)
    taken: list[DevItem] = []
    used = 0
    while len(taken) < corrections and used < len(feeds):
        taken += by_feed[feeds[used]]
        used += 1
    evaluation = tuple(item for feed in feeds[used:] for item in by_feed[feed])
    if len(taken) < corrections or not evaluation:
        return None
    return CorrectionSplit(tuple(taken[:corrections]), evaluation)


def split_within_feeds(
    items: Sequence[DevItem], corrections: int, seed: int
) -> CorrectionSplit | None:
    """Pure: the other reading of "a team's feeds": feeds with two items or more, in a seeded
    random order, give their first half (in the labels file's order) as corrections until
    there are `corrections`, and the rest of those same feeds' items is measured. None when
    the feeds run out first."""
    by_feed = _by_feed(items)
    feeds = sorted(feed for feed, its in by_feed.items() if len(its) >= 2)
    random.Random(f"{seed}:{corrections}:within").shuffle(feeds)  # noqa: S311 (a reproducible split)
    taken: list[DevItem] = []
    evaluation: list[DevItem] = []
    for feed in feeds:
        if len(taken) >= corrections:
            break
        its = by_feed[feed]
        first = its[: min(len(its) // 2, corrections - len(taken))]
        taken += first
        evaluation += its[len(first) :]
    if len(taken) < corrections or not evaluation:
        return None
    return CorrectionSplit(tuple(taken), tuple(evaluation))


def macro_f1(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Pure: multi-label F1 averaged over the labels present in `truth` (a small set of
    items rarely holds all six; an absent label would count as 0 whatever the model does)."""
    present = [label for label in LABELS if any(label in labels for labels in truth)]
    if not present:
        return 0.0
    total = 0.0
    for label in present:
        hits = sum(label in t and label in p for t, p in zip(truth, predicted, strict=True))
        guessed = sum(label in p for p in predicted)
        actual = sum(label in t for t in truth)
        total += 2 * hits / (guessed + actual) if guessed + actual else 0.0
    return total / len(present)
