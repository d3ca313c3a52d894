from __future__ import annotations

import pickle
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.errors import ListenerError, QuerySyntaxError
from listener.watches.query import (
    And,
    CompiledWatches,
    Near,
    Node,
    Not,
    Or,
    Query,
    Term,
    _fold_guided,
    _fold_replacing,
    _fold_text,
    _fragment,
    match,
    parse_query,
    tokenize_text,
)

FILLER = "one two three four five six seven eight nine"


def matches(query: str, text: str) -> tuple[str, ...] | None:
    return match(parse_query(query), tokenize_text(text))


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        # brands, case and accents
        ("Acme", "Acme Corp posts record results", ("Acme",)),
        ("acme", "ACME’s results", ("acme",)),
        ("Acme", "Acmeco posts results", None),  # whole words only
        ('"Société Générale"', "La societe generale recrute", ("Société Générale",)),
        ('"Société Générale"', "SOCIÉTÉ GÉNÉRALE : résultats", ("Société Générale",)),
        ('"Société Générale"', "Générale, société anonyme", None),  # a phrase keeps its order
        ("Société Générale", "Générale, société anonyme", ("Société", "Générale")),  # AND
        ("“Société Générale”", "societe generale", ("Société Générale",)),  # typographic quotes
        ("L’Oréal", "L'OREAL annonce ses résultats", ("L’Oréal",)),
        ("l'oréal", "L’Oréal Paris recrute", ("l'oréal",)),
        ("l'oréal", "Oréal", None),  # the phrase "l oreal"
        ("cœur", "COEUR de cible", ("cœur",)),
        ("straße", "STRASSE", ("straße",)),
        ("e-commerce", "L'E-Commerce progresse", ("e-commerce",)),
        ("e-commerce", "le e commerce", ("e-commerce",)),
        ("e-commerce", "l'ecommerce", None),
        ('"CAC 40"', "le CAC-40 recule", ("CAC 40",)),
        # prefixes
        ("recrut*", "Le groupe recrute 300 personnes", ("recrut*",)),
        ("recrut*", "Campagne de recrutement", ("recrut*",)),
        ("recrut*", "Une nouvelle recrue", None),
        ('"marque employ"*', "notre marque employeur", ("marque employ*",)),
        ('"marque employ*"', "la marque employeur", ("marque employ*",)),
        # NEAR
        ("acme NEAR/3 lawsuit", "Acme faces a lawsuit", ("acme", "lawsuit")),
        ("acme NEAR/3 lawsuit", "Acme faces a major lawsuit", None),
        ("acme NEAR/3 lawsuit", "A lawsuit hits Acme", ("acme", "lawsuit")),  # either order
        ("acme NEAR lawsuit", f"Acme {FILLER} lawsuit", ("acme", "lawsuit")),  # NEAR/10
        ("acme NEAR lawsuit", f"Acme {FILLER} ten lawsuit", None),
        ("acme NEAR/1 acme", "acme, acme", ("acme",)),  # two occurrences
        ("acme NEAR/1 acme", "acme", None),
        ("(acme OR globex) NEAR/2 recall", "Globex announces recall", ("globex", "recall")),
        ("(acme OR globex) NEAR/2 recall", "Acme and Globex announce a recall", None),
        (
            '"Société Générale" NEAR/2 rachat',
            "rachat de Société Générale",
            ("Société Générale", "rachat"),
        ),
        ('"Société Générale" NEAR/2 rachat', "rachat annoncé de la Société Générale", None),
        (
            '"Société Générale" NEAR/2 rachat',
            "Société Générale : rachat",
            ("Société Générale", "rachat"),
        ),
        ("acme NEAR/2 recall NEAR/2 car*", "Acme recall cars", ("acme", "recall", "car*")),
        ("acme NEAR/2 recall NEAR/2 car*", f"Acme recall {FILLER} cars", None),
        # NOT, parentheses, precedence, implicit AND
        ("acme NOT job*", "Acme posts results", ("acme",)),
        ("acme NOT job*", "Acme: 40 jobs open", None),
        ("acme AND NOT (job* OR stage)", "Acme stage d'été", None),
        ("NOT NOT acme", "acme", ("acme",)),
        ("acme AND (lawsuit OR NOT settlement)", "Acme wins", ("acme",)),
        ("acme AND (lawsuit OR NOT settlement)", "Acme settlement", None),
        (
            "(acme OR globex) AND (lawsuit OR recall)",
            "Globex issues a recall",
            ("globex", "recall"),
        ),
        ("(acme OR globex) (lawsuit OR recall)", "Acme wins", None),
        ("acme OR globex lawsuit", "Globex wins", None),  # a OR (b AND c)
        ("acme OR globex lawsuit", "Acme wins", ("acme",)),
        ("acme globex OR lawsuit", "a lawsuit", ("lawsuit",)),  # (a AND b) OR c
        # operators are uppercase; lowercase ones are words
        ("acme or globex", "Acme or Globex", ("acme", "or", "globex")),
        ("acme or globex", "Acme wins", None),
        ('"AND"', "this and that", ("AND",)),
        # what is reported: as written, once, in query order, nothing from under NOT
        ("lawsuit OR acme", "Acme lawsuit", ("lawsuit", "acme")),
        ("acme OR (acme NEAR/5 lawsuit)", "Acme lawsuit", ("acme", "lawsuit")),
        ("acme NOT (lawsuit NEAR/1 settled)", "Acme lawsuit", ("acme",)),
    ],
)
def test_match(query: str, text: str, expected: tuple[str, ...] | None) -> None:
    assert matches(query, text) == expected


