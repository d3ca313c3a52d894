"""render.py: the digest as an email, parsed back the way a mail client would read it.

tests/data/digests/sample.txt is the plain-text part of the sample digest below. After a
deliberate change, regenerate it with `LISTENER_UPDATE_GOLDEN=1 pytest tests/test_render.py`
and review the diff line by line.
"""

from __future__ import annotations

import dataclasses
import email
import html
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.digest.build import build_digest
from listener.digest.model import Digest
from listener.digest.periods import digest_period, fit_to_history
from listener.domain import DigestData, DigestItem, FeedHealth, Recipient
from listener.render.digest import (
    digest_subject,
    message_id,
    render_digest,
    render_digest_summary,
)

GOLDEN = Path(__file__).parent / "data" / "digests" / "sample.txt"
UPDATE_GOLDEN = os.environ.get("LISTENER_UPDATE_GOLDEN") == "1"

TEAM = Recipient(name="team", email="team@example.com", timezone="Europe/Paris", send_at="07:30")
DAY = date(2026, 11, 26)
GENERATED_AT = datetime(2026, 11, 26, 6, 30, 5, tzinfo=UTC)
SENDER = "listener <listener@example.com>"
EVIL_TITLE = "<script>alert(1)</script><img src=x onerror=alert(2)> Glassdoor rating drops"
EVIL_SUMMARY = '</td></tr></table><a href="javascript:alert(4)">click</a>'
BASE = datetime(2026, 11, 25, tzinfo=UTC)  # 01:00 in Paris on the covered day


def make_item(
    item_id: int,
    title: str,
    feed: str,
    labels: tuple[str, ...],
    scores: Mapping[str, float],
    hours: float,
    *,
    url: str | None = None,
    summary: str = "",
    uncertain: bool = False,
) -> DigestItem:
    slug = feed.lower().replace(" ", "-")
    published_at = BASE + timedelta(hours=hours)
    return DigestItem(
        item_id=item_id,
        title=title,
        url=url if url is not None else f"https://{slug}.example/{item_id}",
        summary=summary,
        feed_title=feed,
        feed_url=f"https://{slug}.example/feed",
        feed_tags=(),
        published_at=published_at,
        fetched_at=published_at + timedelta(minutes=10),
        lang="en",
        labels=labels,
        scores=scores,
        uncertain=uncertain,
    )


JOBS = "Acme opens 300 engineering jobs in Lyon as it expands its R&D centre"
ITEMS = (
    make_item(
        101,
        JOBS,
        "Les Echos",
        ("human_resources",),
        {"human_resources": 0.91, "business_intelligence": 0.4},
        8,
        url="https://news.example/acme-lyon?utm_source=rss",
        summary="The industrial group plans to hire 300 engineers over two years at its Lyon "
        "site, its biggest recruitment drive since 2019, the HR director told reporters on "
        "Wednesday, adding that half of the positions would be open to graduates.",
    ),
    make_item(
        102,
        JOBS,
        "Le Figaro Éco",
        ("human_resources",),
        {"human_resources": 0.88},
        9,
        url="https://www.news.example/acme-lyon/",
    ),
    make_item(
        103,
        JOBS.upper() + "!",
        "AFP",
        ("human_resources", "business_intelligence"),
        {"human_resources": 0.7, "business_intelligence": 0.6},
        7,
        summary=JOBS.upper() + "! (AFP)",
    ),
    make_item(
        104,
        EVIL_TITLE,
        "Evil <b>Feed</b>",
        ("human_resources",),
        {"human_resources": 0.8},
        12,
        url="javascript:alert(3)",
        summary=EVIL_SUMMARY,
    ),
    make_item(
        105,
        "Customers report outage of Acme's mobile app for a second day",
        "Downdetector",
        ("customer_service",),
        {"customer_service": 0.95},
        20,
        summary="Thousands of users reported login failures on Tuesday evening; the company "
        "apologised on X.",
    ),
    make_item(
        106,
        "Acme launches spring campaign with football star",
        "Adweek",
        ("marketing",),
        {"marketing": 0.83},
        15,
        summary="The campaign, created by agency Fred & Farid, runs on TV and social media.",
    ),
    make_item(
        107,
        "Competitor Globex acquires analytics startup for $40m",
        "TechCrunch",
        ("business_intelligence",),
        {"business_intelligence": 0.77},
        -2.5,  # published the day before (23:30 in Paris), fetched in the period
        summary="Globex buys the Berlin-based startup to strengthen its data offering.",
    ),
    make_item(
        108,
        "Acme CEO interview on strategy",
        "France Inter",
        (),
        {"communication": 0.44, "business_intelligence": 0.41, "other": 0.1},
        18,
        uncertain=True,
    ),
    make_item(109, "Update", "Acme blog", (), {}, 5),
)
HEALTH = (
    FeedHealth("https://dead.example/rss", "Old Blog", "gone since 2026-11-20"),
    FeedHealth("https://quiet.example/rss", None, "silent for 12 days"),
    FeedHealth(
        "https://broken.example/rss",
        "Broken <b>Feed</b>",
        "failing since 2026-11-24 07:00Z (5 errors)",
    ),
)
DAILY = {
    "human_resources": (2, 3, 1, 2, 4, 2, 3),
    "marketing": (1, 0, 0, 2, 1, 0, 1),
    "communication": (2,) * 7,
    "business_intelligence": (1,) * 7,
}


