"""Pure: turn what a person types into the FTS5 query `Store.search` takes, or a clear error.

Words, "exact phrases", AND / OR / NOT, parentheses and a trailing * for a prefix, as in FTS5;
a word with punctuation in it (l'oréal, e-commerce, c++) is searched as a phrase instead of
being an FTS5 syntax error. Accents and case are folded by the index's tokenizer.
"""

from __future__ import annotations

import re

from listener.errors import QuerySyntaxError

_OPERATORS = {"AND", "OR", "NOT"}
_FTS5_KEYWORDS = {*_OPERATORS, "NEAR"}
_TOKEN = re.compile(r'\s*(?:(?P<quote>")|(?P<paren>[()])|(?P<word>[^\s"()]+))')
_PLAIN = re.compile(r"^\w+\*?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def to_fts_query(text: str) -> str:
    """Validate `text` and return an equivalent FTS5 MATCH expression."""
    text = _CONTROL.sub(" ", text)  # NUL ends an FTS5 string early; no query needs controls
    parts: list[str] = []
    depth = 0
    expect_term = True  # at the start, after an operator or "("
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing white space is left
            break
        start = match.start(match.lastgroup or 0)
        pos = match.end()
        if match.group("quote"):
            end = text.find('"', pos)
            if end < 0:
                raise QuerySyntaxError(f"unclosed quote at position {start + 1}: {text!r}", text)
            phrase = text[pos:end].strip()
            pos = end + 1
            prefix = text.startswith("*", pos)
            if prefix:
                pos += 1
            if not re.search(r"\w", phrase):
                raise QuerySyntaxError(f"empty phrase at position {start + 1}", text)
            _and_next_to_paren(parts, expect_term, opening=False)
            parts.append(_phrase(phrase) + (" *" if prefix else ""))
            expect_term = False
        elif (paren := match.group("paren")) == "(":
            depth += 1
            _and_next_to_paren(parts, expect_term, opening=True)
            parts.append("(")
            expect_term = True
        elif paren == ")":
            if depth == 0 or expect_term:
                raise QuerySyntaxError(f"unexpected ')' at position {start + 1}", text)
            depth -= 1
            parts.append(")")
            expect_term = False
        else:
            word = match.group("word")
            if word in _OPERATORS:
                if expect_term:
                    raise QuerySyntaxError(
                        f"{word} at position {start + 1} needs a term before it", text
                    )
                parts.append(word)
                expect_term = True
                continue
            _and_next_to_paren(parts, expect_term, opening=False)
            parts.append(_word(word, start))
            expect_term = False
    if not parts:
        raise QuerySyntaxError("empty search query", text)
    if depth:
        raise QuerySyntaxError("unclosed '(' in search query", text)
    if expect_term:
        raise QuerySyntaxError(f"{parts[-1]} at the end of the query needs a term after it", text)
    return " ".join(parts)


def _and_next_to_paren(parts: list[str], expect_term: bool, *, opening: bool) -> None:
    """Terms side by side mean AND. FTS5 reads that between words (and binds it tighter
    than NOT, so those are left as typed) but not next to a parenthesis: "(a) b" and
    "a (b)" are syntax errors there, so that AND is written out."""
    if not expect_term and (opening or parts[-1] == ")"):
        parts.append("AND")


def _word(word: str, start: int) -> str:
    # A keyword with a star ("AND*") or NEAR is a word here, but FTS5 would read its own
    # syntax in it: quoted, it is searched as the word.
    if _PLAIN.match(word) and word.rstrip("*") not in _FTS5_KEYWORDS:
        return word
    prefix = word.endswith("*")
    core = word.rstrip("*")
    if not re.search(r"\w", core):
        raise QuerySyntaxError(f"nothing to search for in {word!r} at position {start + 1}", word)
    return _phrase(core) + (" *" if prefix else "")


def _phrase(phrase: str) -> str:
    return '"' + phrase.replace('"', '""') + '"'
