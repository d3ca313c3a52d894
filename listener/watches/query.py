"""Pure: brand and competitor watch queries. Parse a small boolean language, match items.

    acme                 a whole word, case and accents folded: Société = SOCIETE = société
    recrut*              a prefix (2+ letters before *): recrute, recrutement, recruteur
    "société générale"   a phrase: these words, adjacent, in this order ("..."* : prefix last)
    l'oréal  e-commerce  a word with punctuation is the phrase of its parts: "l oreal"
    a b    a AND b       both                       a OR b     either
    a NOT b              a without b                ( ... )    grouping
    a NEAR/3 b           a and b at most 3 words apart, either order (NEAR/1: adjacent;
                         plain NEAR: NEAR/10). Each side is a word, a phrase or (x OR y).

NOT binds tightest, then NEAR, then AND, then OR: `a OR b c` is `a OR (b AND c)`. Operators
are uppercase only; `and`, `or`, `not`, `near` are ordinary words (so is "AND" in quotes).
A query must require some word: `NOT x`, or an OR branch that is only a NOT, would match
almost every item and is refused. Malformed queries raise `QuerySyntaxError`, which points
at the position.

Texts and query words go through the same `tokenize_text`, so matching compares folded
tokens. `CompiledWatches` matches one item against many queries: it tokenizes the item once
(with C string operations: no Python loop over characters or words), and a query is only
evaluated when the item holds a key of each of its required clauses (words any match needs).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, product
from math import prod
from typing import Final, TypeGuard

from listener.errors import QuerySyntaxError

DEFAULT_NEAR: Final = 10
MAX_NEAR: Final = 100
MAX_DEPTH: Final = 32  # nested "(" and NOT; keeps the recursive parser far from the stack limit
_CACHE_LIMIT: Final = 50_000  # memoised chunks of the slow path (a few MB), then afresh


# -- the tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase: folded tokens, the last one a prefix when `prefix`."""

    text: str  # as written in the query (a phrase without its quotes), for reports
    tokens: tuple[str, ...]
    prefix: bool
    position: int
    # Derived once, for matching: what an item must contain (its tokens, the last as
    # "prefix*"), the words among them, and how the term looks in _Document.joined.
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    words: tuple[str, ...] = field(init=False, repr=False, compare=False)
    needle: str = field(init=False, repr=False, compare=False)
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = self.tokens
        keys = (*tokens[:-1], tokens[-1] + "*") if self.prefix else tokens
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "words", tokens[:-1] if self.prefix else tokens)
        needle = f" {' '.join(tokens)}{'' if self.prefix else ' '}"
        object.__setattr__(self, "needle", needle)
        # The same in a folded text, where runs of spaces separate tokens.
        object.__setattr__(self, "pattern", re.compile(f"{_spaced_fragment(self)}(?= )"))


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    position: int


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Near:
    """operands[i] and operands[i + 1] within distances[i] tokens, in one chain."""

    operands: tuple[Term | Or, ...]  # an Or here holds only terms and such Ors
    distances: tuple[int, ...]
    position: int
    # Two operands (the usual case): one regular expression per term of either side, for a
    # quick test in C that some pair is close enough, before spans are computed.
    screens: tuple[tuple[Term, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        screens: tuple[tuple[Term, re.Pattern[str]], ...] = ()
        if len(self.operands) == 2:
            first, second = (tuple(_operand_terms(operand)) for operand in self.operands)
            gap = f"(?:[^ ]+ +){{0,{self.distances[0] - 1}}}"
            screens = tuple(
                (term, re.compile(f"{_spaced_fragment(term)} +{gap}(?:{others})(?= )"))
                for terms, other_terms in ((first, second), (second, first))
                for others in ["|".join(map(_fragment, other_terms))]
                for term in terms
            )
        object.__setattr__(self, "screens", screens)


def _operand_terms(node: Term | Or | Not | And | Near) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Or):
        for child in node.children:
            yield from _operand_terms(child)


def _fragment(term: Term) -> str:
    """A term in a folded text (tokens between runs of spaces), as a regular expression."""
    words = " +".join(map(re.escape, term.tokens))
    return f"{words}[^ ]*" if term.prefix else words


def _after_space(token: str) -> str:
    """A regular expression for " " + token, to search for: the token, then the space in a
    look-behind.

    The same matches (but for their start, which no caller uses), found in about two thirds
    of the time: the engine finds a pattern's literal start one character at a time and
    tries the rest of the pattern at each one; starting with " ", it tries at every space
    of the text (issue 14: the phrases and NEAR screens of topic watches on French items).
    """
    return f"{re.escape(token)}(?<= {re.escape(token)})"


def _spaced_fragment(term: Term) -> str:
    """The term after a space (" " + its fragment), as _after_space writes it."""
    first = term.tokens[0]
    return f"{_after_space(first)}{_fragment(term).removeprefix(re.escape(first))}"


Node = Term | Not | And | Or | Near


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed watch query; immutable."""

    text: str
    root: Node


# -- tokens ------------------------------------------------------------------------------
# The definition: each character folds on its own (NFKD, casefold, NFKD, combining marks
# dropped, the letters below spelled out), and the tokens are the runs of letters and digits
# of the folded text. `_fold_chunk` implements it directly; `_fold_text` is the fast path
# (whole-string C operations, tables derived from the definition) and falls back to it.

# Letters NFKD leaves whole, written as a French or English reader would type them; the
# modifier-letter apostrophes are letters to Unicode but apostrophes to readers.
_LETTERS = str.maketrans(
    {"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
    | {"ʼ": " ", "ʻ": " "}
)
_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" and punctuation separate
_NOT_WORD = re.compile(r"[\W_]+")


def _fold_string(text: str) -> str:
    """The definition, character by character (slow; see _fold_text)."""
    # NFKD before casefold (compatibility forms such as "ℌ" fold to letters with case) and
    # after it (casefold may produce letters with marks: "İ" -> "i̇").
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in text if unicodedata.category(c) not in ("Mn", "Me")).translate(
        _LETTERS
    )


def _fold_chunk(chunk: str) -> tuple[str, ...]:
    """The tokens of a chunk of text, by the definition."""
    if chunk.isascii():
        return (chunk.lower(),) if chunk.isalnum() else tuple(_WORD.findall(chunk.lower()))
    return tuple(_WORD.findall(_fold_string(chunk)))


class _ChunkTokens(dict[str, tuple[str, ...]]):
    """chunk -> its tokens, memoised for the fallback (text with emoji, other scripts...)."""

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        tokens = self[chunk] = _fold_chunk(chunk)
        return tokens


_CHUNK_TOKENS = _ChunkTokens()


def _folded_char(char: str) -> str | None:
    """One character's folding for the fast path: a lowercase ASCII letter or digit, " " for
    a separator, "" when dropped; None when it is more than that (ß, ½, µ)."""
    folded = _fold_string(char)
    if not folded or (len(folded) == 1 and folded.isascii() and folded.isalnum()):
        return folded
    return " " if _WORD.search(folded) is None else None


def _make_latin1_table() -> tuple[bytes, bytes]:
    """A bytes.translate table (and its deletions) folding Latin-1 text by the definition.

    Characters that fold to more than one letter keep their byte: it is not ASCII, so
    _fold_text takes them on its slower paths.
    """
    table = bytearray(range(256))
    deleted = bytearray()
    for code in range(256):
        folded = _folded_char(chr(code))
        if folded == "":
            deleted.append(code)  # no Latin-1 character folds to nothing, but be exact
        elif folded is not None:
            table[code] = ord(folded)
    return bytes(table), bytes(deleted)


_LATIN1_TABLE, _LATIN1_DELETED = _make_latin1_table()
# Frequent characters beyond Latin-1 (or folding to two letters) in French and English
# copy, replaced by their folding before the text is encoded as Latin-1.
_REPLACEMENTS: Final = tuple(
    (char, _NOT_WORD.sub(" ", _fold_string(char)))
    for char in "’‘“”–—…€•·‹›\u202f\u2009\u2002\u2003\u2212œŒßæÆ"
)


_BEYOND_LATIN1 = re.compile(r"[^\x00-\xff]+")
_UNFOLDABLE = "µ"  # folds to Greek mu: the table keeps its byte, which is not ASCII


def _fold_run(run: re.Match[str]) -> str:
    """A run of characters beyond Latin-1 as ASCII letters, digits and spaces, or
    _UNFOLDABLE when one of them folds to something else (another script)."""
    folded = _NOT_WORD.sub(" ", _fold_string(run.group()))
    return folded if folded.isascii() else _UNFOLDABLE


_REPLACED: Final = dict(_REPLACEMENTS)
_MAX_GUIDED: Final = 3  # distinct characters beyond Latin-1 replaced as the encoder finds them


def _fold_text(text: str) -> str:
    """The tokens of `text` separated by spaces, by the definition but with C string
    operations: Latin-1 through one table, frequent characters beyond it replaced first,
    other runs beyond it folded one by one; text in other scripts by the definition."""
    if text.isascii():
        return text.encode("ascii").translate(_LATIN1_TABLE).decode("ascii")
    guided = _fold_guided(text)
    return _fold_replacing(text) if guided is None else guided


def _fold_guided(text: str) -> str | None:
    """The fast path of _fold_text for Latin text, or None to leave it to _fold_replacing.

    French copy is Latin-1 but for one or two characters (’, “”, …): the encoder's error
    names the first one, which is replaced everywhere at once, and the encoding retried.
    This costs a raised error or two instead of _fold_replacing's scan of the text for each
    of its 23 characters (issue 14: 4.1 -> 2.7 us of the 50 of matching a long French item,
    whose ’ is replaced before the first try). Same
    result: the characters replaced and their replacements are _fold_replacing's, which
    gives the same text whatever the order (each is replaced by ASCII), and a text it
    cannot finish (ß, another script) is left to _fold_replacing whole.
    """
    if "’" in text:  # in most French items: replaced before raising an error for it
        text = text.replace("’", _REPLACED["’"])
    for _ in range(_MAX_GUIDED + 1):
        try:
            encoded = text.encode("latin-1")
        except UnicodeEncodeError as error:
            char = text[error.start]
            folded = _REPLACED.get(char)
            if folded is None:
                return None
            text = text.replace(char, folded)
            continue
        encoded = encoded.translate(_LATIN1_TABLE, _LATIN1_DELETED)
        return encoded.decode("ascii") if encoded.isascii() else None
    return None


def _fold_replacing(text: str) -> str:
    """_fold_text for any text: every frequent character beyond Latin-1 replaced first."""
    original = text
    for char, folded in _REPLACEMENTS:
        if char in text:
            text = text.replace(char, folded)
    try:
        encoded = text.encode("latin-1")
    except UnicodeEncodeError:  # emoji, arrows...: few runs in Latin text
        encoded = _BEYOND_LATIN1.sub(_fold_run, text).encode("latin-1")
    encoded = encoded.translate(_LATIN1_TABLE, _LATIN1_DELETED)
    if encoded.isascii():
        return encoded.decode("ascii")
    return " ".join(chain.from_iterable(map(_CHUNK_TOKENS.__getitem__, original.split())))


def tokenize_text(text: str) -> tuple[str, ...]:
    """The words of `text` as matching sees them: case and accents folded, split on the rest.

    NFKD and casefold, combining marks dropped, œ æ ß ø ł đ ð þ ı spelled out, then runs of
    letters and digits: "L’Oréal" -> ("l", "oreal"), "E-commerce" -> ("e", "commerce").
    """
    return tuple(_fold_text(text).split())


# -- parsing -----------------------------------------------------------------------------

_QUOTES: Final = {'"': '"', "“": '”"“', "«": "»"}  # opening quote -> the quotes that close it
_WORD_END = re.compile(r'[\s"“«()]')
_NOT_SPACE = re.compile(r"\S")
_DIGITS = re.compile(r"[0-9]{1,3}")
_OPERATORS: Final = ("AND", "OR", "NOT")
_SHORT_PREFIX: Final = "'*' needs at least 2 letters or digits right before it"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # term ( ) AND OR NOT NEAR end
    position: int
    term: Term | None = None
    distance: int = DEFAULT_NEAR

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the query"
        return f"'{self.kind}'" if self.kind in "()" else self.kind


def _lex(text: str) -> Iterator[_Token]:
    """Tokens, lazily: the parser reports the leftmost problem, lexical or not."""
    pos = 0
    while True:
        start = _NOT_SPACE.search(text, pos)
        if start is None:
            yield _Token("end", len(text.rstrip()))
            return
        pos = start.start()
        char = text[pos]
        if char in "()":
            yield _Token(char, pos)
            pos += 1
        elif char in _QUOTES:
            end = next((i for i in range(pos + 1, len(text)) if text[i] in _QUOTES[char]), -1)
            if end < 0:
                raise QuerySyntaxError("unclosed quote", text, pos)
            star = text.startswith("*", end + 1)
            yield _Token("term", pos, term=_phrase(text, pos, end, star))
            pos = end + 1 + star
        else:
            end_match = _WORD_END.search(text, pos)
            word = text[pos : end_match.start() if end_match else len(text)]
            if word in _OPERATORS:
                yield _Token(word, pos)
            elif word == "NEAR" or word.startswith("NEAR/"):
                yield _Token("NEAR", pos, distance=_near_distance(text, pos, word))
            else:
                yield _Token("term", pos, term=_word(text, pos, word))
            pos += len(word)


def _near_distance(text: str, pos: int, word: str) -> int:
    if word == "NEAR":
        return DEFAULT_NEAR
    digits = word[len("NEAR/") :]
    if not _DIGITS.fullmatch(digits) or not 1 <= int(digits) <= MAX_NEAR:
        raise QuerySyntaxError(
            f"NEAR/n needs a whole number of words from 1 to {MAX_NEAR}", text, pos + 5
        )
    return int(digits)


def _word(text: str, pos: int, word: str) -> Term:
    star = word.find("*")
    if 0 <= star < len(word) - 1:
        raise QuerySyntaxError("'*' is only allowed at the end of a word", text, pos + star)
    core = word[:-1] if star >= 0 else word
    tokens = tokenize_text(core)
    if star >= 0 and (not tokens or len(tokens[-1]) < 2 or not core[-1:].isalnum()):
        raise QuerySyntaxError(_SHORT_PREFIX, text, pos + star)
    if not tokens:
        raise QuerySyntaxError(f"nothing to match in {word!r}", text, pos)
    if word.startswith("-"):  # web-search habit; silently matching the word would invert it
        raise QuerySyntaxError("to exclude a word, write NOT before it", text, pos)
    return Term(word, tokens, star >= 0, pos)


def _phrase(text: str, start: int, end: int, star_after: bool) -> Term:
    content = text[start + 1 : end].rstrip()
    star_inside = content.endswith("*")
    if star_inside:
        content = content[:-1]
    if (star := content.find("*")) >= 0:
        raise QuerySyntaxError(
            "'*' in a phrase is only allowed after its last word", text, start + 1 + star
        )
    tokens = tokenize_text(content)
    if not tokens:
        raise QuerySyntaxError("empty phrase", text, start)
    prefix = star_inside or star_after
    if prefix and (len(tokens[-1]) < 2 or not content[-1:].isalnum()):
        star_at = start + 1 + len(content) if star_inside else end + 1
        raise QuerySyntaxError(_SHORT_PREFIX, text, star_at)
    written = " ".join(content.split()) + ("*" if prefix else "")
    return Term(written, tokens, prefix, start)


class _Parser:
    """Recursive descent over the grammar in parse_query's docstring."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._tokens = _lex(text)
        self.token = next(self._tokens)
        self.depth = 0

    def error(self, message: str, position: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, position)

    def advance(self) -> _Token:
        token = self.token
        if token.kind != "end":
            self.token = next(self._tokens)
        return token

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"more than {MAX_DEPTH} nested '(' and NOT", token.position)

    def parse_or(self, after: _Token | None) -> Node:
        branches = [self.parse_and(after)]
        while self.token.kind == "OR":
            operator = self.advance()
            branches.append(self.parse_and(operator))
        return branches[0] if len(branches) == 1 else Or(tuple(branches), branches[0].position)

    def parse_and(self, after: _Token | None) -> Node:
        parts = [self.parse_near(after)]
        while True:
            if self.token.kind == "AND":
                operator = self.advance()
                parts.append(self.parse_near(operator))
            elif self.token.kind in ("term", "(", "NOT"):  # juxtaposition: an implicit AND
                parts.append(self.parse_near(None))
            else:
                return parts[0] if len(parts) == 1 else And(tuple(parts), parts[0].position)

    def parse_near(self, after: _Token | None) -> Node:
        starts = [self.token.position]
        operands = [self.parse_unary(after)]
        distances: list[int] = []
        while self.token.kind == "NEAR":
            operator = self.advance()
            distances.append(operator.distance)
            starts.append(self.token.position)
            operands.append(self.parse_unary(operator))
        if not distances:
            return operands[0]
        checked: list[Term | Or] = []
        for operand, start in zip(operands, starts, strict=True):
            if not _is_near_operand(operand):
                raise self.error(
                    'NEAR needs a word, a "phrase" or a (group OR of them) on each side', start
                )
            checked.append(operand)
        return Near(tuple(checked), tuple(distances), operands[0].position)

    def parse_unary(self, after: _Token | None) -> Node:
        if self.token.kind != "NOT":
            return self.parse_atom(after)
        operator = self.advance()
        self.nest(operator)
        child = self.parse_unary(operator)
        self.depth -= 1
        return child.child if isinstance(child, Not) else Not(child, operator.position)

    def parse_atom(self, after: _Token | None) -> Node:
        token = self.token
        if token.term is not None:
            self.advance()
            return token.term
        if token.kind == "(":
            self.advance()
            self.nest(token)
            inner = self.parse_or(token)
            self.depth -= 1
            if self.token.kind != ")":
                raise self.error("unclosed '('", token.position)
            self.advance()
            return inner
        if after is not None:
            found = "" if token.kind == "end" else f", found {token.describe()}"
            raise self.error(f"expected a term after {after.describe()}{found}", token.position)
        if token.kind == "end":
            raise self.error("empty query", token.position)
        if token.kind == ")":
            raise self.error("unexpected ')'", token.position)
        raise self.error(f"{token.kind} needs a term before it", token.position)