def sample_digest(recipient: Recipient = TEAM, items: tuple[DigestItem, ...] = ITEMS) -> Digest:
    data = DigestData(items=items, daily_counts=DAILY, unhealthy_feeds=HEALTH)
    return build_digest(recipient, digest_period(recipient, DAY), data)


def parsed(message: EmailMessage) -> EmailMessage:
    """The message as a client receives it: serialised, then parsed again."""
    result = email.message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(result, EmailMessage)
    return result


def parts(digest: Digest) -> tuple[EmailMessage, str, str]:
    message = parsed(render_digest(digest, sender=SENDER, generated_at=GENERATED_AT))
    text, page = (part.get_content() for part in message.iter_parts())
    return message, text, page


class Tags(HTMLParser):
    """Every start tag with its attributes, and whether table/tr/td/p/a open and close."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.balanced = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in {"table", "tr", "td", "p", "a"}:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in {"table", "tr", "td", "p", "a"}:
            self.balanced &= bool(self.stack) and self.stack.pop() == tag


def tags_of(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


OUR_TAGS = {
    "html", "head", "meta", "title", "body", "div", "table", "tr", "td", "p", "a", "span",
    "code", "strong",
}  # fmt: skip


def assert_inert(page: str) -> None:
    """Only our own tags; no script, image, form or remote resource; links only http(s)."""
    parser = tags_of(page)
    assert parser.balanced
    assert not parser.stack
    assert {tag for tag, _ in parser.tags} <= OUR_TAGS
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not {"src", "srcset", "background", "action", "formaction"} & set(attrs)
        if "href" in attrs:
            assert tag == "a"
            assert re.match(r"https?://", attrs["href"] or ""), attrs["href"]
    assert "url(" not in page
    assert "@import" not in page


# -- the message --------------------------------------------------------------------------


def test_render_digest_is_text_then_html_in_utf8() -> None:
    message, text, page = parts(sample_digest())
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in message.iter_parts()] == ["utf-8", "utf-8"]
    assert "Le Figaro Éco" in text
    assert "Le Figaro Éco" in page
    assert page.startswith("<!DOCTYPE html>")


def test_render_digest_sets_the_headers_a_mail_client_expects() -> None:
    message, _, _ = parts(sample_digest())
    assert message["From"] == SENDER
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("team", "team@example.com")
    assert parsedate_to_datetime(message["Date"]) == GENERATED_AT
    assert message["Subject"] == digest_subject(sample_digest())
    assert re.fullmatch(
        r"<digest\.2026-11-26\.team\.[0-9a-f]{8}@listener\.localhost>", message["Message-ID"]
    )
    assert message["X-Listener-Digest"] == "team/2026-11-26"
    assert message["Auto-Submitted"] == "auto-generated"


def test_message_id_is_the_same_for_a_retry_and_differs_otherwise() -> None:
    digest = sample_digest()
    first = render_digest(digest, sender=SENDER, generated_at=GENERATED_AT)
    retry = render_digest(digest, sender=SENDER, generated_at=GENERATED_AT + timedelta(hours=1))
    assert first["Message-ID"] == retry["Message-ID"] == message_id(digest, "listener.localhost")
    next_day = dataclasses.replace(digest, period=digest_period(TEAM, DAY + timedelta(days=1)))
    other = dataclasses.replace(
        digest, period=dataclasses.replace(digest.period, recipient="Équipe")
    )
    ids = {message_id(d, "example.org") for d in (digest, next_day, other)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"<digest\.[\w.-]+@example\.org>", each) for each in ids)
    assert message_id(other, "example.org").startswith("<digest.2026-11-26.quipe.")


@pytest.mark.parametrize(
    ("recipient", "items", "subject"),
    [
        (
            TEAM,
            ITEMS,
            "listener · Thu 26 Nov 2026 · 9 items — Marketing 1 · HR 4 · Customer 1 · BI 2",
        ),
        (
            dataclasses.replace(TEAM, functions=("human_resources", "communication")),
            ITEMS,
            "listener · Thu 26 Nov 2026 · 9 items — HR 4",
        ),
        (TEAM, ITEMS[4:5], "listener · Thu 26 Nov 2026 · 1 item — Customer 1"),
        (TEAM, ITEMS[7:], "listener · Thu 26 Nov 2026 · 2 items"),  # only an uncertain item
        (TEAM, ITEMS[8:], "listener · Thu 26 Nov 2026 · nothing new"),
        (TEAM, (), "listener · Thu 26 Nov 2026 · nothing new"),
    ],
)
def test_digest_subject(recipient: Recipient, items: tuple[DigestItem, ...], subject: str) -> None:
    assert digest_subject(sample_digest(recipient, items)) == subject


# -- escaping -----------------------------------------------------------------------------


def test_feed_text_cannot_inject_markup_into_the_html() -> None:
    _, _, page = parts(sample_digest())
    assert_inert(page)
    assert "javascript:" not in {attrs.get("href") for _, attrs in tags_of(page).tags}
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;a href=&#34;javascript:alert(4)&#34;" in page
    assert "Evil &lt;b&gt;Feed&lt;/b&gt;" in page
    # The item with a javascript: URL is shown, as text, with its title escaped.
    assert html.unescape(page).count(EVIL_TITLE) == 1


FEED_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
NASTY = st.sampled_from(
    ['"><script>x</script>', "' onmouseover='x", "javascript:alert(1)", "<a href=x>", "&amp;"]
)


@settings(max_examples=40, deadline=None)
@given(
    title=st.one_of(FEED_TEXT, NASTY),
    summary=st.one_of(FEED_TEXT, NASTY),
    feed=st.one_of(FEED_TEXT, NASTY),
    url=st.one_of(FEED_TEXT, NASTY, st.just('https://x.example/"><script>')),
)
def test_no_feed_text_can_inject_markup(title: str, summary: str, feed: str, url: str) -> None:
    item = dataclasses.replace(ITEMS[0], title=title, summary=summary, feed_title=feed, url=url)
    copy = dataclasses.replace(item, item_id=2, feed_url="https://copy.example/", url=url)
    unsure = dataclasses.replace(item, item_id=3, labels=(), uncertain=True, feed_url=url)
    health = FeedHealth(url=url, title=feed, state=summary)
    data = DigestData(items=(item, copy, unsure), daily_counts={}, unhealthy_feeds=(health,))
    digest = build_digest(TEAM, digest_period(TEAM, DAY), data)
    _, _, page = parts(digest)
    assert_inert(page)


# -- content -------------------------------------------------------------------------------


def test_times_are_shown_in_the_recipients_zone() -> None:
    # Item 101 was published at 08:00 UTC on 25 November, item 107 at 21:30 UTC on the 24th:
    # a time alone on the covered local day, with the date on any other.
    for zone, at, before in [
        ("Europe/Paris", "09:00", "Tue 24 Nov 22:30"),
        ("America/New_York", "03:00", "Tue 24 Nov 16:30"),
        ("Asia/Kolkata", "13:30", "03:00"),
    ]:
        recipient = dataclasses.replace(TEAM, timezone=zone)
        _, text, page = parts(sample_digest(recipient, (ITEMS[0], ITEMS[6])))
        assert f"Les Echos | {at} | #101" in text
        assert f"Les Echos &middot; {at} &middot; #101" in page.replace("·", "&middot;")
        assert f"TechCrunch | {before} | #107" in text


def test_each_story_appears_once_with_its_other_sources() -> None:
    _, text, page = parts(sample_digest())
    hr = text.split("HR & EMPLOYER BRAND")[1].split("CUSTOMER SERVICE")[0]
    assert hr.count(JOBS) == 1
    assert "Also on: AFP, Le Figaro Éco" in hr
    assert "#102" not in hr
    assert "#103" not in hr
    unescaped = html.unescape(page)
    assert unescaped.count(JOBS) == 1  # the HR lead; AFP's upper-case copy leads BI
    assert '<a href="https://www.news.example/acme-lyon/"' in page  # the copy is linked


def test_uncertain_items_show_their_top_two_guesses_and_how_to_label_them() -> None:
    _, text, page = parts(sample_digest())
    assert "Guesses: communication 44%, business_intelligence 41%" in text
    assert "listener label 108 LABEL" in text
    assert "Needs a human eye" in page
    assert "listener label 108 LABEL" in page


def test_the_uncertain_section_counts_what_it_does_not_show() -> None:
    # Seven unsure stories, three shown: the heading counts all seven, and the reader learns
    # where the other four are instead of missing them in the total.
    unsure = tuple(
        make_item(
            200 + n,
            f"Acme weighs a change number {n} to its customer programme",
            f"Feed {n}",
            (),
            {"marketing": 0.3 + n / 100, "customer_service": 0.2},
            n,
            uncertain=True,
        )
        for n in range(7)
    )
    recipient = dataclasses.replace(TEAM, items_per_section=3)
    digest = sample_digest(recipient, ITEMS + unsure)
    assert (len(digest.uncertain), digest.uncertain_total) == (3, 8)  # with ITEMS' item 108
    _, text, page = parts(digest)
    assert "NEEDS A HUMAN EYE (8)" in text
    assert "+ 5 more not shown: listener review lists them" in text
    assert "Needs a human eye 8 items" in words_of(page)
    assert "+ 5 more not shown: listener review lists them" in words_of(page)
    assert "8 uncertain to review" in render_digest_summary(digest).get_content()
    # All shown: no "more" line.
    _, text, page = parts(sample_digest())
    assert "NEEDS A HUMAN EYE (1)" in text
    assert "more not shown: listener review" not in text + page


def test_feed_health_and_footer() -> None:
    _, text, page = parts(sample_digest())
    for name, state in [
        ("Old Blog", "gone since 2026-11-20"),
        ("quiet.example", "silent for 12 days"),  # no title: the feed's host
        ("Broken <b>Feed</b>", "failing since 2026-11-24 07:00Z (5 errors)"),
    ]:
        assert f"- {name}: {state}" in text
        assert name in html.unescape(page)
        assert state in page
    for part in (text, html.unescape(page)):
        assert "[[recipients]]" in part
        assert "listener label ITEM LABEL" in part


def words_of(part: str) -> str:
    """What a reader sees of a part: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", part)).split())


