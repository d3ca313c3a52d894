"""Pure: where a watch's matched terms occur in an item's text, and a window around them.

`term_spans` finds the terms `query.match` reports ("acme", "recrut*", "société
générale") in the original text, with the matcher's folding: the text is cut into runs of
word characters, each run goes through `tokenize_text`, and the terms are looked for in the
resulting tokens. A run is a maximal stretch of characters that are not separators to
`tokenize_text`, so its tokens are exactly the matcher's tokens for that part of the text
("Acme™" is the one token "acmetm" there, so "acme" is not highlighted in it either).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from listener.watches.query import tokenize_text

Span = tuple[int, int]  # [start, end) in characters

ELLIPSIS: Final = "…"
# ASCII letters and digits as whole runs; any other non-ASCII character on its own, to be
# classified. The remaining ASCII characters (spaces, punctuation, "_") separate words.
_PIECE = re.compile(r"[0-9A-Za-z]+|[^\x00-\x7f]")
_SPACES = re.compile(r"\s*")
_WHITESPACE = re.compile(r"\s+")
_WORD, _MARK, _SEPARATOR = range(3)


@lru_cache(maxsize=4096)
def _kind(char: str) -> int:
    """How tokenize_text treats a non-ASCII character: part of a word, dropped (combining
    marks, which must not split a decomposed "é"), or a separator ("’", "ʼ", soft hyphen)."""
    # Folding is per character (query.py's definition), so the neighbours reveal it.
    tokens = tokenize_text(f"a{char}a")
    if tokens == ("aa",):
        return _MARK
    return _SEPARATOR if tokens == ("a", "a") else _WORD


def _runs(text: str) -> list[Span]:
    """The maximal stretches of `text` without a separator (some may hold no token)."""
    runs: list[Span] = []
    for piece in _PIECE.finditer(text):
        start, end = piece.span()
        if end - start == 1 and not text[start].isascii() and _kind(text[start]) == _SEPARATOR:
            continue
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _term_words(term: str) -> tuple[tuple[str, ...], bool]:
    """A term as match reports it: its tokens, and whether the last one is a prefix."""
    prefix = term.endswith("*")
    return tokenize_text(term[:-1] if prefix else term), prefix


def term_spans(text: str, terms: Sequence[str]) -> list[Span]:
    """Where any of the terms occurs in `text`, as match sees it: sorted and merged."""
    tokens: list[str] = []
    token_runs: list[Span] = []  # every token of a run spans the whole run
    for start, end in _runs(text):
        words = tokenize_text(text[start:end])
        tokens += words
        token_runs += [(start, end)] * len(words)
    positions: dict[str, list[int]] = {}
    for at, token in enumerate(tokens):
        positions.setdefault(token, []).append(at)
    found: list[Span] = []
    for term in dict.fromkeys(terms):
        words, prefix = _term_words(term)
        if not words:
            continue
        *exact, last = words
        if exact or not prefix:
            starts = positions.get(words[0], [])
        else:  # one prefix: every token starting with it (distinct tokens, not positions)
            starts = [at for key, ats in positions.items() if key.startswith(last) for at in ats]
        for first in starts:
            final = first + len(exact)
            if final >= len(tokens) or tokens[first:final] != exact:
                continue
            if tokens[final] == last or (prefix and tokens[final].startswith(last)):
                found.append((token_runs[first][0], token_runs[final][1]))
    return _normalise(found, len(text))


def _normalise(spans: Sequence[Span], length: int) -> list[Span]:
    """Spans clipped to [0, length], empty ones dropped, sorted, overlapping or adjacent
    ones merged: so callers may pass anything."""
    merged: list[Span] = []
    for start, end in sorted((max(s, 0), min(e, length)) for s, e in spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def segments(text: str, spans: Sequence[Span]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, highlighted) pairs: no empty piece, joined they are `text`."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for start, end in _normalise(spans, len(text)):
        if at < start:
            pieces.append((text[at:start], False))
        pieces.append((text[start:end], True))
        at = end
    if at < len(text):
        pieces.append((text[at:], False))
    return pieces


def _word_start(text: str, at: int, limit: int) -> int:
    """The first word start at or after `at`, and not after `limit` (a span's start)."""
    if at <= 0:
        return 0
    if not text[at - 1].isspace():  # mid-word: skip to the next word, or to `limit`
        space = _WHITESPACE.search(text, at, limit)
        return limit if space is None else space.end()
    found = _SPACES.match(text, at, limit)
    return at if found is None else found.end()


def _word_end(text: str, at: int, keep: int) -> int:
    """`at`, moved back to a space if it cuts a word, but not before `keep` (a span's end);
    trailing spaces dropped. A word longer than the window is cut where it is."""
    if at >= len(text):
        return len(text)
    if not text[at].isspace() and not text[at - 1].isspace():
        at = next((i for i in range(at - 1, keep - 1, -1) if text[i].isspace()), at)
    while at > keep and text[at - 1].isspace():
        at -= 1
    return at


def snippet(text: str, spans: Sequence[Span], width: int) -> tuple[str, list[Span]]:
    """About `width` characters of `text` showing the first span, "…" where it is cut,
    and the spans moved into it (clipped to it; those outside it dropped)."""
    spans = _normalise(spans, len(text))
    width = max(width, 1)
    if len(text) <= width:
        return text, spans
    # Some context before the first span (a third of the window at most: more follows it).
    first_start, first_end = spans[0] if spans else (0, 0)
    lead = max(0, min(width // 3, (width - (first_end - first_start)) // 2))
    start = _word_start(text, first_start - lead, first_start)
    if len(text) - start <= width - 1:  # the rest fits after "…": use the window fully
        start = _word_start(text, len(text) - width + 1, start)
        end = len(text)
    else:
        budget = max(1, width - (2 if start else 1))  # room left by the "…" at each cut
        end = _word_end(text, start + budget, max(first_end, start + 1))
    prefix = ELLIPSIS if start else ""
    window = f"{prefix}{text[start:end]}{ELLIPSIS if end < len(text) else ''}"
    shift = len(prefix) - start
    shown = [(max(s, start) + shift, min(e, end) + shift) for s, e in spans]
    return window, [(s, e) for s, e in shown if s < e]