def _is_near_operand(node: Node) -> TypeGuard[Term | Or]:
    if isinstance(node, Or):
        return all(_is_near_operand(child) for child in node.children)
    return isinstance(node, Term)


def parse_query(text: str) -> Query:
    """Parse a watch query, or raise QuerySyntaxError pointing at the problem.

    or := and (OR and)*      and := near ((AND)? near)*      near := unary (NEAR[/n] unary)*
    unary := NOT unary | atom      atom := word | word* | "phrase" | ( or )
    """
    parser = _Parser(text)
    root = parser.parse_or(None)
    if parser.token.kind == ")":
        raise parser.error("unexpected ')'", parser.token.position)
    if not _requirements(root):
        branches = root.children if isinstance(root, Or) else (root,)
        if len(branches) > 1:
            culprit = next(b for b in branches if not _requirements(b))
            message = "this OR branch only excludes words, so it would match almost every item"
            raise parser.error(message, culprit.position)
        message = "the query only excludes words, so it would match almost every item"
        raise parser.error(message, root.position)
    return Query(text, root)


# -- matching ----------------------------------------------------------------------------

_Span = tuple[int, int, Term]  # first and last token index of one occurrence
_Clause = frozenset[str]  # keys (a token, or a prefix + "*"), one of which must be present


