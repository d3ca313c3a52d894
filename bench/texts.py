"""Pure: items as the store holds them (plain-text title and summary), for the classify and
digest sections. bench/corpus.py makes whole feeds (HTML, XML) for the poll; these sections
skip the feed and the parser and need only the text the parser would have stored.

Sentences come from a pool per language (bench/words.py's grammar), so a million items cost
seconds, not minutes; titles combine a pooled headline with a pooled phrase, which keeps
accidental duplicates rare (the digest groups items sharing a title into one story).
"""

from __future__ import annotations

import functools
import random

from bench.words import LEXICONS, noun_phrase, sentence, title

SENTENCE_POOL_SIZE = 4096  # per language
TITLE_POOL_SIZE = 8192
PHRASE_POOL_SIZE = 2048
_ENTITY_TITLES = {"en": ": M&A", "fr": " : R&D"}


@functools.cache
def sentence_pool(lang: str) -> tuple[tuple[str, int], ...]:
    """Sentences with their word counts, as plain text (the parser decodes entities)."""
    rng = random.Random(f"texts:sentences:{lang}")
    lexicon = LEXICONS[lang]
    pool = []
    for _ in range(SENTENCE_POOL_SIZE):
        text = sentence(rng, lexicon)
        if lang == "fr" and rng.random() < 0.5:
            text = text.replace("'", "’")  # publishers' typographic apostrophe, decoded
        pool.append((text, text.count(" ") + 1))
    return tuple(pool)


@functools.cache
def title_pools(lang: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(headlines, trailing phrases such as "for the whole team")."""
    rng = random.Random(f"texts:titles:{lang}")
    lexicon = LEXICONS[lang]
    headlines = tuple(title(rng, lexicon) for _ in range(TITLE_POOL_SIZE))
    phrases = tuple(
        f"{rng.choice(lexicon.prepositions)} {noun_phrase(rng, lexicon)}"
        for _ in range(PHRASE_POOL_SIZE)
    )
    return headlines, phrases


def make_title(rng: random.Random, lang: str) -> str:
    headlines, phrases = title_pools(lang)
    headline = headlines[int(rng.random() * len(headlines))]
    text = f"{headline} {phrases[int(rng.random() * len(phrases))]}"
    if rng.random() < 0.15:
        text += _ENTITY_TITLES[lang]  # "&" makes item_text take its clean_text path
    return text


def make_summary(rng: random.Random, lang: str, min_words: int, max_words: int) -> str:
    """Whole pooled sentences until a target of min_words..max_words words is reached."""
    pool = sentence_pool(lang)
    size = len(pool)
    target = rng.randint(min_words, max_words)
    parts = []
    words = 0
    while words < target:
        text, count = pool[int(rng.random() * size)]
        parts.append(text)
        words += count
    return " ".join(parts)


def make_items(
    seed: int, lang: str, count: int, min_words: int, max_words: int
) -> list[tuple[str, str]]:
    """`count` (title, summary) pairs in one language, the same for the same arguments."""
    rng = random.Random(f"{seed}:texts:{lang}:{count}")
    return [
        (make_title(rng, lang), make_summary(rng, lang, min_words, max_words)) for _ in range(count)
    ]