NEAR_OPERANDS = 'NEAR needs a word, a "phrase" or a (group OR of them) on each side'
NEAR_DISTANCE = "NEAR/n needs a whole number of words from 1 to 100"
SHORT_PREFIX = "'*' needs at least 2 letters or digits right before it"
ONLY_NOT = "the query only excludes words, so it would match almost every item"


@pytest.mark.parametrize(
    ("query", "message", "position"),
    [
        ("", "empty query", 0),
        ("   ", "empty query", 0),
        ("acme OR", "expected a term after OR", 7),
        ("acme OR   ", "expected a term after OR", 7),
        ("OR acme", "OR needs a term before it", 0),
        ("acme AND AND corp", "expected a term after AND, found AND", 9),
        ("acme (", "expected a term after '('", 6),
        ("()", "expected a term after '(', found ')'", 1),
        ("acme NEAR", "expected a term after NEAR", 9),
        ('"acme', "unclosed quote", 0),
        ('acme "corp', "unclosed quote", 5),
        ("«acme", "unclosed quote", 0),
        ('""', "empty phrase", 0),
        ('acme " ! "', "empty phrase", 5),
        ("(acme OR corp", "unclosed '('", 0),
        ("acme)", "unexpected ')'", 4),
        (")", "unexpected ')'", 0),
        ("acme NEAR/0 corp", NEAR_DISTANCE, 10),
        ("acme NEAR/x corp", NEAR_DISTANCE, 10),
        ("acme NEAR/101 corp", NEAR_DISTANCE, 10),
        ("acme NEAR/ corp", NEAR_DISTANCE, 10),
        ("*", SHORT_PREFIX, 0),
        ("a*", SHORT_PREFIX, 1),
        ("l'o*", SHORT_PREFIX, 3),
        ('"a"*', SHORT_PREFIX, 3),
        ("ac*me", "'*' is only allowed at the end of a word", 2),
        ("acme**", "'*' is only allowed at the end of a word", 4),
        ('"acme * corp"', "'*' in a phrase is only allowed after its last word", 6),
        ("!!", "nothing to match in '!!'", 0),
        ("acme -corp", "to exclude a word, write NOT before it", 5),
        ("NOT acme", ONLY_NOT, 0),
        ("NOT acme NOT corp", ONLY_NOT, 0),
        ("(NOT acme)", ONLY_NOT, 1),
        (
            "acme OR NOT corp",
            "this OR branch only excludes words, so it would match almost every item",
            8,
        ),
        ("(acme corp) NEAR/3 lawsuit", NEAR_OPERANDS, 0),
        ("acme NEAR/3 NOT corp", NEAR_OPERANDS, 12),
        ("a NEAR (b NEAR c)", NEAR_OPERANDS, 7),
        ("(" * 40 + "acme" + ")" * 40, "more than 32 nested '(' and NOT", 32),
        ("NOT " * 40 + "acme", "more than 32 nested '(' and NOT", 128),
    ],
)
def test_parse_query_errors_point_at_the_problem(query: str, message: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert (caught.value.message, caught.value.position) == (message, position)
    assert caught.value.query == query


def test_query_syntax_error_shows_a_caret_under_the_position() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query("acme OR\tNOT")
    assert isinstance(caught.value, ListenerError)
    assert str(caught.value) == (
        "expected a term after NOT at position 11\n  acme OR NOT\n             ^"
    )
    copied = pickle.loads(pickle.dumps(caught.value))  # noqa: S301  # our own object, in memory
    assert (copied.message, copied.query, copied.position) == (
        caught.value.message,
        caught.value.query,
        11,
    )


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("L’Oréal, Société Générale!", ("l", "oreal", "societe", "generale")),
        ("E-COMMERCE & CAC-40", ("e", "commerce", "cac", "40")),
        ("cœur Œuvre Straße ÆTHER naïve", ("coeur", "oeuvre", "strasse", "aether", "naive")),
        (
            "snake_case l’équipe — «top» 🎉 10 000 €",
            ("snake", "case", "l", "equipe", "top", "10", "000"),
        ),
        ("Ørsted Łódź İstanbul ½ ﬁn", ("orsted", "lodz", "istanbul", "1", "2", "fin")),
        ("Cafe\u0301 decomposed", ("cafe", "decomposed")),
        ("Москва Zürich", ("москва", "zurich")),
        ("", ()),
    ],
)
def test_tokenize_text(text: str, tokens: tuple[str, ...]) -> None:
    assert tokenize_text(text) == tokens