class _Document:
    """An item's tokens with lazily built lookups, shared by every query matched against it.

    CompiledWatches passes `words`, the tokens of the item among all its queries' words,
    and `folded` (the tokens with spaces between): words are decided by `words`, prefixes
    by a search in `folded`. Phrases and NEAR look for " tok1 tok2 " in the tokens joined
    by single spaces with str.find (C), and turn a character offset into a token index by
    counting the spaces before it: no Python loop over the item's tokens.
    """

    __slots__ = ("_joined", "_occurrences", "_token_set", "_words", "folded", "seen", "tokens")

    def __init__(
        self, tokens: Sequence[str], words: frozenset[str] | None = None, folded: str = ""
    ) -> None:
        self.tokens = tokens
        self._words = words
        self.folded = f" {folded} "  # so that " ab" finds a token starting with "ab"
        self._joined: str | None = None
        self._token_set: set[str] | None = None
        self.seen: dict[str, bool] = {}  # prefix key -> present
        self._occurrences: dict[int, list[_Span]] = {}  # by id(term): terms outlive documents

    @property
    def token_set(self) -> set[str]:
        if self._token_set is None:
            self._token_set = set(self.tokens)
        return self._token_set

    @property
    def joined(self) -> str:
        """The tokens, each between single spaces: ' tok0 tok1 … tokN '."""
        if self._joined is None:
            self._joined = f" {' '.join(self.tokens)} "
        return self._joined

    def contains(self, key: str) -> bool:
        """Whether the item has this token, or a token with this prefix when key ends in *."""
        if not key.endswith("*"):
            return key in (self.token_set if self._words is None else self._words)
        seen = self.seen.get(key)
        if seen is None:
            text = self.joined if self._words is None else self.folded
            seen = self.seen[key] = f" {key[:-1]}" in text
        return seen

    def satisfies(self, clause: _Clause) -> bool:
        """Whether the item has one of the clause's keys (words first: no search)."""
        if self._words is not None and not clause.isdisjoint(self._words):
            return True
        return any(self.contains(key) for key in clause if key.endswith("*"))

    def has(self, term: Term) -> bool:
        if len(term.tokens) == 1:
            return self.contains(term.keys[0])
        if not self._may_have(term):
            return False
        if self._words is not None:  # the folded text is there: no need to join the tokens
            return term.pattern.search(self.folded) is not None
        return self.joined.find(term.needle) >= 0

    def _may_have(self, term: Term) -> bool:
        """Cheap checks before a search: the term's words are all in the item (a prefix is
        left to the search itself, which costs as much as checking it)."""
        words = self.token_set if self._words is None else self._words
        return all(map(words.__contains__, term.words))

    def screens_out(self, near: Near) -> bool:
        """True when no pair of a two-operand NEAR is close enough (CompiledWatches only:
        it needs the folded text); False when it may be."""
        if self._words is None:
            return False
        text = self.folded
        return not any(
            self._may_have(term) and pattern.search(text) is not None
            for term, pattern in near.screens
        )

    def occurrences(self, term: Term) -> list[_Span]:
        """Every place `term` occurs, sorted by start."""
        found = self._occurrences.get(id(term))
        if found is None:
            found = self._occurrences[id(term)] = self._find(term)
        return found

    def _find(self, term: Term) -> list[_Span]:
        if not self._may_have(term):
            return []
        text = self.joined
        needle = term.needle
        count = text.count
        last = len(term.tokens) - 1
        found: list[_Span] = []
        index, before = -1, 0  # token index of the occurrence at offset `before`
        at = text.find(needle)
        while at >= 0:
            index += count(" ", before, at + 1)  # the spaces up to this token's own
            before = at + 1
            found.append((index, index + last, term))
            at = text.find(needle, at + 1)  # from the next character: overlaps count
        return found


