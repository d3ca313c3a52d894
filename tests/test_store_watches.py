"""Watches in the store: saving, cursors, store-time and retroactive matching."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from listener.domain import Watch
from listener.jobs.watches import (
    active_watches,
    backfill_watches,
    count_to_backfill,
    match_poll_items,
    poll_matcher,
)
from listener.store import Store, open_store
from listener.watches.matcher import WatchMatcher
from tests.conftest import NOW
from tests.polls import apply_poll
from tests.test_store import make_item, poll

ACME = Watch(name="acme", query='acme OR "acme corp"', kind="brand")


@pytest.fixture
def store(db_path: Path) -> Store:
    store = open_store(db_path)
    store.add_feed("https://a.example/feed", now=NOW, tags=["press"])
    store.add_feed("https://b.example/feed", now=NOW, tags=["hr"])
    return store


def mentions(store: Store) -> set[tuple[str, str, tuple[str, ...]]]:
    rows = store.db.execute(
        "SELECT watches.name, items.title, mentions.terms FROM mentions"
        " JOIN watches ON watches.id = watch_id JOIN items ON items.id = item_id"
    ).fetchall()
    return {(name, title, tuple(json.loads(terms))) for name, title, terms in rows}


def store_items(
    store: Store, feed_id: int, titles: list[str], start: int = 0, at: datetime = NOW
) -> None:
    """A poll of one feed at `at`, matched as poll_feeds matches it."""
    items = [make_item(feed_id, start + n, title=t) for n, t in enumerate(titles)]
    (source,) = [s for s in store.feed_sources(None) if s.id == feed_id]
    matcher = poll_matcher(store)
    apply_poll(
        store,
        poll(feed_id, new=len(items), started_at=at),
        items,
        mentions=match_poll_items(matcher, items, source.tags),
    )


def test_save_watch_reports_added_changed_unchanged(store: Store) -> None:
    assert store.save_watch(ACME, origin="cli", now=NOW) == "added"
    assert store.save_watch(ACME, origin="cli", now=NOW) == "unchanged"
    assert store.save_watch(ACME, origin="config", now=NOW) == "updated"  # mentions kept
    assert store.save_watch(Watch("acme", "acme", kind="competitor"), origin="cli", now=NOW) == (
        "changed"
    )
    (row,) = store.list_watches()
    assert (row.kind, row.query, row.revision, row.matched_through) == ("competitor", "acme", 2, 0)


def test_items_stored_after_a_watch_are_matched_at_store_time(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    store_items(store, 1, ["Acme Corp hires", "Nothing here", "ACMÉ again"])
    assert mentions(store) == {
        ("acme", "Acme Corp hires", ("acme", "acme corp")),
        ("acme", "ACMÉ again", ("acme",)),
    }
    (row,) = store.list_watches(with_counts=True)
    assert row.matched_through == store.max_item_id() == 3
    assert row.mention_count == 2
    assert store.list_watches()[0].mention_count == 0  # not counted unless asked


def test_a_new_watch_is_backfilled_over_stored_items_and_resumes(store: Store) -> None:
    store_items(store, 1, [f"acme news {n}" for n in range(7)] + ["other"])
    store.save_watch(ACME, origin="cli", now=NOW)
    assert count_to_backfill(store) == 8
    seen: list[int] = []
    assert backfill_watches(store, batch_size=3, on_batch=seen.append) == 8
    assert seen == [3, 3, 2]
    assert len(mentions(store)) == 7
    assert count_to_backfill(store) == 0
    assert backfill_watches(store) == 0  # idempotent: nothing left to read


def test_a_changed_query_drops_old_mentions_and_matches_again(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    store_items(store, 1, ["acme one", "globex two"])
    store.save_watch(Watch("acme", "globex"), origin="cli", now=NOW)
    assert mentions(store) == set()
    backfill_watches(store)
    assert mentions(store) == {("acme", "globex two", ("globex",))}


def test_matches_made_with_an_old_revision_are_not_written(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    matcher = poll_matcher(store)
    store.save_watch(Watch("acme", "acme NOT corp"), origin="cli", now=NOW)  # meanwhile
    items = [make_item(1, 0, title="Acme Corp")]
    apply_poll(store, poll(1, new=1), items, mentions=match_poll_items(matcher, items, ()))
    assert mentions(store) == set()
    (row,) = store.list_watches()
    assert row.matched_through == 0  # left to the backfill, which finds no match
    backfill_watches(store)
    assert mentions(store) == set()
    assert store.list_watches()[0].matched_through == 1


def test_a_lagging_watch_gets_no_store_time_mentions_until_backfilled(store: Store) -> None:
    store_items(store, 1, ["acme early"])
    store.save_watch(ACME, origin="cli", now=NOW)
    matcher = WatchMatcher(active_watches(store.list_watches()))  # not caught up
    items = [make_item(1, 5, title="acme later")]
    apply_poll(store, poll(1, new=1), items, mentions=match_poll_items(matcher, items, ()))
    assert mentions(store) == set()
    backfill_watches(store)
    assert {title for _, title, _ in mentions(store)} == {"acme early", "acme later"}


def test_a_changed_item_is_matched_again(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    store_items(store, 1, ["acme launch"])
    changed = [make_item(1, 0, title="a launch", content_hash="new")]
    matcher = poll_matcher(store)
    apply_poll(
        store, poll(1, updated=1), (), changed, mentions=match_poll_items(matcher, changed, ())
    )
    assert mentions(store) == set()


def test_a_watch_scoped_by_tag_only_matches_those_feeds(store: Store) -> None:
    store.save_watch(Watch("acme-hr", "acme", tags=("hr",)), origin="cli", now=NOW)
    store_items(store, 1, ["acme in the press"])
    store_items(store, 2, ["acme hires"], start=10)
    assert mentions(store) == {("acme-hr", "acme hires", ("acme",))}


def test_removing_a_watch_or_a_feed_removes_its_mentions(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    store.save_watch(Watch("acme2", "acme"), origin="cli", now=NOW)
    store_items(store, 1, ["acme one"])
    store_items(store, 2, ["acme two"], start=10)
    assert store.remove_watch("acme2") is True
    assert store.remove_watch("acme2") is False
    assert {title for _, title, _ in mentions(store)} == {"acme one", "acme two"}
    store.remove_feed("https://a.example/feed")
    assert {title for _, title, _ in mentions(store)} == {"acme two"}


def test_mention_time_is_published_or_first_seen_if_earlier(store: Store) -> None:
    store.save_watch(ACME, origin="cli", now=NOW)
    future = make_item(1, 0, title="acme", published_at=NOW.replace(year=2027))
    matcher = poll_matcher(store)
    apply_poll(store, poll(1, new=1), [future], mentions=match_poll_items(matcher, [future], ()))
    (at,) = store.db.execute("SELECT published_at FROM mentions").fetchone()
    assert at == "2026-11-26T08:00:00Z"


def test_digest_data_has_the_periods_mentions_and_the_baseline_days_counts(store: Store) -> None:
    from datetime import timedelta

    from listener.config import parse_settings
    from listener.digest.periods import digest_period
    from listener.domain import Recipient
    from listener.jobs.digest import digest_data

    store.save_watch(ACME, origin="cli", now=NOW)
    store.save_watch(Watch("globex", "globex", kind="competitor"), origin="cli", now=NOW)
    recipient = Recipient(name="r", email="r@example.com", timezone="UTC", tags=("press",))
    period = digest_period(recipient, (NOW + timedelta(days=1)).date())
    store_items(store, 1, ["acme today", "globex today", "nothing"])  # fetched at NOW
    store_items(store, 2, ["acme on an hr feed"], start=10)  # not a followed tag
    data = digest_data(store, parse_settings({}, {}), recipient, period, NOW)
    assert [w.name for w in data.watches] == ["acme", "globex"]
    titles = {item.item_id: item.title for item in data.items}
    assert {titles[i]: found for i, found in data.mentions.items()} == {
        "acme today": {"acme": ("acme",)},
        "globex today": {"globex": ("globex",)},
    }
    # Nothing was stored before NOW's day, and that day holds the first poll: no baseline.
    assert data.baseline_days == 0
    assert data.watch_daily_counts == {"acme": (), "globex": ()}
    store_items(store, 1, ["acme the next day"], start=20, at=NOW + timedelta(days=1))
    later = digest_period(recipient, period.day + timedelta(days=3))
    data = digest_data(store, parse_settings({}, {}), recipient, later, NOW)
    # The 7 days before: the 2 after the first poll's day count, oldest first.
    assert data.baseline_days == 2
    assert data.watch_daily_counts == {"acme": (1, 0), "globex": (0, 0)}