# -- properties ----------------------------------------------------------------------------

LETTERS = str.maketrans(
    {"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
    | {"ʼ": " ", "ʻ": " "}
)


def tokens_by_definition(text: str) -> tuple[str, ...]:
    """tokenize_text's definition, written plainly (the module's fast path must agree)."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    folded = "".join(c for c in folded if unicodedata.category(c) not in ("Mn", "Me"))
    return tuple(re.findall(r"[^\W_]+", folded.translate(LETTERS)))


# Text as feeds write it: Latin-1, French and English typography, some emoji and Cyrillic.
TYPOGRAPHY = "’‘“”«»–—…€•·\u202f\u00a0œŒßæÆøØłıİ🎉ДдЖ\u0301\u0327\ufe0f\u200d"
LATIN_TEXT = st.text(alphabet=st.characters(codec="latin-1") | st.sampled_from(TYPOGRAPHY))


@given(st.text() | LATIN_TEXT)
def test_tokenize_text_follows_its_definition(text: str) -> None:
    assert tokenize_text(text) == tokens_by_definition(text)


# French copy: Latin-1 with a few characters beyond it, sometimes many kinds of them.
FRENCH_COPY = st.text(
    alphabet=st.sampled_from("aéèàçÀÉôœŒßæ ,.'’") | st.sampled_from(TYPOGRAPHY), max_size=60
)


@given(FRENCH_COPY | LATIN_TEXT)
def test_fold_guided_gives_the_answer_of_fold_replacing(text: str) -> None:
    """The fast path for French text (issue 14) folds as the general path, or declines."""
    guided = _fold_guided(text)
    assert guided is None or guided == _fold_replacing(text)
    assert _fold_text(text) == _fold_replacing(text)


@given(LATIN_TEXT)
def test_tokenize_text_folds_case_and_accents(text: str) -> None:
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    )
    tokens = tokenize_text(text)
    assert tokenize_text(text.upper()) == tokens
    assert tokenize_text(stripped) == tokens
    assert tokenize_text(" ".join(tokens)) == tokens


QUERY_TERMS = st.sampled_from(
    [
        "acme",
        "Acme",
        "Société",
        "generale",
        "l'oréal",
        "recrut*",
        "soc*",
        "cœur",
        "e-commerce",
        "lawsuit",
        "news",
        "40",
        "straße",
        '"société générale"',
        '"acme news"',
        '"l’oréal recrute"',
    ]
)
NEAR_OPERAND = QUERY_TERMS | st.lists(QUERY_TERMS, min_size=2, max_size=3).map(
    lambda terms: "(" + " OR ".join(terms) + ")"
)
NEAR_QUERIES = st.builds(
    lambda a, n, b: f"{a} NEAR/{n} {b}", NEAR_OPERAND, st.integers(1, 4), NEAR_OPERAND
)
QUERIES = st.recursive(
    QUERY_TERMS | NEAR_QUERIES,
    lambda inner: st.one_of(
        st.builds(
            lambda a, op, b: f"{a}{op}{b}", inner, st.sampled_from([" AND ", " OR ", " "]), inner
        ),
        inner.map(lambda q: f"({q})"),
        st.builds(lambda a, b: f"{a} NOT ({b})", inner, inner),
    ),
    max_leaves=6,
)
TEXT_WORDS = st.sampled_from(
    [
        "Acme",
        "ACME",
        "acme’s",
        "Société",
        "SOCIETE",
        "générale",
        "Generale",
        "L’Oréal",
        "l'OREAL",
        "recrutement",
        "recrute",
        "recrue",
        "cœur",
        "COEUR",
        "e-commerce",
        "lawsuit",
        "news",
        "40",
        "Straße",
        "STRASSE",
        "the",
        "de",
        "la",
        "et",
        "and",
        "or",
        "not",
        "near",
        "x",
        "y",
    ]
)
SEPARATORS = st.sampled_from([" ", " ", " ", ", ", ". ", "’", "-", " (", ") ", "\n", " — "])
TEXTS = st.lists(st.tuples(TEXT_WORDS, SEPARATORS), max_size=30).map(
    lambda pairs: "".join(word + separator for word, separator in pairs)
)

OPERATOR_SOUP = st.lists(
    st.sampled_from(
        [
            *("AND", "OR", "NOT", "NEAR", "NEAR/3", "NEAR/0", "(", ")", '"', "“", "”", "«", "»"),
            *("*", "acme", "ac*", "é", "l'o", "-x", "!", " ", "  ", "\t", "x*y", '"a b"*'),
        ]
    ),
    max_size=20,
).map(" ".join)


@given(st.text(max_size=80) | OPERATOR_SOUP, TEXTS)
def test_any_string_is_a_query_or_a_syntax_error(text: str, item: str) -> None:
    try:
        query = parse_query(text)
    except QuerySyntaxError as error:
        assert error.query == text  # noqa: PT017  # hypothesis: no pytest.raises per example
        assert 0 <= error.position <= len(text)  # noqa: PT017
        return
    found = match(query, tokenize_text(item))
    assert found is None or found  # a match always reports a term
    assert CompiledWatches({"q": query}).match_item(item, "").get("q") == found


@given(QUERIES, TEXTS)
def test_matched_terms_are_written_in_the_query(text: str, item: str) -> None:
    found = matches(text, item)
    assert found is None or (found and all(term in text for term in found))


@given(QUERY_TERMS, QUERIES, TEXTS)
def test_not_is_the_complement(x: str, q: str, item: str) -> None:
    tokens = tokenize_text(item)
    expected = matches(x, item) is not None and matches(q, item) is None
    for form in (f"{x} AND NOT ({q})", f"{x} NOT ({q})", f"NOT ({q}) {x}"):
        assert (match(parse_query(form), tokens) is not None) == expected


@given(QUERIES, QUERIES, TEXTS)
def test_or_and_and_combine_matches(a: str, b: str, item: str) -> None:
    found_a, found_b = matches(a, item) is not None, matches(b, item) is not None
    assert (matches(f"({a}) OR ({b})", item) is not None) == (found_a or found_b)
    assert (matches(f"({a}) ({b})", item) is not None) == (found_a and found_b)


@given(NEAR_OPERAND, NEAR_OPERAND, st.integers(1, 5), TEXTS)
def test_near_is_symmetric_and_grows_with_the_distance(a: str, b: str, n: int, item: str) -> None:
    found = matches(f"{a} NEAR/{n} {b}", item) is not None
    assert (matches(f"{b} NEAR/{n} {a}", item) is not None) == found
    if found:
        assert matches(f"{a} NEAR/{n + 1} {b}", item) is not None
        assert matches(f"{a} {b}", item) is not None


@given(QUERIES, TEXTS)
def test_matching_folds_case_and_accents(text: str, item: str) -> None:
    query = parse_query(text)
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", item) if not unicodedata.combining(c)
    )
    found = match(query, tokenize_text(item))
    assert match(query, tokenize_text(item.upper())) == found
    assert match(query, tokenize_text(stripped)) == found


@given(st.lists(QUERIES, min_size=1, max_size=8), TEXTS, TEXTS | st.text(max_size=40))
def test_compiled_watches_agree_with_match(texts: list[str], title: str, summary: str) -> None:
    queries = {f"w{i}": parse_query(text) for i, text in enumerate(texts)}
    tokens = tokenize_text(f"{title} {summary}")
    expected = {
        name: found
        for name, query in queries.items()
        if (found := match(query, tokens)) is not None
    }
    assert CompiledWatches(queries).match_item(title, summary) == expected


@given(NEAR_QUERIES | QUERY_TERMS, TEXTS)
def test_spaced_patterns_find_what_a_leading_space_finds(text: str, item: str) -> None:
    """The patterns written with a look-behind (issue 14) match where " " + fragment does."""
    root = parse_query(text).root
    folded = f" {_fold_text(item)} "
    if isinstance(root, Term):
        plain = re.compile(f" {_fragment(root)}(?= )")
        assert (root.pattern.search(folded) is None) is (plain.search(folded) is None)
    assert isinstance(root, Term | Near)
    for term, pattern in root.screens if isinstance(root, Near) else ():
        # the screen with its leading term written as before, the rest unchanged
        rest = pattern.pattern.removeprefix(f"{term.tokens[0]}(?<= {term.tokens[0]})")
        assert rest != pattern.pattern
        plain = re.compile(f" {term.tokens[0]}{rest}")
        assert (pattern.search(folded) is None) is (plain.search(folded) is None)


def test_compiled_watches_report_each_watch() -> None:
    watches = CompiledWatches(
        {
            "acme": parse_query("Acme NOT job*"),
            "banks": parse_query('"Société Générale" OR BNP'),
            "hiring": parse_query("recrut* NEAR/5 (acme OR globex)"),
            "lone": Query("NOT x", parse_query("NOT NOT x").root),  # built by hand: no key
        }
    )
    assert watches.match_item("Acme recrute 300 personnes", "chez SOCIÉTÉ GÉNÉRALE") == {
        "acme": ("Acme",),
        "banks": ("Société Générale",),
        "hiring": ("recrut*", "acme"),
    }
    assert watches.match_item("Acme : 300 jobs", "x") == {"lone": ("x",)}
    assert watches.match_item("Rien à signaler", "") == {}


# -- an independent oracle: the documented semantics, evaluated naively on the tokens --------


def _naive_occurrences(term: Term, tokens: tuple[str, ...]) -> list[tuple[int, int]]:
    size = len(term.tokens)
    found = []
    for start in range(len(tokens) - size + 1):
        window = tokens[start : start + size]
        head_ok = window[:-1] == term.tokens[:-1]
        last = window[-1]
        last_ok = last.startswith(term.tokens[-1]) if term.prefix else last == term.tokens[-1]
        if head_ok and last_ok:
            found.append((start, start + size - 1))
    return found


def _naive(node: Node, tokens: tuple[str, ...]) -> bool:
    if isinstance(node, Term):
        return bool(_naive_occurrences(node, tokens))
    if isinstance(node, And):
        return all(_naive(child, tokens) for child in node.children)
    if isinstance(node, Or):
        return any(_naive(child, tokens) for child in node.children)
    if isinstance(node, Not):
        return not _naive(node.child, tokens)
    assert isinstance(node, Near)

    def spans(operand: Node) -> list[tuple[int, int]]:
        if isinstance(operand, Term):
            return _naive_occurrences(operand, tokens)
        assert isinstance(operand, Or)
        return [span for child in operand.children for span in spans(child)]

    chains = spans(node.operands[0])  # spans that end a valid chain so far
    for operand, distance in zip(node.operands[1:], node.distances, strict=True):
        chains = [
            (start, end)
            for start, end in spans(operand)
            if any(0 < start - e <= distance or 0 < s - end <= distance for s, e in chains)
        ]
    return bool(chains)


@given(QUERIES, TEXTS)
def test_matching_agrees_with_a_naive_evaluation_of_the_tokens(text: str, item: str) -> None:
    query = parse_query(text)
    tokens = tokenize_text(item)
    expected = _naive(query.root, tokens)
    assert (match(query, tokens) is not None) is expected
    assert ("q" in CompiledWatches({"q": query}).match_item(item, "")) is expected