def _evaluate(node: Node, document: _Document) -> list[Term] | None:
    """The terms that made `node` match (none from under a NOT), or None."""
    if isinstance(node, Term):
        return [node] if document.has(node) else None
    if isinstance(node, And):
        terms: list[Term] = []
        for child in node.children:
            found = _evaluate(child, document)
            if found is None:
                return None
            terms += found
        return terms
    if isinstance(node, Or):
        matched: list[Term] | None = None
        for child in node.children:  # no short cut: every matching branch reports its terms
            found = _evaluate(child, document)
            if found is not None:
                matched = found if matched is None else matched + found
        return matched
    if isinstance(node, Not):
        return None if _evaluate(node.child, document) is not None else []
    return _evaluate_near(node, document)


def _evaluate_near(node: Near, document: _Document) -> list[Term] | None:
    if node.screens and document.screens_out(node):
        return None
    # Forward: the occurrences of operand i that end a valid chain from operand 0; backward:
    # those also continued to the last operand. What is left took part in a match.
    alive = [_spans(node.operands[0], document)]
    for operand, distance in zip(node.operands[1:], node.distances, strict=True):
        spans = _spans(operand, document) if alive[-1] else []
        alive.append(_near_any(spans, alive[-1], distance) if spans else spans)
        if not alive[-1]:
            return None
    kept = alive[-1]
    terms = [span[2] for span in kept]
    for index in range(len(alive) - 2, -1, -1):
        kept = _near_any(alive[index], kept, node.distances[index])
        terms += (span[2] for span in kept)
    return terms


