"""Pure: what the model sees of an item and what its scores mean, without scikit-learn.

`item_text` alone decides what the model sees, `decide_labels` turns calibrated scores into
0-2 labels, and `check_metadata` tells whether a model fits this listener. Importing
scikit-learn, scipy and skops costs about 1.2 s, so what a poll needs lives here and in
`listener.classify.linear` (scoring in numpy); `listener.classify.model` (the fitted
pipeline) is imported only to train, evaluate or read a model saved without its .npz.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from listener.domain import LABELS
from listener.errors import ClassifierError
from listener.feeds.text import clean_text

OTHER = "other"
MAX_LABELS = 2
DEFAULT_UNCERTAIN_BELOW = 0.5
METADATA_FORMAT = 1

# Bump when item_text changes what the model sees: a model trained on other text is refused.
ITEM_TEXT_VERSION = 4
# The title is the densest signal and feed summaries run to hundreds of words; the lead
# carries the topic, and vectorising only it keeps classification at several thousand
# items/s per core (the cost is linear in the characters the analyzers see). A 400-char
# lead scored the same on real items (issue 10) at 30% more cost.
LEAD_CHARS = 250
TITLE_REPEAT = 2
_MAX_TITLE_CHARS = 300
WHY_TERMS = 5

_COMBINING = re.compile("[\u0300-\u036f]")
_FOLD = str.maketrans({"’": "'", "‘": "'", "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"})
# Cheap signs that text was not cleaned (markup, entities, UTF-8 read as windows-1252);
# only then is clean_text worth its cost.
_DIRTY_MARKERS = ("<", "&", "Ã", "Â", "â€")
# What feed software wraps around a summary and says nothing about its topic: WordPress's
# "The post X appeared first on Y." (and its French version), a "By NAME Posted on DATE"
# byline, "Read more" / "Continue reading" links and what follows them, "[…]".
_BOILERPLATE = (
    (
        ("appeared first on", "apparu en premier sur"),
        re.compile(
            r"\b(?:the post|l['’]article)\b.{0,300}?"
            r"\b(?:appeared first on|est apparu en premier sur)\b.*",
            re.I | re.S,
        ),
    ),
    (
        ("posted on", "publié le", "publie le"),
        re.compile(
            r"\b(?:by|par)\s[^.]{1,60}?\s(?:posted on|publi[ée] le)\s"
            r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}",
            re.I,
        ),
    ),
    (
        ("continue reading", "share this", "partager"),
        re.compile(r"\b(?:continue reading|share this\s*:|partager\s*:).*", re.I | re.S),
    ),
    (
        ("read more", "lire la suite"),
        re.compile(r"\b(?:read more|lire la suite)\s*[→»›.…]*\s*$", re.I),
    ),
    (("[…]", "[...]"), re.compile(r"\[(?:…|\.\.\.)\]")),
)
# Link aggregators put only this in the summary of a discussion item.
_EMPTY_SUMMARIES = frozenset({"comments", "commentaires"})
_TITLE_ECHO_TRIM = " :;,.-–—|"
_MIN_HEADLINE_CHARS = 20
_MAX_SOURCE_CHARS = 60  # a publication's name


@dataclass(frozen=True, slots=True)
class Prediction:
    """Labels for one item: 0-2 labels ordered by score, every label's score, and why."""

    labels: tuple[str, ...]  # when nothing passes a threshold: the best guess, uncertain
    scores: Mapping[str, float]  # every label -> calibrated probability, 4 decimals
    uncertain: bool
    # label -> top terms that pushed it (only with explain=True), for the assigned labels
    # (or the top label when none is assigned)
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Classifier(Protocol):
    version: str
    labels: tuple[str, ...]

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One Prediction per text; texts come from `item_text`."""
        ...

    def predict_linear(self, texts: Sequence[str]) -> list[Prediction]:
        """The linear model's predictions alone, whose scores the e5 stage blends with."""
        ...


