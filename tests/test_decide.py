"""decide: what one feed's poll changes, as a value, without a server or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from listener.domain import (
    FeedSource,
    Fetched,
    Item,
    Known,
    NotModified,
    Parsed,
    ParsedFeed,
    ParseFailure,
    PollPolicy,
)
from listener.errors import FeedGone, FetchError, ParseError
from listener.feeds.decide import decide

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
POLICY = PollPolicy(interval_minutes=60, jitter_fraction=0.1)
FEED = FeedSource(id=7, url="https://a.example/feed", body_hash="old", tags=("hr",))
HEADERS = {"etag": '"v2"', "last-modified": "Thu, 26 Nov 2026 07:00:00 GMT"}


def item(key: str, content: str = "c") -> Item:
    return Item(7, key, None, None, key, "", None, None, None, None, content)


def fetched(**changes: object) -> Fetched:
    values: dict[str, object] = {"url": FEED.url, "status": 200, "body": b"<rss/>"}
    values["headers"] = HEADERS
    return Fetched(**(values | changes))  # type: ignore[arg-type]


def parsed(*items: Item, updated_at: datetime | None = None, **changes: object) -> Parsed:
    feed = ParsedFeed(
        title="Acme", site_url=None, items=items, warning="bozo", updated_at=updated_at
    )
    return Parsed(fetched(**changes), feed, body_hash="new", duration_ms=12)


def test_items_are_new_changed_or_unchanged_against_the_stored_hashes() -> None:
    known = Known(content_hashes={"b": "c", "c": "old"})
    update = decide(
        FEED, parsed(item("a"), item("b"), item("c"), item("a")), known, NOW, POLICY, rand=0.5
    )
    assert [i.key for i in update.new] == ["a"]
    assert [i.key for i in update.changed] == ["c"]
    assert [i.key for i in update.unchanged] == ["b"]
    result = update.result
    assert (result.status, result.new, result.updated, result.seen) == ("ok", 1, 1, 1)
    assert (result.http_status, result.duration_ms, result.started_at) == (200, 12, NOW)
    assert update.next_poll_at == NOW + timedelta(hours=1)
    assert update.content is not None
    assert (update.content.etag, update.content.body_hash) == ('"v2"', "new")
    assert (update.content.title, update.content.site_url, update.content.warning) == (
        "Acme",
        None,
        "bozo",
    )
    assert update.move is None


def test_an_item_stored_under_another_form_of_its_identifier_is_renamed_not_new() -> None:
    # "a2" and "b2" are stored as "a1" and "b1" (http -> https, say). "b1" is also in this
    # poll, so b2 stays a new item; "c2" and "c3" both point at "c1": the first takes it.
    renamed = {"a2": ("a1", "c"), "b2": ("b1", "c"), "c2": ("c1", "old"), "c3": ("c1", "old")}
    known = Known(content_hashes={"b1": "c"}, renamed=renamed)
    items = (item("a2"), item("b2"), item("b1"), item("c2"), item("c3"))
    update = decide(FEED, parsed(*items), known, NOW, POLICY, rand=0.5)
    assert [(old, new.key) for old, new in update.rekeyed] == [("a1", "a2"), ("c1", "c2")]
    assert [i.key for i in update.unchanged] == ["a2", "b1"]
    assert [i.key for i in update.changed] == ["c2"]  # its content hash differs: updated
    assert [i.key for i in update.new] == ["b2", "c3"]


def test_not_modified_and_same_bytes_leave_the_content_alone() -> None:
    for outcome, status in ((NotModified(FEED.url, {}), "not_modified"), (fetched(), "unchanged")):
        update = decide(FEED, outcome, Known(), NOW, POLICY, rand=0.5)
        assert (update.result.status, update.content, update.new) == (status, None, ())
        assert update.error_count == 0


def test_a_failure_counts_backs_off_and_keeps_its_first_time() -> None:
    failing = FeedSource(id=7, url=FEED.url, error_count=2, failing_since=NOW - timedelta(days=1))
    error = FetchError(FEED.url, "HTTP 503 Service Unavailable", status=503, retry_after="7200")
    update = decide(failing, error, Known(), NOW, POLICY, rand=0.5)
    assert (update.result.status, update.result.http_status) == ("failed", 503)
    assert update.result.error == "HTTP 503 Service Unavailable"
    assert update.error_count == 3
    assert update.failing_since == NOW - timedelta(days=1)
    assert update.next_poll_at == NOW + timedelta(hours=4)  # back-off 4 h beats Retry-After 2 h
    assert update.gone_at is None


def test_a_parse_failure_keeps_the_validators_and_the_http_status() -> None:
    outcome = ParseFailure(fetched(status=203), ParseError(FEED.url, "not a feed (HTML page)"))
    update = decide(FEED, outcome, Known(), NOW, POLICY, rand=0.5)
    assert (update.result.status, update.result.http_status) == ("failed", 203)
    assert (update.content, update.failing_since) == (None, NOW)


def test_a_gone_feed_is_never_polled_again() -> None:
    update = decide(FEED, FeedGone(FEED.url), Known(), NOW, POLICY, rand=0.5)
    assert (update.result.status, update.gone_at, update.next_poll_at) == ("gone", NOW, None)


@pytest.mark.parametrize(
    ("taken", "refused"),
    [(frozenset(), None), (frozenset({"https://b.example/feed"}), "already a feed here")],
)
def test_a_permanent_move_moves_the_feed_unless_its_new_url_is_taken(
    taken: frozenset[str], refused: str | None
) -> None:
    outcome = NotModified(FEED.url, {}, permanent_url="https://b.example/feed")
    update = decide(FEED, outcome, Known(taken_urls=taken), NOW, POLICY, rand=0.5)
    assert update.move is not None
    assert (update.move.url, update.move.previous_url) == ("https://b.example/feed", FEED.url)
    assert (update.move.refused or "").endswith(refused or "")
    assert (update.move.refused is None) == (refused is None)


YEAR_AGO = NOW - timedelta(days=365)
LAST_MODIFIED = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)  # HEADERS' Last-Modified


@pytest.mark.parametrize(
    ("body_hash", "updated_at", "headers", "undated_at"),
    [
        (None, YEAR_AGO, HEADERS, YEAR_AGO),  # the first items are the archive: the feed's date
        (None, None, HEADERS, LAST_MODIFIED),  # no channel date: the response's
        (None, NOW + timedelta(hours=2), {}, None),  # a date in the future says nothing
        (None, None, {"last-modified": "yesterday"}, None),  # nor does an unreadable one
        (None, None, {}, None),  # no date at all: first seen
        ("old", YEAR_AGO, HEADERS, None),  # later items are new, even under a stale date
    ],
)
def test_a_feeds_first_items_without_a_date_take_the_feeds_own_date(
    body_hash: str | None,
    updated_at: datetime | None,
    headers: dict[str, str],
    undated_at: datetime | None,
) -> None:
    feed = FeedSource(id=7, url="https://a.example/feed", body_hash=body_hash)
    outcome = parsed(item("a"), updated_at=updated_at, headers=headers)
    update = decide(feed, outcome, Known(), NOW, POLICY, rand=0.5)
    assert update.undated_at == undated_at