def _spans(operand: Node, document: _Document) -> list[_Span]:
    """The occurrences of a NEAR operand: a term, or an OR of them (parse_query checks)."""
    if isinstance(operand, Term):
        return document.occurrences(operand)
    if isinstance(operand, Or):
        return list(chain.from_iterable(_spans(child, document) for child in operand.children))
    return []


def _near_any(spans: list[_Span], others: list[_Span], distance: int) -> list[_Span]:
    """The spans with at least one of `others` 1..distance tokens before or after them."""
    ends = sorted(other[1] for other in others)
    starts = sorted(other[0] for other in others)
    return [
        span
        for span in spans
        if bisect_left(ends, span[0] - distance) < bisect_left(ends, span[0])
        or bisect_right(starts, span[1]) < bisect_right(starts, span[1] + distance)
    ]


def _report(terms: list[Term]) -> tuple[str, ...]:
    ordered = sorted(terms, key=lambda term: term.position)
    return tuple(dict.fromkeys(term.text for term in ordered))


def match(query: Query, tokens: Sequence[str]) -> tuple[str, ...] | None:
    """None, or the query's words and phrases that matched `tokens` (from tokenize_text).

    Terms are reported as written in the query, once each, in query order; terms under a
    NOT are never reported.
    """
    found = _evaluate(query.root, _Document(tokens))
    return None if found is None else _report(found)