def item_text(title: str, summary: str) -> str:
    """What the model sees: the title (twice) and the summary's lead, lower-cased, unaccented.

    The summary loses what feed software adds to it (the title repeated at its start,
    bylines, "The post ... appeared first on ...", "Read more"), so the lead is its topic.
    """
    title = title[:_MAX_TITLE_CHARS]
    summary = strip_boilerplate(title, summary[: LEAD_CHARS + len(title) + 200])
    if len(summary) > LEAD_CHARS:
        cut = summary[:LEAD_CHARS]
        space = cut.rfind(" ")
        summary = cut[:space] if space > LEAD_CHARS // 2 else cut  # no half word at the end
    text = " ".join([title] * TITLE_REPEAT + [summary])
    if any(marker in text for marker in _DIRTY_MARKERS):
        text = clean_text(text)  # text from `listener classify` may not have been parsed
    text = text.lower()
    if not text.isascii():
        # "Équipe" and "equipe" must be one feature: feeds and people drop accents.
        text = fold_accents(text)
    return " ".join(text.split())


def fold_accents(text: str) -> str:
    """Pure: text without its accents ("équipe" -> "equipe"), as `item_text` writes it."""
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(_FOLD)))


def title_echo(title: str, summary: str) -> int:
    """Pure: how many of the summary's first characters repeat the title (0: none)."""
    # A title made from the summary's start when the item had none ("First words…", as
    # parse_feed makes it) is an echo too.
    echo = title[:-1].rstrip() if title.endswith("…") else title
    if echo and summary.startswith(echo):
        return len(echo)
    # News aggregators (Google News) title an item "Headline - Source" and open its summary
    # with "Headline Source", then the related headlines: the first pair is the echo.
    headline, dash, source = title.rpartition(" - ")
    source = source.strip()
    if not (
        dash
        and len(headline) >= _MIN_HEADLINE_CHARS  # "Prices - a guide" / "Prices rise": no echo
        and 0 < len(source) <= _MAX_SOURCE_CHARS
        and summary.startswith(headline)
    ):
        return 0
    rest = summary[len(headline) :]
    if rest[:1].isalnum():  # the headline ends inside one of the summary's words
        return 0
    rest = rest.lstrip()
    if rest.startswith(source):
        return len(summary) - len(rest) + len(source)
    return len(headline)


def strip_boilerplate(title: str, summary: str) -> str:
    """Pure: the summary without the title echoed at its start and feed boilerplate."""
    echo = title_echo(title, summary)
    if echo:
        summary = summary[echo:].lstrip(_TITLE_ECHO_TRIM)
    folded = summary.lower()
    for markers, pattern in _BOILERPLATE:
        # Substring tests first: the regexes cost a tenth of classification when always run.
        if any(marker in folded for marker in markers):
            summary = pattern.sub(" ", summary)
    summary = summary.strip()
    return "" if summary.lower() in _EMPTY_SUMMARIES else summary


def decide_labels(
    scores: Mapping[str, float],
    thresholds: Mapping[str, float],
    uncertain_below: float,
    max_labels: int = MAX_LABELS,
) -> tuple[tuple[str, ...], bool]:
    """Labels whose score reaches their threshold, best first, at most `max_labels`.

    "other" is exclusive: it wins alone when it is the best passing label and is dropped
    otherwise. Uncertain when nothing passes or the best score is below `uncertain_below`.
    When nothing passes, the best-scored label is still given as a guess, flagged uncertain:
    `listener classify` users get an answer, while the store's `item_labels` view and the
    digest leave uncertain items out of every function until a person decides.
    """
    ranked = sorted(scores, key=lambda label: -scores[label])  # stable: ties keep label order
    passing = [label for label in ranked if scores[label] >= thresholds.get(label, 0.5)]
    if passing and passing[0] == OTHER:
        chosen: tuple[str, ...] = (OTHER,)
    else:
        chosen = tuple(label for label in passing if label != OTHER)[:max_labels]
    best = scores[ranked[0]] if ranked else 0.0
    if not chosen:
        return ((ranked[0],) if best > 0 else ()), True
    return chosen, best < uncertain_below


