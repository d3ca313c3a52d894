"""Pure: the language of an item's text, detected offline with py3langid.

The model ships in the wheel and loads once per process on first use (about 0.7 s and
70 MB), up front with `load_language_model`, or on a thread with `preload_language_model`.
Feeds' own language tags are often wrong, so callers detect per item. A poll detects only
its new and changed items, in the process that writes them: done in each parse worker, it
cost every worker the model's 70 MB and ran on every unchanged item too (issue 14).
"""

from __future__ import annotations

import re
import threading
from array import array
from dataclasses import replace
from functools import cache
from typing import Any

from listener.domain import Item

# Tuned on the 4,905 items of /work/shared/realfeeds: 95% get an answer, and 0.45% of the
# answers differ from the feed's language (mostly feeds that mix languages). 200 characters
# answer 0.4% more items for 1.3x the cost; a threshold of 0.3, 2% more, but 4% of those wrong.
_MAX_CHARS = 150
_MIN_LETTERS = 12  # below this the model is guessing
_ENOUGH_LETTERS = re.compile(rf"(?:[^\W\d_][\W\d_]*){{{_MIN_LETTERS}}}")
_MIN_CONFIDENCE = 0.5


_LOADING = threading.Lock()  # one load, whichever thread asks first


def _identifier() -> Any:
    with _LOADING:
        return _load_identifier()


@cache
def _load_identifier() -> Any:
    # Imported here: numpy and the model come with it, and a poll with nothing new needs
    # neither.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # The model also knows ISO 639-3 codes (pcm, ary, zxx...); keep the two-letter ones so
    # the answer fits Item.lang and close dialects don't split the probability.
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    # Scoring gathers one row per feature; row-major storage halves its cost (same dtype
    # and size as the column-major copy set_languages makes).
    identifier.nb_ptc = identifier.nb_ptc.copy(order="C")
    # set_languages keeps the full model to allow another call; we never make one, and the
    # copy is 28 MB in every parse worker.
    identifier._full_model = None
    # Two per-state tables of 104,583 Python ints: as arrays they take 6 MB less, and the
    # walk over a text reads them as fast.
    identifier._rowbase = array("I", identifier._rowbase)
    identifier.tk_output = array("i", identifier.tk_output)
    return identifier


def load_language_model() -> None:
    """Load the model now (e.g. in a worker's initializer) instead of on first use."""
    _identifier()


def preload_language_model() -> None:
    """Start loading the model on a thread of its own (a poll, when a feed brings new
    bytes), so the load overlaps the fetches and parses; detect_language waits for it."""
    if _load_identifier.cache_info().currsize == 0:
        threading.Thread(target=_identifier, name="language-preload", daemon=True).start()


def with_languages(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """The items, each with the language detected from its title and summary."""
    return tuple(
        replace(item, lang=detect_language(f"{item.title} {item.summary}")) for item in items
    )


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of `text`, or None when it is too short or the model is unsure."""
    sample = text[:_MAX_CHARS]
    if not _ENOUGH_LETTERS.search(sample):
        return None
    code, confidence = _identifier().classify(sample)
    return str(code) if confidence >= _MIN_CONFIDENCE else None