# -- many queries at once ----------------------------------------------------------------

_MAX_OR_CLAUSES: Final = 8


def _requirements(node: Node) -> tuple[_Clause, ...]:
    """Clauses that every match of `node` satisfies: each has a key the item contains.

    Empty when a match needs no word at all (a NOT, or an OR with such a branch).
    """
    if isinstance(node, Term):
        return tuple(frozenset({key}) for key in dict.fromkeys(node.keys))
    if isinstance(node, Not):
        return ()
    if isinstance(node, Or):
        branches = [_requirements(child) for child in node.children]
        if not all(branches):
            return ()
        if prod(map(len, branches)) > _MAX_OR_CLAUSES:  # too many to distribute: one clause
            return (frozenset(chain.from_iterable(map(_primary, branches))),)
        # (a AND b) OR c == (a OR c) AND (b OR c): one clause per choice of a clause per branch
        return tuple(dict.fromkeys(frozenset().union(*pick) for pick in product(*branches)))
    parts = node.children if isinstance(node, And) else node.operands
    return tuple(dict.fromkeys(chain.from_iterable(map(_requirements, parts))))


def _terms(node: Node) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Not):
        yield from _terms(node.child)
    else:
        for child in node.children if isinstance(node, And | Or) else node.operands:
            yield from _terms(child)