# A label at 0.6 with the next at 0.1 is still worth a look (priority 0.46); one at 0.95 with
# the next at 0.03 is not (0.07).
REVIEW_MIN_PRIORITY = 0.35


def review_priority(scores: Mapping[str, float], feed_corrections: int) -> float:
    """Pure: how much a correction of this item would teach the model, in 0..1.

    Near a decision boundary (the two best scores close, or the best one low) a correction
    moves the model most; a feed nobody has corrected yet has the most to gain, so each
    correction already made on the item's feed halves the priority of the next one.
    """
    ranked = [*sorted(scores.values(), reverse=True), 0.0, 0.0]
    best, second = ranked[0], ranked[1]
    closeness = 1.0 - min(1.0, max(0.0, best - second))  # 1 when two labels tie
    doubt = 1.0 - min(1.0, max(0.0, best))  # 1 when no label is likely
    return (0.6 * closeness + 0.4 * doubt) / 2.0 ** max(0, feed_corrections)


def rank_for_review(candidates: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """Pure: the `limit` candidates (with `scores`, `uncertain` and `feed_corrections`) worth
    most, best first; ties keep the candidates' order (newest first from the store). A
    confident prediction (priority below REVIEW_MIN_PRIORITY before the feed's corrections
    are counted) is left out unless it is flagged uncertain."""
    priorities = [
        review_priority(candidate["scores"], int(candidate["feed_corrections"]))
        for candidate in candidates
    ]
    kept = [
        at
        for at, candidate in enumerate(candidates)
        if candidate.get("uncertain")
        or review_priority(candidate["scores"], 0) >= REVIEW_MIN_PRIORITY
    ]
    order = sorted(kept, key=lambda at: -priorities[at])
    return [{**candidates[at], "priority": round(priorities[at], 4)} for at in order[:limit]]


def check_metadata(metadata: Mapping[str, Any], where: Path | str) -> None:
    """ClassifierError unless the metadata's labels, sklearn version and input match ours."""
    labels = metadata.get("labels")
    if labels != list(LABELS):
        raise ClassifierError(
            f"{where}: the model's labels {labels} differ from listener's {list(LABELS)}: "
            f"{retrain_hint(where)}"
        )
    trained_with = str(metadata.get("sklearn_version", "unknown"))
    if _major_minor(trained_with) != _major_minor(sklearn_version()):
        raise ClassifierError(
            f"{where}: model trained with scikit-learn {trained_with}, this environment has "
            f"{sklearn_version()}: install scikit-learn {'.'.join(_major_minor(trained_with))}.x "
            f"(listener's own requirement), or {retrain_hint(where)}"
        )
    if metadata.get("item_text_version") != ITEM_TEXT_VERSION:
        raise ClassifierError(
            f"{where}: the model was trained on item text version "
            f"{metadata.get('item_text_version')}, this listener makes version "
            f"{ITEM_TEXT_VERSION}: {retrain_hint(where)}"
        )


def retrain_hint(where: Path | str) -> str:
    """How to rebuild an incompatible model: a deployment's own with the CLI, the shipped
    one (which `listener model train` never overwrites) with `make model`."""
    model = Path(where).with_suffix(".skops")  # `where` may be its .json metadata
    return (
        f"retrain it with `listener model train --include-corrections --output {model}` "
        "(the model shipped with listener: `make model` in a checkout)"
    )


def missing_model_hint(where: Path | str) -> str:
    """How to get a model that is not there: a deployment's own is trained with the CLI; the
    shipped one is used when no model_path is set (`make model` rebuilds it in a checkout)."""
    model = Path(where).with_suffix(".skops")
    return (
        f"train it with `listener model train --output {model}`, or leave "
        "classifier.model_path empty for the model shipped with listener "
        "(`make model` rebuilds that one in a checkout)"
    )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def sklearn_version() -> str:
    """The installed scikit-learn's version, read from its metadata (no import)."""
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return "not installed"