def test_the_footer_names_the_settings_file_the_daemon_read() -> None:
    read = "/etc/listener/listener.toml"
    message = parsed(
        render_digest(sample_digest(), sender=SENDER, generated_at=GENERATED_AT, settings_file=read)
    )
    for part in message.iter_parts():
        assert f"team” in {read}." in words_of(part.get_content()).replace('"', "”")
    # On the built-in defaults there is no file to edit yet: say where one goes.
    _, text, page = parts(sample_digest())
    for part in (text, page):
        words = words_of(part)
        assert "in a listener.toml settings file (listener check-config lists where" in words
        assert "config/listener.toml" not in words  # the shipped defaults, not the user's file


def test_excerpts_are_cut_at_a_word_and_skip_repeated_titles() -> None:
    _, text, page = parts(sample_digest())
    excerpt = html.unescape(page).split("its biggest recruitment drive")[1].split("<")[0]
    assert excerpt.endswith("…")
    assert len(excerpt) < 120
    assert "(AFP)" not in text  # item 103's summary only repeats its title


def test_a_digest_stretched_past_its_day_names_its_real_bounds() -> None:
    """A new install's first digest covers from its day's start to now, not "yesterday"."""
    day = digest_period(TEAM, DAY)
    first_poll_at = day.ends_at + timedelta(hours=1)
    period = fit_to_history(
        day, history_since=first_poll_at, previous_end=None, now=day.ends_at + timedelta(hours=8)
    )
    data = DigestData(items=ITEMS[8:], daily_counts=DAILY, unhealthy_feeds=HEALTH)
    digest = build_digest(TEAM, period, data)
    _, text, page = parts(digest)
    span = "from Wed 25 Nov 00:00 to Thu 26 Nov 08:00"  # Europe/Paris
    assert f"1 new item {span}" in text
    assert f"Nothing new {span} in the functions you follow." in html.unescape(page)
    assert "yesterday" not in text + page
    empty = build_digest(TEAM, period, dataclasses.replace(data, items=()))
    assert f"Nothing new {span}." in render_digest_summary(empty).get_content()


