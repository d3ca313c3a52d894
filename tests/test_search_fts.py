"""One query language: `listener search` reads the watch language, written as FTS5, finds
what a watch finds, and reports errors as a watch does."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.errors import QuerySyntaxError
from listener.store import open_store
from listener.watches.fts import to_fts_query
from tests.polls import apply_poll
from tests.test_cli import invoke
from tests.test_store import make_item, poll


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recrutement", '"recrutement"'),
        ("Grève", '"greve"'),
        ("l'oréal", '"l oreal"'),
        ("e-commerce AND grève", '("e commerce" AND "greve")'),
        ('"service client" OR sav', '("service client" OR "sav")'),
        ("emploi*", '"emploi" *'),
        ("(a OR b) NOT c", '((("a" OR "b")) NOT "c")'),
        ("acme NEAR/3 rachat", '(NEAR("acme" "rachat", 2))'),
        (
            "(acme OR globex) NEAR/2 rachat",
            '(NEAR("acme" "rachat", 1) OR NEAR("globex" "rachat", 1))',
        ),
    ],
)
def test_to_fts_query(text: str, expected: str) -> None:
    assert to_fts_query(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ('"abc', "unclosed quote", 0),
        ("AND x", "AND needs a term before it", 0),
        ("x OR", "expected a term after OR", 4),
        ("NOT acme", "the query only excludes words, so it would match almost every item", 0),
        ("x AND (y OR NOT z)", "search cannot find items by what they lack alone", 12),
    ],
)
def test_errors_are_the_watch_errors_with_a_position(
    text: str, message: str, position: int
) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        to_fts_query(text)
    assert caught.value.message.startswith(message)
    assert caught.value.position == position


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
    except QuerySyntaxError:
        return
    fts.execute("SELECT count(*) FROM t WHERE t MATCH ?", [query]).fetchone()


@pytest.mark.parametrize("text", ["equipiers", "ÉQUIPIERS", "l'oreal", "e-commerce", "recru*"])
def test_accents_and_case_are_folded(fts: sqlite3.Connection, text: str) -> None:
    query = to_fts_query(text)
    assert fts.execute("SELECT count(*) FROM t WHERE t MATCH ?", [query]).fetchone()[0] == 1


TEXTS = [
    "Acme va racheter Globex",
    "Acme x y z rachat",
    "Rachat de Acme par ses salariés",
    "L'Oréal recrute en e-commerce",
    "Grève chez Globex: la direction répond",
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "l.db"
    store = open_store(path)
    store.add_feed("https://a.example/feed", now=make_item(1, 1).published_at, tags=["press"])
    (source,) = store.feed_sources(None)
    items = [make_item(source.id, n, title=text, summary="") for n, text in enumerate(TEXTS)]
    apply_poll(store, poll(source.id), items)
    store.close()
    return path


@pytest.mark.parametrize(
    "query",
    [
        "acme NEAR/3 rachat",
        "acme NEAR/5 rachat*",
        "(acme OR globex) NEAR/2 (rachat OR racheter)",
        "globex NOT greve",
        '"la direction" OR oreal',
        "recru* AND e-commerce",
        "acme NEAR/2 racheter NEAR/2 globex",
        "acme NEAR/4 salaries",
    ],
)
def test_search_finds_what_a_watch_finds(db: Path, query: str) -> None:
    searched = invoke(db, "search", query, "--json", "--limit", "100")
    assert searched.exit_code == 0, searched.output
    tested = invoke(db, "watch", "test", "--query", query, "--json", "--limit", "100")
    assert tested.exit_code == 0, tested.output
    found = {json.loads(line)["title"] for line in searched.stdout.splitlines()}
    watched = {json.loads(line)["title"] for line in tested.stdout.splitlines()}
    assert found == watched
    assert found, "each query matches something here"


def test_search_and_watch_report_a_bad_query_alike(db: Path) -> None:
    searched = invoke(db, "search", "acme OR NOT")
    watched = invoke(db, "watch", "test", "--query", "acme OR NOT")
    assert searched.exit_code == watched.exit_code == 2
    expected = "bad query: expected a term after NOT at position 11\n  acme OR NOT\n             ^"
    assert expected in searched.output
    assert expected in watched.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--tag", "nope", "no feed has tag 'nope' (known: press)"),
        ("--feed", "https://b.example/feed", "no feed with URL 'https://b.example/feed'"),
        ("--watch", "nope", "no watch named 'nope'"),
    ],
)
@pytest.mark.parametrize("command", ["search", "export"])
def test_an_unknown_tag_feed_or_watch_is_a_usage_error(
    db: Path, command: str, option: str, value: str, message: str
) -> None:
    args = [command, "acme"] if command == "search" else [command]
    result = invoke(db, *args, option, value)
    assert result.exit_code == 2
    assert message in result.output
