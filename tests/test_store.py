from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from listener.domain import FeedUpdate, Item, ItemFilter, PollResult
from listener.errors import QuerySyntaxError as QueryError
from listener.errors import StoreError
from listener.store import Store, open_store
from listener.store._base import from_db_time, to_db_time
from tests.conftest import NOW
from tests.polls import apply_poll


def make_item(feed_id: int, n: int, **changes: object) -> Item:
    item = Item(
        feed_id=feed_id,
        key=f"k{feed_id}-{n}",
        guid=f"g{n}",
        url=f"https://example.com/{n}",
        title=f"Item {n}",
        summary=f"Summary {n}",
        author=None,
        published_at=NOW - timedelta(hours=n),
        published_raw="raw",
        lang="en",
        content_hash=f"h{n}",
    )
    return replace(item, **changes)  # type: ignore[arg-type]


def poll(feed_id: int, **changes: object) -> PollResult:
    result = PollResult(feed_id=feed_id, url="u", status="ok", started_at=NOW, duration_ms=5)
    return replace(result, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(db_path: Path) -> Store:
    return open_store(db_path)


def test_times_round_trip_as_utc_text() -> None:
    assert to_db_time(NOW) == "2026-11-26T08:00:00Z"
    assert from_db_time("2026-11-26T08:00:00Z") == NOW


def test_add_feed_is_idempotent_and_merges_tags(store: Store) -> None:
    assert store.add_feed("https://a.example/feed", now=NOW, tags=["hr"]) is True
    assert store.add_feed("https://a.example/feed", now=NOW, tags=["fr", "hr"]) is False
    (row,) = store.list_feeds()
    assert row.tags == ("fr", "hr")
    assert row.last_status is None


def test_save_poll_inserts_new_and_updates_changed_items(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    items = [make_item(source.id, n) for n in range(3)]
    apply_poll(store, poll(source.id, new=3), items)
    assert store.known_hashes(source.id, ["k1-0", "k1-1", "nope"]) == {"k1-0": "h0", "k1-1": "h1"}
    changed = replace(items[0], title="Item 0, corrected", content_hash="h0b")
    apply_poll(store, poll(source.id, updated=1), (), [changed])
    rows = list(store.iter_items())
    assert len(rows) == 3
    assert {row["title"] for row in rows} == {"Item 0, corrected", "Item 1", "Item 2"}
    assert store.counts() == {"feeds": 1, "items": 3, "polls": 2}
    # The full-text index follows the update (triggers).
    assert [r["title"] for r in store.search("corrected")] == ["Item 0, corrected"]


def test_save_poll_is_one_transaction(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    duplicate_keys = [make_item(source.id, 1), make_item(source.id, 1)]
    with pytest.raises(sqlite3.IntegrityError):  # a bug of ours propagates unwrapped
        apply_poll(store, poll(source.id), duplicate_keys)
    assert store.counts() == {"feeds": 1, "items": 0, "polls": 0}
    assert store.list_feeds()[0].last_status is None


def test_item_without_date_gets_first_seen_time(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    apply_poll(store, poll(source.id), [make_item(source.id, 1, published_at=None)])
    row = store.db.execute("SELECT published_at, date_is_estimated FROM items").fetchone()
    assert row == ("2026-11-26T08:00:00Z", 1)


def test_feed_sources_due_and_never_gone(store: Store) -> None:
    for name in ("due", "later", "gone", "new"):
        store.add_feed(f"https://{name}.example/feed", now=NOW)
    ids = {row.url.split("//")[1].split(".")[0]: row.id for row in store.list_feeds()}
    apply_poll(store, poll(ids["due"]), next_poll_at=NOW - timedelta(minutes=1))
    apply_poll(store, poll(ids["later"]), next_poll_at=NOW + timedelta(minutes=1))
    apply_poll(store, poll(ids["gone"]), gone_at=NOW)
    due = {s.url for s in store.feed_sources(NOW)}
    assert due == {"https://due.example/feed", "https://new.example/feed"}
    assert len(store.feed_sources(None)) == 3


def test_remove_feed_removes_its_items(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    apply_poll(store, poll(source.id), [make_item(source.id, 1)])
    assert store.remove_feed("https://a.example/feed") == 1
    assert store.remove_feed("https://a.example/feed") is None
    assert store.counts() == {"feeds": 0, "items": 0, "polls": 0}
    assert store.search("Item") == []


@pytest.fixture
def french_store(store: Store) -> Store:
    store.add_feed("https://rh.example/feed", now=NOW, tags=["hr", "fr"])
    store.add_feed("https://pr.example/feed", now=NOW, tags=["pr"])
    hr, pr = (s.id for s in store.feed_sources(None))
    apply_poll(
        store,
        poll(hr),
        [
            make_item(
                hr, 1, title="L'équipe RH recrute", summary="Marque employeur et télétravail"
            ),
            make_item(hr, 2, title="Grève chez Acme", summary="Les salariés réclament une hausse"),
        ],
    )
    apply_poll(
        store,
        poll(pr),
        [
            make_item(pr, 3, title="Communiqué de presse", summary="L'équipe dirigeante annonce"),
        ],
    )
    return store


@pytest.mark.parametrize(
    ("query", "kwargs", "titles"),
    [
        ("equipe", {}, {"L'équipe RH recrute", "Communiqué de presse"}),
        ("EQUIPE", {"tag": "hr"}, {"L'équipe RH recrute"}),
        ("equipe", {"feed_url": "https://pr.example/feed"}, {"Communiqué de presse"}),
        ('"marque employeur"', {}, {"L'équipe RH recrute"}),
        ("greve OR communique", {}, {"Grève chez Acme", "Communiqué de presse"}),
        ("recru*", {}, {"L'équipe RH recrute"}),
        ("salaries NOT acme", {}, set()),
        ("equipe", {"since": NOW - timedelta(hours=1, minutes=30)}, {"L'équipe RH recrute"}),
    ],
)
def test_search_folds_accents_and_filters(
    french_store: Store, query: str, kwargs: dict[str, object], titles: set[str]
) -> None:
    rows = french_store.search(query, ItemFilter(**kwargs))  # type: ignore[arg-type]
    assert {row["title"] for row in rows} == titles


def test_search_orders_newest_first_and_limits(french_store: Store) -> None:
    rows = french_store.search("equipe", order="newest", limit=1)
    assert [row["title"] for row in rows] == ["L'équipe RH recrute"]
    assert "[équipe]" in rows[0]["snippet"]


def test_malformed_fts_query_is_a_query_error(french_store: Store) -> None:
    with pytest.raises(QueryError, match="malformed search query"):
        french_store.search('"unbalanced')


def test_locked_database_is_a_clear_store_error(db_path: Path) -> None:
    store = open_store(db_path, busy_timeout_s=0.1)
    other = sqlite3.connect(db_path)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            store.add_feed("https://a.example/feed", now=NOW)
    finally:
        other.rollback()
        other.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_database_is_a_clear_store_error(db_path: Path) -> None:
    open_store(db_path).close()
    db_path.chmod(stat.S_IRUSR)
    store = open_store(db_path)
    with pytest.raises(StoreError, match="read-only"):
        store.add_feed("https://a.example/feed", now=NOW)


def test_read_only_database_via_uri_is_a_clear_store_error(db_path: Path) -> None:
    """Root ignores file modes, so the read-only case is also exercised with a read-only
    connection."""
    open_store(db_path).close()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    from sqlite_utils import Database

    store = Store(Database(conn), db_path)
    with pytest.raises(StoreError, match="read-only"):
        store.add_feed("https://a.example/feed", now=NOW)


def test_not_a_database_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="listener database"):
        open_store(path)


def test_missing_folder_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"the folder .* does not exist"):
        open_store(tmp_path / "no" / "such" / "dir" / "x.db")


def test_apply_all_writes_every_feed_of_a_batch_or_none(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l.db")
    store.add_feed("https://a.example/feed", now=NOW)
    feed_id = store.feed_sources(None)[0].id
    ok = FeedUpdate(
        result=PollResult(feed_id, "https://a.example/feed", "ok", NOW, 1, 200, new=1),
        error_count=0,
        failing_since=None,
        next_poll_at=None,
        new=(Item(feed_id, "k1", None, None, "One", "", None, None, None, "en", "h"),),
    )
    broken = replace(ok, result=replace(ok.result, feed_id=feed_id + 99))  # no such feed
    with pytest.raises(sqlite3.IntegrityError):
        store.apply_all([ok, broken])
    assert store.db.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM polls").fetchone()[0] == 0
    store.apply_all([ok])
    assert store.db.execute("SELECT count(*) FROM items").fetchone()[0] == 1


def test_apply_all_indexes_a_batch_of_new_items_for_search_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l.db")
    for url in ("https://a.example/feed", "https://b.example/feed"):
        store.add_feed(url, now=NOW)
    updates = [
        FeedUpdate(
            result=PollResult(source.id, source.url, "ok", NOW, 1, 200, new=1),
            error_count=0,
            failing_since=None,
            next_poll_at=None,
            new=(
                Item(
                    source.id, f"k{n}", None, None, f"Recrutement {n}", "", *[None] * 3, "fr", "h"
                ),
            ),
        )
        for n, source in enumerate(store.feed_sources(None))
    ]
    store.apply_all(updates)
    assert sorted(r["title"] for r in store.search("recrutement")) == [
        "Recrutement 0",
        "Recrutement 1",
    ]
    store.apply_all([replace(updates[0], new=())])  # no new items: nothing indexed twice
    assert store.db.execute("SELECT count(*) FROM items_fts_docsize").fetchone()[0] == 2
