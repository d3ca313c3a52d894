"""The exactly-once claim on (recipient, day), the digest's item selection, the heartbeat."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from listener.config import parse_settings
from listener.digest.periods import digest_period
from listener.domain import Recipient
from listener.jobs.digest import PeriodReads, digest_data
from listener.store import Store, open_store
from tests.conftest import NOW
from tests.polls import apply_poll
from tests.test_store import make_item, poll

PERIOD = (NOW - timedelta(days=1), NOW)


@pytest.fixture
def store(db_path: Path) -> Store:
    return open_store(db_path)


def claim(store: Store, at: object = NOW, stale_minutes: int = 15) -> str | None:
    return store.claim_digest(
        "team",
        "2026-11-26",
        period=PERIOD,
        now=at,  # type: ignore[arg-type]
        stale_before=at - timedelta(minutes=stale_minutes),  # type: ignore[operator]
    )


def test_only_one_claim_wins_and_a_sent_digest_is_never_claimed_again(store: Store) -> None:
    first = claim(store)
    assert first is not None
    assert claim(store) is None  # a live claim
    store.mark_digest_sent(
        "team",
        "2026-11-26",
        first,
        now=NOW,
        item_count=3,
        message_id="<m@x>",
        delivery="outbox x.eml",
    )
    assert store.digest_sent_at("team", "2026-11-26") == NOW
    assert claim(store, NOW + timedelta(days=1)) is None  # sent: never again, even much later


def test_a_stale_claim_is_taken_over(store: Store) -> None:
    first = claim(store)
    assert claim(store, NOW + timedelta(minutes=10)) is None
    second = claim(store, NOW + timedelta(minutes=16))
    assert second is not None
    assert second != first
    # The crashed sender's late mark is ignored: its claim is no longer the current one.
    store.mark_digest_sent(
        "team", "2026-11-26", first or "", now=NOW, item_count=1, message_id=None, delivery="late"
    )
    assert store.digest_sent_at("team", "2026-11-26") is None


def test_a_released_claim_waits_for_its_retry_time(store: Store) -> None:
    first = claim(store)
    assert first is not None
    attempts = store.release_digest(
        "team", "2026-11-26", first, error="SMTP down", retry_at=NOW + timedelta(minutes=5)
    )
    assert attempts == 1
    assert claim(store, NOW + timedelta(minutes=4)) is None
    assert claim(store, NOW + timedelta(minutes=5)) is not None
    (row,) = store.recent_digests()
    assert row["last_error"] == "SMTP down"


def test_digest_items_selects_new_recent_items_of_followed_tags(store: Store) -> None:
    store.add_feed("https://hr.example/feed", now=NOW, tags=["hr"])
    store.add_feed("https://pr.example/feed", now=NOW, tags=["pr"])
    hr, pr = (s.id for s in store.feed_sources(None))
    # Fetched yesterday (inside the period): published recently, and one from an archive.
    apply_poll(
        store,
        poll(hr, started_at=NOW - timedelta(hours=3)),
        [
            make_item(hr, 1),
            make_item(hr, 2, published_at=NOW - timedelta(days=30)),
        ],
    )
    apply_poll(store, poll(pr, started_at=NOW - timedelta(hours=3)), [make_item(pr, 3)])
    # Fetched now: outside the period.
    apply_poll(store, poll(pr), [make_item(pr, 4)])
    titles = {i.title for i in store.digest_items(*PERIOD, ())}
    assert titles == {"Item 1", "Item 3"}
    assert {i.title for i in store.digest_items(*PERIOD, ("hr",))} == {"Item 1"}
    item = store.digest_items(*PERIOD, ("hr",))[0]
    assert item.labels == ()
    assert item.scores == {}
    assert not item.uncertain


def test_heartbeat_round_trip(store: Store) -> None:
    assert store.daemon_state() is None
    store.record_heartbeat(
        pid=42,
        host="h",
        version="1",
        started_at=NOW,
        now=NOW,
        next_runs={"poll": NOW, "maintenance": None},
    )
    state = store.daemon_state()
    assert state is not None
    assert state["pid"] == 42
    assert state["stopped_at"] is None
    store.record_daemon_stopped(42, NOW)
    assert store.daemon_state()["stopped_at"] == "2026-11-26T08:00:00Z"  # type: ignore[index]


def test_maintenance_drops_old_polls(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    apply_poll(store, poll(source.id, started_at=NOW - timedelta(days=100)))
    apply_poll(store, poll(source.id))
    assert store.run_maintenance(polls_before=NOW - timedelta(days=90)) == {"polls_deleted": 1}
    assert store.counts()["polls"] == 1


class _Prediction:
    def __init__(self, labels: tuple[str, ...], scores: dict[str, float], uncertain: bool):
        self.labels, self.scores, self.uncertain = labels, scores, uncertain


def test_digest_items_and_counts_use_effective_labels(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    at = NOW - timedelta(hours=3)
    items = [make_item(source.id, n) for n in (1, 2, 3)]
    apply_poll(store, poll(source.id, started_at=at), items)
    ids = store.item_ids_for_keys([item.key for item in items])
    store.record_model("old", {}, NOW - timedelta(days=1))
    store.record_model("v1", {}, NOW)
    hr = {"human_resources": 0.9, "marketing": 0.2}
    store.save_predictions(
        "v1",
        [
            (ids[items[0].key], _Prediction(("human_resources",), hr, False)),
            (ids[items[1].key], _Prediction(("marketing",), {"marketing": 0.4}, True)),
            (ids[items[2].key], _Prediction(("marketing",), {"marketing": 0.9}, False)),
        ],
        at,
    )
    # An older model's prediction does not count when a newer model classified the item.
    store.save_predictions("old", [(ids[items[0].key], _Prediction(("other",), {}, False))], at)
    store.set_labels(ids[items[2].key], ["communication"], by="ana", now=NOW)
    got = {i.title: (i.labels, i.uncertain, i.corrected) for i in store.digest_items(*PERIOD, ())}
    assert got == {
        "Item 1": (("human_resources",), False, False),
        "Item 2": ((), True, False),  # uncertain: in no function until a person decides
        "Item 3": (("communication",), False, True),  # the correction wins, and says so
    }
    assert store.label_counts(*PERIOD, ()) == {"human_resources": 1, "communication": 1}
    # The same answer as the item_labels view people query by hand.
    view = dict(
        store.db.execute("SELECT label, count(*) FROM item_labels GROUP BY label").fetchall()
    )
    assert view == {"human_resources": 1, "communication": 1}


def test_an_item_only_an_older_model_classified_keeps_that_models_labels(store: Store) -> None:
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    at = NOW - timedelta(hours=3)
    items = [make_item(source.id, n) for n in (1, 2)]
    apply_poll(store, poll(source.id, started_at=at), items)
    ids = store.item_ids_for_keys([item.key for item in items])
    # Recorded newest first: the order of the models table is not the order of use.
    store.record_model("v2", {}, NOW)
    store.record_model("v1", {}, NOW - timedelta(days=2))
    store.save_predictions(
        "v1",
        [
            (ids[items[0].key], _Prediction(("marketing",), {"marketing": 0.8}, False)),
            (ids[items[1].key], _Prediction(("marketing",), {"marketing": 0.8}, False)),
        ],
        at,
    )
    store.save_predictions(
        "v2", [(ids[items[1].key], _Prediction(("other",), {"other": 0.7}, False))], at
    )
    got = {i.title: (i.labels, dict(i.scores)) for i in store.digest_items(*PERIOD, ())}
    assert got == {
        "Item 1": (("marketing",), {"marketing": 0.8}),
        "Item 2": (("other",), {"other": 0.7}),
    }
    assert store.label_counts(*PERIOD, ()) == {"marketing": 1, "other": 1}
    view = dict(
        store.db.execute("SELECT label, count(*) FROM item_labels GROUP BY label").fetchall()
    )
    assert view == {"marketing": 1, "other": 1}


def test_digests_of_one_run_read_a_shared_period_once(store: Store, tmp_path: Path) -> None:
    store.add_feed("https://a.example/feed", now=NOW - timedelta(days=10))
    (source,) = store.feed_sources(None)
    # A first poll more than a week ago: every one of the 7 days before counts.
    apply_poll(
        store, poll(source.id, started_at=NOW - timedelta(days=9)), [make_item(source.id, 9)]
    )
    apply_poll(
        store, poll(source.id, started_at=NOW - timedelta(hours=3)), [make_item(source.id, 1)]
    )
    settings = parse_settings({"database": str(tmp_path / "x.db"), "import_opml_on_init": ""}, {})
    everyone = Recipient("everyone", "all@example.com", "Europe/Paris")
    hr = Recipient("hr", "hr@example.com", "Europe/Paris", functions=("human_resources",))
    period = digest_period(everyone, (NOW + timedelta(days=1)).date())
    alone = [digest_data(store, settings, r, period, NOW) for r in (everyone, hr)]
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    reads = PeriodReads(store)
    shared = [digest_data(store, settings, r, period, NOW, reads) for r in (everyone, hr)]
    store.db.conn.set_trace_callback(None)
    assert shared == alone
    assert len(shared[0].items) == 1
    # The day's items, the 7 days' counts and where the history starts, once for both.
    assert shared[0].baseline_days == 7
    assert sum("WITH period" in sql for sql in statements) == 1 + 7
    assert sum("min(fetched_at)" in sql for sql in statements) == 1


def test_a_recipient_of_feeds_added_later_compares_with_the_days_since(
    store: Store, tmp_path: Path
) -> None:
    """Feeds a team follows by tag, added long after the install: its baseline starts with
    them, not with the install (whose days had none of their items)."""
    store.add_feed("https://old.example/feed", now=NOW - timedelta(days=30))
    store.add_feed("https://new.example/feed", now=NOW - timedelta(days=3), tags=["rivals"])
    old, new = sorted(store.feed_sources(None), key=lambda source: source.id)
    apply_poll(store, poll(old.id, started_at=NOW - timedelta(days=30)), [make_item(old.id, 1)])
    apply_poll(store, poll(new.id, started_at=NOW - timedelta(days=3)), [make_item(new.id, 2)])
    settings = parse_settings({"database": str(tmp_path / "x.db"), "import_opml_on_init": ""}, {})
    everyone = Recipient("everyone", "all@example.com", "UTC")
    rivals = Recipient("rivals", "r@example.com", "UTC", tags=("rivals",))
    day = (NOW + timedelta(days=1)).date()
    days = [
        digest_data(store, settings, r, digest_period(r, day), NOW).baseline_days
        for r in (everyone, rivals)
    ]
    # NOW's day is covered; the new feed was added 3 days before it: the 2 full days since.
    assert days == [7, 2]
