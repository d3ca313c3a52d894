"""`listener watch`: add (with backfill), list, remove, test; config watches stay in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listener.store import open_store
from tests.conftest import NOW
from tests.polls import apply_poll
from tests.test_cli import invoke
from tests.test_store import make_item, poll

TITLES = ["Acme Corp opens a plant", "Globex hires", "Société Générale et ACME", "Nothing"]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "l.db"
    store = open_store(path)
    store.add_feed("https://a.example/feed", now=NOW, tags=["press"])
    items = [make_item(1, n, title=title) for n, title in enumerate(TITLES)]
    apply_poll(store, poll(1, new=len(items)), items)
    store.close()
    return path


def test_watch_add_backfills_and_list_shows_the_mentions(db: Path) -> None:
    result = invoke(db, "watch", "add", "acme", '"acme corp" OR acme', "--kind", "brand")
    assert result.exit_code == 0, result.output
    assert "added watch 'acme'" in result.output
    assert "acme: 2 mentions in stored items" in result.output
    listed = json.loads(invoke(db, "watch", "list", "--json").output)
    assert listed == [
        {
            "name": "acme",
            "kind": "brand",
            "query": '"acme corp" OR acme',
            "tags": [],
            "origin": "cli",
            "mentions": 2,
            "last_mention_at": listed[0]["last_mention_at"],
            "backfill_pending": False,
        }
    ]


def test_watch_add_with_a_bad_query_points_at_the_problem(db: Path) -> None:
    result = invoke(db, "watch", "add", "acme", "acme AND (globex")
    assert result.exit_code == 2
    assert "unclosed '(' at position 9" in result.output
    assert "Traceback" not in result.output
    assert "no watches yet" in invoke(db, "watch", "list").output


def test_watch_add_again_changes_the_query_and_matches_again(db: Path) -> None:
    invoke(db, "watch", "add", "acme", "acme")
    result = invoke(db, "watch", "add", "acme", "globex", "--no-backfill")
    assert "changed watch 'acme'" in result.output
    assert "0 mentions" in result.output
    assert "backfill pending" in invoke(db, "watch", "list").output
    assert "matched 4 items" in invoke(db, "watch", "backfill").output
    assert "1 mention," in invoke(db, "watch", "list").output
    assert "every watch is up to date" in invoke(db, "watch", "backfill").output


def test_watch_test_shows_matches_newest_first_with_terms(db: Path) -> None:
    invoke(db, "watch", "add", "acme", "acme NOT globex")
    result = invoke(db, "watch", "test", "acme", "--json")
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [row["title"] for row in rows] == [TITLES[0], TITLES[2]]  # item n is n hours old
    assert rows[1]["terms"] == ["acme"]
    text = invoke(db, "watch", "test", "--query", '"societe generale"').output
    assert "Société Générale et ACME" in text
    assert "1 of 4 items match" in text


def test_watch_test_needs_a_name_or_a_query(db: Path) -> None:
    assert invoke(db, "watch", "test").exit_code == 2
    result = invoke(db, "watch", "test", "--query", "NOT acme")
    assert result.exit_code == 2
    assert "only excludes words" in result.output


def test_watch_remove(db: Path) -> None:
    invoke(db, "watch", "add", "acme", "acme")
    assert "removed watch 'acme' (2 mentions)" in invoke(db, "watch", "remove", "acme").output
    result = invoke(db, "watch", "remove", "acme")
    assert result.exit_code == 2
    assert "no watch named 'acme'" in result.output


def test_config_watches_are_synced_and_only_changed_in_the_config(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[watches]]\nname = "globex"\nkind = "competitor"\nquery = "globex"\n')
    listed = invoke(db, "watch", "list", config=config).output
    assert "globex" in listed
    assert "[config]" in listed
    result = invoke(db, "watch", "remove", "globex", config=config)
    assert "defined in the config file" in result.output
    config.write_text("")
    assert "no watches yet" in invoke(db, "watch", "list", config=config).output


def test_bad_config_watch_is_reported_with_its_key(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[watches]]\nname = "x y"\nkind = "rival"\nquery = "a OR"\n')
    result = invoke(db, "watch", "list", config=config)
    assert result.exit_code == 1
    assert "watches[0].name" in result.output
    assert "watches[0].kind: must be one of brand, competitor, person, topic" in result.output
    assert "watches[0].query: expected a term after OR at position 4" in result.output


def test_search_and_export_filter_by_watch(db: Path) -> None:
    invoke(db, "watch", "add", "globex", "globex")
    exported = invoke(db, "export", "--watch", "globex").stdout.splitlines()
    assert [json.loads(line)["title"] for line in exported] == ["Globex hires"]
    assert "Globex hires" in invoke(db, "search", "hires", "--watch", "globex").output
    unknown = invoke(db, "export", "--watch", "nope")
    assert unknown.exit_code == 2
    assert "no watch named 'nope' (known: globex)" in unknown.output
