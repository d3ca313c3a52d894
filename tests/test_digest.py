"""digest.py: periods across DST, due-ness, story grouping and ranking, building a digest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.digest.build import (
    _parsed_url_key,
    build_digest,
    group_stories,
    is_empty,
    rank_stories,
    title_key,
    url_key,
)
from listener.digest.model import Story
from listener.digest.periods import (
    baseline_periods,
    digest_period,
    fit_to_history,
    is_digest_due,
    latest_due_period,
    parse_send_time,
)
from listener.domain import LABELS, DigestData, DigestItem, DigestPeriod, FeedHealth, Recipient

TEAM = Recipient(name="team", email="team@example.com", timezone="Europe/Paris", send_at="07:30")
DAY = date(2026, 11, 26)
PERIOD = digest_period(TEAM, DAY)
WHEN = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # inside PERIOD
CATCH_UP = timedelta(hours=12)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_item(
    item_id: int,
    labels: tuple[str, ...] = (),
    scores: Mapping[str, float] | None = None,
    *,
    title: str | None = None,
    url: str | None = None,
    feed: str = "a",
    published_at: datetime = WHEN,
    uncertain: bool = False,
) -> DigestItem:
    return DigestItem(
        item_id=item_id,
        title=f"Story number {item_id} about something" if title is None else title,
        url=f"https://news.example/{item_id}" if url is None else url,
        summary="",
        feed_title=f"Feed {feed}",
        feed_url=f"https://{feed}.example/feed",
        feed_tags=(),
        published_at=published_at,
        fetched_at=published_at,
        lang="en",
        labels=labels,
        scores=dict.fromkeys(labels, 0.9) if scores is None else scores,
        uncertain=uncertain,
    )


def data(*items: DigestItem, **daily: tuple[int, ...]) -> DigestData:
    return DigestData(items=items, daily_counts=daily, unhealthy_feeds=())


# -- when ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("07:30", time(7, 30)), ("7:05", time(7, 5)), ("00:00", time(0)), ("23:59", time(23, 59))],
)
def test_parse_send_time_accepts_hh_mm(text: str, expected: time) -> None:
    assert parse_send_time(text) == expected


@pytest.mark.parametrize(
    "text", ["24:00", "07:60", "7:5", "0730", "", " 07:30", "07:30:00", "-1:00", "٠٧:٣٠", "7h30"]
)
def test_parse_send_time_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_send_time(text)


@pytest.mark.parametrize(
    ("zone", "send_at", "day", "expected"),
    [
        # An ordinary day in Paris (UTC+1 in winter). Expected instants are UTC.
        ("Europe/Paris", "07:30", "2026-11-26", "11-24 23:00 -> 11-25 23:00, send 11-26 06:30"),
        # Spring forward (Sun 29 March, 02:00 -> 03:00): that day is 23 h long...
        ("Europe/Paris", "07:30", "2026-03-30", "03-28 23:00 -> 03-29 22:00, send 03-30 05:30"),
        ("Europe/Paris", "07:30", "2026-03-29", "03-27 23:00 -> 03-28 23:00, send 03-29 05:30"),
        # ...and 02:30 does not exist on it: send at 03:00 CEST, the first instant after.
        ("Europe/Paris", "02:30", "2026-03-29", "03-27 23:00 -> 03-28 23:00, send 03-29 01:00"),
        # Fall back (Sun 25 October, 03:00 -> 02:00): that day is 25 h long...
        ("Europe/Paris", "07:30", "2026-10-26", "10-24 22:00 -> 10-25 23:00, send 10-26 06:30"),
        # ...and 02:30 happens twice on it: the first one (CEST, fold=0) it is.
        ("Europe/Paris", "02:30", "2026-10-25", "10-23 22:00 -> 10-24 22:00, send 10-25 00:30"),
        # New York: spring forward Sun 8 March at 02:00, fall back Sun 1 November at 02:00.
        ("America/New_York", "02:30", "2026-03-08", "03-07 05:00 -> 03-08 05:00, send 03-08 07:00"),
        ("America/New_York", "07:30", "2026-03-09", "03-08 05:00 -> 03-09 04:00, send 03-09 11:30"),
        ("America/New_York", "01:30", "2026-11-01", "10-31 04:00 -> 11-01 04:00, send 11-01 05:30"),
        ("America/New_York", "07:30", "2026-11-02", "11-01 04:00 -> 11-02 05:00, send 11-02 12:30"),
        # Kolkata: UTC+05:30, no DST; local midnight is 18:30 UTC the day before.
        ("Asia/Kolkata", "07:30", "2026-11-26", "11-24 18:30 -> 11-25 18:30, send 11-26 02:00"),
        ("UTC", "00:00", "2026-11-26", "11-25 00:00 -> 11-26 00:00, send 11-26 00:00"),
    ],
)
def test_digest_period(zone: str, send_at: str, day: str, expected: str) -> None:
    recipient = dataclasses.replace(TEAM, timezone=zone, send_at=send_at)
    period = digest_period(recipient, date.fromisoformat(day))
    assert (period.recipient, period.day.isoformat()) == ("team", day)
    assert all(when.tzinfo is UTC for when in (period.starts_at, period.ends_at, period.send_at))
    shown = f"{period.starts_at:%m-%d %H:%M} -> {period.ends_at:%m-%d %H:%M}"
    assert f"{shown}, send {period.send_at:%m-%d %H:%M}" == expected


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Paris", date(2026, 3, 30), 23),
        ("Europe/Paris", date(2026, 3, 31), 24),
        ("Europe/Paris", date(2026, 10, 26), 25),
        ("America/New_York", date(2026, 3, 9), 23),
        ("America/New_York", date(2026, 11, 2), 25),
        ("Asia/Kolkata", date(2026, 3, 30), 24),
    ],
)
def test_digest_period_covers_the_whole_local_day(zone: str, day: date, hours: int) -> None:
    recipient = dataclasses.replace(TEAM, timezone=zone)
    period = digest_period(recipient, day)
    assert period.ends_at - period.starts_at == timedelta(hours=hours)
    # Consecutive periods tile time: no gap, no overlap.
    assert digest_period(recipient, day + timedelta(days=1)).starts_at == period.ends_at


@pytest.mark.parametrize(
    ("zone", "now", "day"),
    [
        ("Europe/Paris", utc(2026, 11, 26, 6, 29), date(2026, 11, 25)),
        ("Europe/Paris", utc(2026, 11, 26, 6, 30), date(2026, 11, 26)),
        ("Europe/Paris", utc(2026, 11, 25, 23, 30), date(2026, 11, 25)),  # 00:30 local on the 26th
        ("Europe/Paris", utc(2026, 3, 29, 5, 30), date(2026, 3, 29)),  # 07:30 CEST
        ("Europe/Paris", utc(2026, 3, 29, 6, 29), date(2026, 3, 29)),
        ("Asia/Kolkata", utc(2026, 11, 26, 1, 59), date(2026, 11, 25)),
        ("Asia/Kolkata", utc(2026, 11, 26, 2, 0), date(2026, 11, 26)),
        ("Asia/Kolkata", utc(2026, 11, 25, 18, 45), date(2026, 11, 25)),  # 00:15 on the 26th
        ("America/New_York", utc(2026, 11, 26, 12, 29), date(2026, 11, 25)),
        ("America/New_York", utc(2026, 11, 26, 12, 30), date(2026, 11, 26)),
        ("America/New_York", utc(2026, 11, 27, 3, 0), date(2026, 11, 26)),  # 22:00 on the 26th
    ],
)
def test_latest_due_period(zone: str, now: datetime, day: date) -> None:
    period = latest_due_period(dataclasses.replace(TEAM, timezone=zone), now)
    assert period.day == day
    assert period.send_at <= now < digest_period(TEAM, day + timedelta(days=2)).send_at


def test_latest_due_period_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        latest_due_period(TEAM, datetime(2026, 11, 26, 8, 0))  # noqa: DTZ001 (the point)


@pytest.mark.parametrize(
    ("now", "already_sent", "due"),
    [
        (PERIOD.send_at - timedelta(seconds=1), False, False),
        (PERIOD.send_at, False, True),
        (PERIOD.send_at, True, False),
        (PERIOD.send_at + timedelta(hours=3), False, True),  # the daemon was down: catch up
        (PERIOD.send_at + CATCH_UP, False, True),
        (PERIOD.send_at + CATCH_UP + timedelta(seconds=1), False, False),  # too stale
        (PERIOD.send_at + timedelta(days=7), False, False),
    ],
)
def test_is_digest_due(now: datetime, already_sent: bool, due: bool) -> None:
    assert is_digest_due(PERIOD, now, already_sent=already_sent, catch_up=CATCH_UP) is due


def simulate(
    recipient: Recipient, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)
) -> list[tuple[date, datetime]]:
    """A scheduler ticking every `step`: sends the latest due digest, then marks it sent."""
    sent: list[tuple[date, datetime]] = []
    now = start
    while now <= end:
        period = latest_due_period(recipient, now)
        already_sent = any(day == period.day for day, _ in sent)
        if is_digest_due(period, now, already_sent=already_sent, catch_up=CATCH_UP):
            sent.append((period.day, now))
        now += step
    return sent


# Four days around each transition (2026: 29 March and 25 October in Paris, 8 March and
# 1 November in New York; Kolkata has none).
DST_WINDOWS = [
    ("Europe/Paris", utc(2026, 3, 27), utc(2026, 3, 31)),
    ("Europe/Paris", utc(2026, 10, 23), utc(2026, 10, 27)),
    ("America/New_York", utc(2026, 3, 6), utc(2026, 3, 10)),
    ("America/New_York", utc(2026, 10, 30), utc(2026, 11, 3)),
    ("Asia/Kolkata", utc(2026, 3, 27), utc(2026, 3, 31)),
]
SEND_TIMES = [
    "00:00",
    "00:30",
    "01:30",
    "01:59",
    "02:00",
    "02:30",
    "02:59",
    "03:00",
    "07:30",
    "23:59",
]


@pytest.mark.parametrize(("zone", "start", "end"), DST_WINDOWS)
@pytest.mark.parametrize("send_at", SEND_TIMES)
def test_a_scheduler_sends_one_digest_per_local_day_across_dst(
    zone: str, start: datetime, end: datetime, send_at: str
) -> None:
    recipient = dataclasses.replace(TEAM, timezone=zone, send_at=send_at)
    sent = simulate(recipient, start, end)
    days = [day for day, _ in sent]
    assert len(days) == len(set(days)), "a digest was sent twice"
    first_local, last_local = (when.astimezone(ZoneInfo(zone)).date() for when in (start, end))
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))], "a day was skipped"
    assert days[0] <= first_local + timedelta(days=1)
    assert days[-1] >= last_local - timedelta(days=1)
    wanted = parse_send_time(send_at)
    for day, now in sent:
        period = digest_period(recipient, day)
        if now != start:  # the first tick may be catching up on the day before
            assert timedelta(0) <= now - period.send_at < timedelta(minutes=5)
        local = period.send_at.astimezone(ZoneInfo(zone))
        assert local.date() == day
        # The wall-clock time asked for, or (in a spring-forward gap) just after it.
        assert local.time() == wanted or (local.time() > wanted and local.minute == 0)


def test_a_daemon_down_for_a_while_catches_up_only_within_the_window() -> None:
    # Down from 05:00Z until 10:00Z (send time 06:30Z): the digest goes out at 10:00Z.
    assert simulate(TEAM, utc(2026, 11, 26, 10), utc(2026, 11, 26, 12)) == [
        (date(2026, 11, 26), utc(2026, 11, 26, 10))
    ]
    # Back only at 20:00Z: too stale, skipped; the next morning's comes as usual.
    assert simulate(TEAM, utc(2026, 11, 26, 20), utc(2026, 11, 27, 12)) == [
        (date(2026, 11, 27), utc(2026, 11, 27, 6, 30))
    ]
    # Down for a week: only the latest digest is considered, never the missed ones.
    assert [day for day, _ in simulate(TEAM, utc(2026, 12, 3, 9), utc(2026, 12, 3, 10))] == [
        date(2026, 12, 3)
    ]


# -- stories -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://www.example.com/a/?utm_source=rss&utm_medium=feed", "http://example.com/a"),
        ("https://example.com/a?id=2&page=1", "https://example.com/a?page=1&id=2"),
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com:443/a", "https://EXAMPLE.com/a"),
        ("https://example.fr/a?xtor=RSS-3208&fbclid=x&at_medium=rss", "https://example.fr/a"),
        ("https://example.com/", "https://example.com"),
    ],
)
def test_url_key_ignores_what_does_not_change_the_page(a: str, b: str) -> None:
    assert url_key(a) == url_key(b) is not None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.com/a?id=1", "https://example.com/a?id=2"),
        ("https://example.com/A", "https://example.com/a"),  # paths are case-sensitive
        ("https://example.com:8443/a", "https://example.com/a"),
        ("https://example.com/a", "https://example.org/a"),
    ],
)
def test_url_key_keeps_what_identifies_the_page(a: str, b: str) -> None:
    assert url_key(a) != url_key(b)


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "mailto:a@example.com", "https://", "http://[::1"]
)
def test_url_key_is_none_for_what_is_not_a_web_page(url: str | None) -> None:
    assert url_key(url) is None


_URL_PART = st.text(
    st.sampled_from("aZ09.-_/:@?#&=%~ \t\n\xa0\u2003é[]") | st.characters(), max_size=12
)


@given(
    st.sampled_from(["http://", "https://", "HTTPS://", " https://", "ftp://", ""]),
    st.sampled_from(["www.", "", "WWW."]),
    st.from_regex(r"[a-z0-9.-]{0,8}", fullmatch=True) | _URL_PART,
    st.from_regex(r"(/[a-z0-9/._~-]{0,8})?", fullmatch=True) | _URL_PART,
)
def test_url_key_of_a_plain_url_is_what_the_parser_makes_of_it(
    scheme: str, www: str, host: str, rest: str
) -> None:
    # url_key skips urllib's parser for a lowercase host and a plain path.
    url = f"{scheme}{www}{host}{rest}"
    assert url_key(url) == _parsed_url_key(url)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Acme opens 300 jobs in Lyon", "ACME opens 300 jobs, in Lyon!"),
        ("Évolution des salaires chez Acme", "evolution  des salaires chez ACME"),
        ("L'usine d'Acme ferme ses portes", "L’usine d’Acme ferme ses portes"),
    ],
)
def test_title_key_folds_case_accents_and_punctuation(a: str, b: str) -> None:
    assert title_key(a) == title_key(b) is not None


@pytest.mark.parametrize("title", ["Update", "Press release", "Acme: Q3 results", "", "!!! ..."])
def test_title_key_ignores_short_titles(title: str) -> None:
    assert title_key(title) is None


def test_group_stories_shows_a_story_on_three_feeds_once() -> None:
    title = "Acme opens 300 engineering jobs in Lyon"
    items = [
        make_item(1, ("human_resources",), {"human_resources": 0.7}, title=title, feed="a"),
        make_item(2, ("human_resources",), {"human_resources": 0.9}, title=title, feed="b"),
        make_item(3, ("marketing",), {"marketing": 0.6}, title=title.upper() + "!", feed="c"),
        make_item(4, ("marketing",), title="Something else entirely happened", feed="a"),
    ]
    stories = group_stories(items)
    assert [(s.lead.item_id, [o.item_id for o in s.others]) for s in stories] == [
        (2, [1, 3]),  # the best score leads; the others in order of publication
        (4, []),
    ]


def test_group_stories_matches_urls_despite_tracking_www_and_slashes() -> None:
    items = [
        make_item(1, url="https://www.news.example/story/?utm_source=rss", feed="a"),
        make_item(2, url="http://news.example/story", feed="b"),
        make_item(3, url="https://news.example/story#top", feed="c"),
    ]
    [story] = group_stories(items)
    assert {story.lead.item_id, *(o.item_id for o in story.others)} == {1, 2, 3}


def test_group_stories_does_not_group_short_titles() -> None:
    items = [make_item(1, title="Update", feed="a"), make_item(2, title="Update", feed="b")]
    assert len(group_stories(items)) == 2


def test_group_stories_is_transitive_and_lists_each_other_feed_once() -> None:
    items = [
        make_item(1, url="https://x.example/1", title="First title of the story", feed="a"),
        make_item(2, url="https://x.example/1", title="Second title of the story", feed="b"),
        make_item(3, url="https://y.example/9", title="Second title of the story", feed="c"),
        make_item(4, url="https://y.example/9", title="Copy on the same feed", feed="c"),
    ]
    [story] = group_stories(items)
    assert story.lead.item_id == 1  # equal scores: the earliest published, then the lowest id
    assert [o.feed_url for o in story.others] == [
        "https://b.example/feed",
        "https://c.example/feed",
    ]


def test_group_stories_prefers_the_earliest_copy_on_equal_scores() -> None:
    later = make_item(1, url="https://x.example/1", feed="a", published_at=WHEN)
    earlier = make_item(2, url="https://x.example/1", feed="b", published_at=WHEN - timedelta(1))
    assert group_stories([later, earlier])[0].lead is earlier


def story(item_id: int, score: float, hours_old: float, others: int = 0) -> Story:
    now = PERIOD.ends_at
    lead = make_item(
        item_id, ("marketing",), {"marketing": score}, published_at=now - timedelta(hours=hours_old)
    )
    copies = tuple(make_item(100 + n, feed=f"copy{n}") for n in range(others))
    return Story(lead, copies)


@pytest.mark.parametrize(
    ("stories", "order"),
    [
        ([story(1, 0.6, 2), story(2, 0.9, 2)], [2, 1]),  # the score...
        ([story(1, 0.8, 20), story(2, 0.8, 1)], [2, 1]),  # ...then recency...
        ([story(1, 0.9, 20), story(2, 0.5, 0)], [1, 2]),  # ...which a good score outweighs
        ([story(1, 0.9, 30), story(2, 0.5, 0)], [2, 1]),  # (0.9 x 0.42 < 0.5)
        ([story(1, 0.8, 3), story(2, 0.8, 3, others=3)], [2, 1]),  # ...and reach
        ([story(2, 0.8, 3), story(1, 0.8, 3)], [1, 2]),  # exact ties: lowest id
        ([story(1, 0.0, 6), story(2, 0.0, 1)], [2, 1]),  # equal ranks: the newest first
    ],
)
def test_rank_stories(stories: list[Story], order: list[int]) -> None:
    ranked = rank_stories(stories, "marketing", PERIOD.ends_at)
    assert [s.lead.item_id for s in ranked] == order


def test_rank_stories_uses_the_best_score_without_a_label() -> None:
    a = Story(make_item(1, ("marketing",), {"marketing": 0.4, "other": 0.95}))
    b = Story(make_item(2, ("marketing",), {"marketing": 0.8}))
    assert [s.lead.item_id for s in rank_stories([b, a], None, PERIOD.ends_at)] == [1, 2]
    assert [s.lead.item_id for s in rank_stories([a, b], "marketing", PERIOD.ends_at)] == [2, 1]


# -- build_digest --------------------------------------------------------------------------


def test_build_digest_counts_against_the_previous_seven_days() -> None:
    items = [make_item(n, ("human_resources",)) for n in range(1, 4)]
    items += [make_item(9, ("human_resources", "marketing"))]
    digest = build_digest(
        TEAM,
        PERIOD,
        data(*items, human_resources=(1, 2, 3, 4, 5, 6, 7), communication=(7,) * 7),
    )
    sections = {section.label: section for section in digest.sections}
    assert digest.total_items == 4
    assert dict(digest.counts) == {
        "marketing": 1,
        "communication": 0,
        "human_resources": 4,
        "customer_service": 0,
        "business_intelligence": 0,
        "other": 0,
    }
    hr = sections["human_resources"]
    assert (hr.count, hr.previous_daily_average, hr.change_pct) == (4, 4.0, 0.0)
    assert sections["communication"].change_pct == -100.0
    assert sections["marketing"].change_pct is None  # no baseline: "new"
    assert sections["marketing"].title == "Marketing"


@pytest.mark.parametrize(
    ("functions", "labels"),
    [
        ((), LABELS),
        (("other", "human_resources", "marketing"), ("marketing", "human_resources", "other")),
        (("customer_service",), ("customer_service",)),
    ],
)
def test_build_digest_has_sections_for_followed_functions_in_label_order(
    functions: tuple[str, ...], labels: tuple[str, ...]
) -> None:
    recipient = dataclasses.replace(TEAM, functions=functions)
    digest = build_digest(recipient, PERIOD, data(make_item(1, ("marketing",))))
    assert tuple(section.label for section in digest.sections) == labels
    assert digest.counts["marketing"] == 1  # counts cover every function, followed or not


def test_build_digest_keeps_the_top_stories_of_each_section() -> None:
    items = [make_item(n, ("marketing",), {"marketing": n / 10}) for n in range(1, 8)]
    recipient = dataclasses.replace(TEAM, items_per_section=3)
    [section] = build_digest(
        dataclasses.replace(recipient, functions=("marketing",)), PERIOD, data(*items)
    ).sections
    assert section.count == 7
    assert [s.lead.item_id for s in section.stories] == [7, 6, 5]


def test_build_digest_lists_uncertain_items_apart_closest_calls_first() -> None:
    items = [
        make_item(1, (), {"marketing": 0.30, "communication": 0.2}, uncertain=True),
        make_item(2, (), {"marketing": 0.48, "communication": 0.4}, uncertain=True),
        make_item(3, (), {"human_resources": 0.45}, uncertain=True),
        make_item(4, (), {"other": 0.05}, uncertain=True),
        make_item(5, ("marketing",)),
        make_item(6),  # unclassified: counted in the total only
    ]
    recipient = dataclasses.replace(TEAM, items_per_section=3)
    digest = build_digest(recipient, PERIOD, data(*items))
    assert [s.lead.item_id for s in digest.uncertain] == [2, 3, 1]
    assert digest.uncertain_total == 4  # item 4 too, not shown
    assert digest.counts["marketing"] == 1
    assert sum(digest.counts.values()) == 1
    assert digest.total_items == 6


def test_build_digest_shows_uncertain_items_only_near_followed_functions() -> None:
    items = [
        make_item(1, (), {"marketing": 0.4, "communication": 0.3, "other": 0.1}, uncertain=True),
        make_item(2, (), {"human_resources": 0.4, "other": 0.3}, uncertain=True),
    ]
    recipient = dataclasses.replace(TEAM, functions=("communication",))
    assert [s.lead.item_id for s in build_digest(recipient, PERIOD, data(*items)).uncertain] == [1]


def test_build_digest_does_not_ask_about_a_story_another_copy_settles() -> None:
    title = "Acme names a new head of communications"
    confident = make_item(1, ("communication",), title=title, feed="a")
    unsure = make_item(2, (), {"communication": 0.45}, title=title, feed="b", uncertain=True)
    digest = build_digest(TEAM, PERIOD, data(confident, unsure))
    assert digest.uncertain == ()
    [story] = digest.sections[1].stories
    assert (story.lead, story.others) == (confident, (unsure,))
    assert digest.counts["communication"] == 1


def test_a_persons_correction_of_one_copy_settles_the_whole_story() -> None:
    title = "Coalition strike hits a fuel depot near the border"
    model_copy = make_item(1, ("human_resources",), title=title, feed="a")
    corrected = dataclasses.replace(
        make_item(2, ("other",), {"human_resources": 0.9}, title=title, feed="b"),
        corrected=True,
    )
    unsure = make_item(3, (), {"human_resources": 0.4}, title=title, feed="c", uncertain=True)
    elsewhere = make_item(4, ("human_resources",), title="Nurses vote to strike over pay")
    digest = build_digest(TEAM, PERIOD, data(model_copy, corrected, unsure, elsewhere))
    sections = {section.label: section for section in digest.sections}
    assert [s.lead.item_id for s in sections["human_resources"].stories] == [4]
    [story] = sections["other"].stories
    assert {story.lead.item_id, *(i.item_id for i in story.others)} == {1, 2, 3}
    assert digest.uncertain == ()  # settled by the person, nothing left to ask
    # Counts stay per item, as the seven-day baseline counts them.
    assert (digest.counts["human_resources"], digest.counts["other"]) == (2, 1)


def test_copies_corrected_differently_keep_their_own_labels() -> None:
    title = "Acme and Globex sign a distribution partnership"
    a = dataclasses.replace(make_item(1, ("communication",), title=title), corrected=True)
    b = dataclasses.replace(make_item(2, ("marketing",), title=title, feed="b"), corrected=True)
    c = make_item(3, ("business_intelligence",), title=title, feed="c")
    digest = build_digest(TEAM, PERIOD, data(a, b, c))
    shown = {s.label: [st.lead.item_id for st in s.stories] for s in digest.sections}
    assert shown["communication"] == [1]
    assert shown["marketing"] == [2]
    assert shown["business_intelligence"] == []  # c took both corrections' labels


def test_build_digest_puts_other_last_and_passes_feed_health_through() -> None:
    health = (FeedHealth("https://gone.example/feed", None, "gone since 2026-11-20"),)
    items = (make_item(1, ("other",)), make_item(2, ("marketing",)))
    digest = build_digest(
        TEAM, PERIOD, DigestData(items=items, daily_counts={}, unhealthy_feeds=health)
    )
    assert digest.sections[-1].label == "other"
    assert [s.lead.item_id for s in digest.sections[-1].stories] == [1]
    assert digest.unhealthy_feeds == health


@pytest.mark.parametrize(
    ("items", "functions", "empty"),
    [
        ((), (), True),
        ((make_item(1),), (), True),  # unclassified only
        ((make_item(1, ("marketing",)),), ("human_resources",), True),  # not followed
        ((make_item(1, ("marketing",)),), (), False),
        ((make_item(1, (), {"marketing": 0.4}, uncertain=True),), (), False),
    ],
)
def test_is_empty(items: tuple[DigestItem, ...], functions: tuple[str, ...], empty: bool) -> None:
    recipient = dataclasses.replace(TEAM, functions=functions)
    assert is_empty(build_digest(recipient, PERIOD, data(*items))) is empty


# -- properties ----------------------------------------------------------------------------

# Few feeds, URLs and titles, so that grouping happens often.
ITEMS = st.lists(
    st.builds(
        make_item,
        item_id=st.integers(1, 10_000),
        labels=st.lists(st.sampled_from(LABELS), max_size=2, unique=True).map(tuple),
        scores=st.dictionaries(st.sampled_from(LABELS), st.floats(0, 1), max_size=3),
        title=st.sampled_from(["A story in four words", "a STORY in four words!", "Update", "x"]),
        url=st.sampled_from(
            ["https://n.example/1", "http://www.n.example/1/", "https://n.example/2"]
        ),
        feed=st.sampled_from("abcd"),
        published_at=st.integers(0, 48).map(lambda hours: WHEN - timedelta(hours=hours)),
        uncertain=st.booleans(),
    ),
    max_size=25,
    unique_by=lambda item: item.item_id,
)


@settings(max_examples=100, deadline=None)
@given(ITEMS, st.lists(st.sampled_from(LABELS), unique=True).map(tuple), st.integers(1, 30))
def test_build_digest_never_loses_or_repeats_an_item(
    items: list[DigestItem], functions: tuple[str, ...], per_section: int
) -> None:
    recipient = dataclasses.replace(TEAM, functions=functions, items_per_section=per_section)
    digest = build_digest(recipient, PERIOD, data(*items))
    assert digest.total_items == len(items)
    for label in LABELS:
        confident = [item for item in items if label in item.labels and not item.uncertain]
        assert digest.counts[label] == len(confident)
    for section in digest.sections:
        shown = [item.item_id for s in section.stories for item in (s.lead, *s.others)]
        assert len(shown) == len(set(shown)), "an item shown twice in one section"
        assert len(section.stories) <= per_section
        assert all(section.label in s.lead.labels and not s.lead.uncertain for s in section.stories)
    for s in digest.uncertain:
        assert s.lead.uncertain
        assert not any(i.labels and not i.uncertain for i in (s.lead, *s.others))


@settings(max_examples=100, deadline=None)
@given(ITEMS)
def test_build_digest_shows_every_source_when_there_is_room(items: list[DigestItem]) -> None:
    recipient = dataclasses.replace(TEAM, items_per_section=100)
    digest = build_digest(recipient, PERIOD, data(*items))
    for section in digest.sections:
        feeds = {i.feed_url for s in section.stories for i in (s.lead, *s.others)}
        labelled = {i.feed_url for i in items if section.label in i.labels and not i.uncertain}
        assert labelled <= feeds


def _period(day: date) -> DigestPeriod:
    return digest_period(TEAM, day)


@pytest.mark.parametrize(
    ("history_hours", "previous_end_hours", "expected"),
    [
        # History starts after the period ended, never sent before: up to now.
        (1, None, "stretched"),
        # History reaches into the period: as it is.
        (-2, None, "same"),
        # No history at all: as it is.
        (None, None, "same"),
        # A previous digest ended after this period's start: start there.
        (-30, 2, "shifted"),
        # A previous digest ended at this period's start (the usual case): as it is.
        (-30, 0, "same"),
    ],
)
def test_fit_to_history(
    history_hours: int | None, previous_end_hours: int | None, expected: str
) -> None:
    period = _period(date(2026, 11, 26))
    now = period.send_at + timedelta(hours=3)
    history = None if history_hours is None else period.ends_at + timedelta(hours=history_hours)
    previous = (
        None
        if previous_end_hours is None
        else period.starts_at + timedelta(hours=previous_end_hours)
    )
    fitted = fit_to_history(period, history_since=history, previous_end=previous, now=now)
    if expected == "stretched":
        assert (fitted.starts_at, fitted.ends_at) == (period.starts_at, now)
        # Stored times have whole seconds: what was stored in the current one is included.
        later = now + timedelta(microseconds=250_000)
        fitted = fit_to_history(period, history_since=history, previous_end=previous, now=later)
        assert fitted.ends_at == now + timedelta(seconds=1)
    elif expected == "shifted":
        assert previous is not None
        assert (fitted.starts_at, fitted.ends_at) == (previous, period.ends_at)
    else:
        assert fitted == period


@pytest.mark.parametrize(
    ("first_poll", "days"),
    [
        (None, 0),  # nothing stored
        (timedelta(hours=-2), 0),  # first poll inside the period: no earlier day
        (timedelta(days=-1, hours=10), 0),  # in the day before: it holds the archives
        (timedelta(days=-3), 3),  # at the start of a day: that day counts
        (timedelta(days=-3, seconds=1), 2),
        (timedelta(days=-30), 7),  # a week or more of history: the whole baseline
    ],
)
def test_baseline_periods_leave_out_days_before_the_first_poll(
    first_poll: timedelta | None, days: int
) -> None:
    period = _period(date(2026, 11, 26))
    history = None if first_poll is None else period.starts_at + first_poll
    baseline = baseline_periods(TEAM, period, history)
    assert len(baseline) == days
    expected = [_period(date(2026, 11, 26) - timedelta(days=back)) for back in range(days, 0, -1)]
    assert baseline == expected  # the days right before the period, oldest first


def test_build_digest_with_a_short_baseline_averages_over_its_days() -> None:
    items = [make_item(n, ("human_resources",)) for n in range(1, 5)]
    three_days = dataclasses.replace(data(*items, human_resources=(1, 2, 3)), baseline_days=3)
    sections = {s.label: s for s in build_digest(TEAM, PERIOD, three_days).sections}
    assert (
        sections["human_resources"].previous_daily_average,
        sections["human_resources"].change_pct,
    ) == (2.0, 100.0)
    assert sections["marketing"].previous_daily_average == 0.0  # none in those 3 days


def test_build_digest_without_a_baseline_shows_no_change() -> None:
    items = [make_item(n, ("human_resources",)) for n in range(1, 5)]
    digest = build_digest(TEAM, PERIOD, dataclasses.replace(data(*items), baseline_days=0))
    assert digest.baseline_days == 0
    for section in digest.sections:
        assert (section.previous_daily_average, section.change_pct) == (None, None)
