from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.errors import QuerySyntaxError as QueryError
from listener.store.search_query import to_fts_query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recrutement", "recrutement"),
        ("Grève", "Grève"),
        ("l'oréal", '"l\'oréal"'),
        ("e-commerce AND grève", '"e-commerce" AND grève'),
        ('"service client" OR sav', '"service client" OR sav'),
        ("emploi*", "emploi*"),
        ('"marque employ"*', '"marque employ" *'),
        ("(a OR b) NOT c", "( a OR b ) NOT c"),
        ("c++", '"c++"'),
        ("  spaced   words  ", "spaced words"),
    ],
)
def test_to_fts_query(text: str, expected: str) -> None:
    assert to_fts_query(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"abc', "unclosed quote at position 1"),
        ("AND x", "AND at position 1 needs a term before it"),
        ("x OR", "OR at the end of the query needs a term after it"),
        ("(x", "unclosed '('"),
        ("x)", "unexpected ')' at position 2"),
        ("", "empty search query"),
        ("()", "unexpected ')' at position 2"),
        ("!!", "nothing to search for"),
        ('""', "empty phrase at position 1"),
    ],
)
def test_to_fts_query_errors_point_at_the_problem(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_fts_query(text)


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute("INSERT INTO t VALUES ('L''Oréal recrute 300 équipiers en e-commerce')")
    return conn


@given(st.text(max_size=60))
def test_any_text_is_a_valid_fts_query_or_a_query_error(fts: sqlite3.Connection, text: str) -> None:
    try:
        query = to_fts_query(text)
    except QueryError:
        return
    fts.execute("SELECT count(*) FROM t WHERE t MATCH ?", [query]).fetchone()


@pytest.mark.parametrize("text", ["equipiers", "ÉQUIPIERS", "l'oreal", "e-commerce", "recru*"])
def test_accents_and_case_are_folded(fts: sqlite3.Connection, text: str) -> None:
    query = to_fts_query(text)
    assert fts.execute("SELECT count(*) FROM t WHERE t MATCH ?", [query]).fetchone()[0] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(0)0", "( 0 ) AND 0"),
        ("a (b OR c)", "a AND ( b OR c )"),
        ('(a) "b c"', '( a ) AND "b c"'),
        ("(a)(b)", "( a ) AND ( b )"),
        ("a b NOT c", "a b NOT c"),  # between words FTS5's own implicit AND is kept
        ("AND*", '"AND" *'),  # a keyword that is not an operator here is a word
        ("NEAR", '"NEAR"'),
    ],
)
def test_terms_next_to_a_parenthesis_get_an_explicit_and(text: str, expected: str) -> None:
    assert to_fts_query(text) == expected