@pytest.mark.parametrize(
    ("days", "count_line", "note"),
    [
        (7, "(7-day avg 2.4)", "of the 7 days before."),
        (3, "(3-day avg 3.0)", "of the 3 days before, all that listener has stored yet"),
        (0, "(no baseline yet)", "No change shown yet: listener has not stored a full day"),
    ],
)
def test_the_counts_say_what_baseline_they_are_compared_with(
    days: int, count_line: str, note: str
) -> None:
    """A new install's first week compares with the days it has, not with empty days."""
    daily = {label: counts[len(counts) - days :] for label, counts in DAILY.items()}
    data = DigestData(items=ITEMS, daily_counts=daily, unhealthy_feeds=(), baseline_days=days)
    _, text, page = parts(build_digest(TEAM, digest_period(TEAM, DAY), data))
    (hr_count,) = [line for line in text.splitlines() if line.startswith("  HR & employer brand")]
    assert hr_count.endswith(count_line)
    assert note in html.unescape(page)
    heading = next(line for line in text.splitlines() if line.startswith("HR & EMPLOYER BRAND ("))
    if days:
        assert heading.endswith("%)")  # the change against the baseline
        assert f'title="{count_line[1:-1]}"' in page
    else:
        assert heading.endswith(" items)")  # no change: "new" would say it rose from zero
        assert "new" not in hr_count


def test_empty_digest_says_nothing_new() -> None:
    _, text, page = parts(sample_digest(items=ITEMS[8:]))
    assert "Nothing new on Wednesday 25 November 2026 in the functions you follow." in text
    assert "Nothing new on Wednesday 25 November 2026 in the functions you follow." in page
    assert "1 new item on Wednesday 25 November 2026" in text
    assert "Feed health" in page  # still worth knowing
    assert_inert(page)


def test_the_plain_text_matches_the_golden_file() -> None:
    _, text, _ = parts(sample_digest())
    if UPDATE_GOLDEN:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(text.encode("utf-8"))
    assert text.encode("utf-8") == GOLDEN.read_bytes()
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 72