def _primary(clauses: tuple[_Clause, ...]) -> _Clause:
    """The clause that looks rarest in text: no prefix, fewest keys, then the longest words."""
    return min(
        clauses,
        key=lambda c: (any(k.endswith("*") for k in c), len(c), -min(len(k) for k in c)),
    )


class CompiledWatches:
    """Many watch queries, compiled once, matched against one item at a time.

    Each query is indexed under its rarest-looking required clause, so an item only looks at
    the queries sharing a word with it, and evaluates those whose clauses it all satisfies.
    """

    def __init__(self, queries: Mapping[str, Query]) -> None:
        self._queries = tuple(queries.items())
        self._clauses = tuple(_requirements(query.root) for _, query in self._queries)
        self._by_key: dict[str, list[int]] = {}
        self._always: list[int] = []  # only a Query built by hand can require no word
        for index, clauses in enumerate(self._clauses):
            if not clauses:
                self._always.append(index)
            for key in _primary(clauses) if clauses else ():
                self._by_key.setdefault(key, []).append(index)
        # Every word of every term, under NOT too, so that the item's `words` decide them.
        keys = {key for _, query in self._queries for t in _terms(query.root) for key in t.keys}
        self._words = frozenset(key for key in keys if not key.endswith("*"))
        # Prefixes that index a query are looked for in every item; others when needed.
        self._indexing_prefixes = tuple(
            (key, re.compile(_after_space(key[:-1])).search)  # faster than " prefix" in text
            for key in sorted(k for k in self._by_key if k.endswith("*"))
        )
        self._index_words = frozenset(k for k in self._by_key if not k.endswith("*"))

    def match_item(self, title: str, summary: str) -> dict[str, tuple[str, ...]]:
        """Watch name -> matched terms, for the watches that match; as `match` one by one
        on tokenize_text(f"{title} {summary}")."""
        folded = _fold_text(f"{title} {summary}")
        tokens = folded.split()
        words = self._words.intersection(tokens)
        document = _Document(tokens, words, folded)
        text = document.folded
        seen = document.seen
        by_key = self._by_key
        candidates = set(self._always)
        for key in self._index_words.intersection(words):
            candidates.update(by_key[key])
        for key, search in self._indexing_prefixes:  # looked for in every item: note it
            if seen.setdefault(key, search(text) is not None):
                candidates.update(by_key[key])
        if not candidates:
            return {}
        matched: dict[str, tuple[str, ...]] = {}
        for index in sorted(candidates):
            if not all(map(document.satisfies, self._clauses[index])):
                continue
            name, query = self._queries[index]
            found = _evaluate(query.root, document)
            if found is not None:
                matched[name] = _report(found)
        return matched
