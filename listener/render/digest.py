"""Pure apart from reading its own templates: a Digest as a multipart/alternative email.

The only module that converts times to the recipient's zone. Feed text reaches the HTML
only through Jinja2's autoescape, and becomes a link only when it is an http(s) URL, so
a feed cannot put markup, scripts or `javascript:` links into the email.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from listener.digest.build import is_empty, top_guesses
from listener.digest.model import Digest, Section, Story
from listener.domain import LABELS, DigestItem, DigestPeriod, FeedHealth
from listener.feeds.text import truncate
from listener.render.parts import (
    DAYS,
    DEFAULT_COLORS,
    EXCERPT_CHARS,
    LABEL_COLORS,
    LABEL_SHORT,
    MONTHS,
    TITLE_CHARS,
    Chip,
    Link,
    average_text,
    baseline_note,
    change_texts,
    feed_name,
    host,
    label_chip,
    local_time,
    long_date,
    make_message,
    one_line,
    safe_href,
    settings_place,
    shown_at,
    text_heading,
    text_wrap,
)
from listener.render.watch import text_marks, voice_views, watch_views

_SLUG = re.compile(r"[^a-z0-9-]+")


# -- what the templates see: plain, already formatted values -------------------------------


@dataclass(frozen=True, slots=True)
class _StoryView:
    item_id: int
    title: str
    href: str | None
    feed: str
    when: str
    chips: tuple[Chip, ...]
    excerpt: str
    also_on: tuple[Link, ...]
    guesses: str  # uncertain items: the model's top two guesses


@dataclass(frozen=True, slots=True)
class _CountView:
    label: str
    title: str
    short: str
    count: int
    change: str  # "▲ +40%", "▼ −20%", "±0%", "new", "—", or "" with no baseline yet
    change_text: str  # the same in ASCII, for the plain-text part
    average: str  # "7-day avg 4.0" (parts.average_text)
    color: str


@dataclass(frozen=True, slots=True)
class _SectionView:
    label: str
    title: str
    count: int
    change: str
    change_text: str
    color: str
    stories: tuple[_StoryView, ...]
    hidden: int  # items in the section not shown as a story or a copy of one


@dataclass(frozen=True, slots=True)
class _FeedView:
    name: str
    url: str
    state: str
    color: str


# -- the message ----------------------------------------------------------------------------


def render_digest(
    digest: Digest,
    *,
    sender: str,
    generated_at: datetime,
    message_domain: str = "listener.localhost",
    settings_file: str | None = None,
) -> EmailMessage:
    """The digest as text/plain then text/html, with every header a mail client expects;
    its footer names `settings_file` (the file the settings came from) as where to change it."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be an aware datetime")
    return make_message(
        "digest",
        _context(digest, generated_at, settings_file),
        sender=sender,
        recipient=digest.recipient,
        subject=digest_subject(digest),
        generated_at=generated_at,
        message_id=message_id(digest, message_domain),
        headers={"X-Listener-Digest": f"{digest.period.recipient}/{digest.period.day.isoformat()}"},
    )


def digest_subject(digest: Digest) -> str:
    """'listener · Thu 26 Nov 2026 · 42 items — Marketing 11 · PR 5 · HR 12'.

    Counts only for followed functions with items, in the fixed label order so each
    function sits in the same place every morning.
    """
    day = digest.period.day
    head = f"listener · {DAYS[day.weekday()][:3]} {day.day} {MONTHS[day.month - 1][:3]} {day.year}"
    if is_empty(digest):
        return f"{head} · nothing new"
    counts = [
        f"{LABEL_SHORT[section.label]} {section.count}"
        for section in digest.sections
        if section.count > 0
    ]
    items = f"{digest.total_items} item{'' if digest.total_items == 1 else 's'}"
    return f"{head} · {items}" + (f" — {' · '.join(counts)}" if counts else "")


def render_digest_summary(digest: Digest) -> EmailMessage:
    """The digest in one paragraph, for a chat webhook: the subject's counts, then the top
    story of each followed function and how many items need a human eye."""
    parts = [
        f"{section.title}: {section.stories[0].lead.title}"
        for section in digest.sections
        if section.stories
    ]
    if digest.uncertain:
        total = max(digest.uncertain_total, len(digest.uncertain))
        parts.append(f"{total} uncertain to review")
    zone = ZoneInfo(digest.recipient.timezone)
    paragraph = " · ".join(parts) if parts else f"Nothing new {covered_span(digest.period, zone)}."
    email = digest.recipient.email
    summary = EmailMessage()
    summary["Subject"] = digest_subject(digest)
    summary.set_content(f"{paragraph}\n(The whole digest went to {email}.)")
    return summary


def message_id(digest: Digest, domain: str) -> str:
    """Deterministic per (recipient, day), so a retried send is recognisable as the same."""
    recipient = digest.period.recipient
    day = digest.period.day.isoformat()
    slug = _SLUG.sub("-", recipient.lower()).strip("-")[:32] or "recipient"
    # The hash tells apart recipients whose names slug alike ("Équipe" and "quipe").
    digest_hash = hashlib.sha256(f"{recipient}\n{day}".encode()).hexdigest()[:8]
    return f"<digest.{day}.{slug}.{digest_hash}@{domain}>"


# -- formatting -----------------------------------------------------------------------------


def covered_span(period: DigestPeriod, zone: ZoneInfo) -> str:
    """'on Friday 4 December 2026' when the digest covers that whole local day, else its
    real bounds: a first digest stretched to the install's first poll or a day cut short by
    the previous digest reads 'from Fri 4 Dec 00:00 to Sat 5 Dec 07:30' ("yesterday" would
    be wrong there)."""
    covered = period.day - timedelta(days=1)
    start, end = period.starts_at.astimezone(zone), period.ends_at.astimezone(zone)
    whole_day = (start.date(), start.time(), end.date(), end.time()) == (
        covered,
        time(0),
        period.day,
        time(0),
    )
    if whole_day:
        return f"on {long_date(covered)}"
    return f"from {local_time(start, zone, None)} to {local_time(end, zone, None)}"


def _context(
    digest: Digest, generated_at: datetime, settings_file: str | None
) -> dict[str, object]:
    zone = ZoneInfo(digest.recipient.timezone)
    covered = digest.period.day - timedelta(days=1)
    counts = tuple(_count_view(digest, section) for section in digest.sections)
    sections = tuple(_section_view(section, covered, zone) for section in digest.sections)
    uncertain = tuple(_story_view(story, None, covered, zone) for story in digest.uncertain)
    uncertain_total = max(digest.uncertain_total, len(uncertain))
    feeds = tuple(_feed_view(feed) for feed in digest.unhealthy_feeds)
    first = next((section.stories[0].title for section in sections if section.stories), "")
    summary = " · ".join(f"{count.short} {count.count}" for count in counts if count.count)
    return {
        "subject": digest_subject(digest),
        "preheader": " — ".join(part for part in (summary, first) if part),
        "recipient": digest.recipient,
        "settings_file": settings_file,
        "settings_place": settings_place(settings_file),
        "day_long": long_date(digest.period.day),
        "covered_span": covered_span(digest.period, zone),
        "timezone": digest.recipient.timezone,
        "total_items": digest.total_items,
        "empty": is_empty(digest),
        "counts": counts,
        "count_width": 100 // max(len(counts), 1),
        "baseline_note": baseline_note(digest.baseline_days),
        "sections": sections,
        "uncertain": uncertain,
        "uncertain_total": uncertain_total,
        "uncertain_hidden": uncertain_total - len(uncertain),
        "feeds": feeds,
        "labels": ", ".join(LABELS),
        "generated": local_time(generated_at, zone, None),
        "text_heading": text_heading,
        "text_wrap": text_wrap,
        "watches": watch_views(digest, covered, zone),
        "voices": voice_views(digest),
        "text_marks": text_marks,
    }


def _count_view(digest: Digest, section: Section) -> _CountView:
    average = section.previous_daily_average
    change, change_text = change_texts(section.count, section.change_pct, average)
    return _CountView(
        label=section.label,
        title=section.title,
        short=LABEL_SHORT.get(section.label, section.title),
        count=section.count,
        change=change,
        change_text=change_text,
        average=average_text(average, digest.baseline_days),
        color=LABEL_COLORS.get(section.label, DEFAULT_COLORS)[1],
    )


def _section_view(section: Section, covered: date, zone: ZoneInfo) -> _SectionView:
    stories = tuple(_story_view(story, section.label, covered, zone) for story in section.stories)
    shown = sum(
        1
        for story in section.stories
        for item in (story.lead, *story.others)
        if section.label in item.labels and not item.uncertain
    )
    change, change_text = change_texts(
        section.count, section.change_pct, section.previous_daily_average
    )
    return _SectionView(
        label=section.label,
        title=section.title,
        count=section.count,
        change=change,
        change_text=change_text,
        color=LABEL_COLORS.get(section.label, DEFAULT_COLORS)[1],
        stories=stories,
        hidden=max(section.count - shown, 0),
    )


def _story_view(story: Story, label: str | None, covered: date, zone: ZoneInfo) -> _StoryView:
    lead = story.lead
    title = one_line(lead.title) or "(untitled)"
    summary = one_line(lead.summary)
    # Many feeds repeat the title as the summary: an excerpt that says nothing new is noise.
    excerpt = "" if summary.casefold().startswith(title.casefold()) else summary
    # Label names as `listener label` takes them: the guess is one copy-paste away.
    guesses = ", ".join(f"{guess} {score:.0%}" for guess, score in top_guesses(lead))
    return _StoryView(
        item_id=lead.item_id,
        title=truncate(title, TITLE_CHARS),
        href=safe_href(lead.url),
        feed=feed_name(lead),
        when=local_time(shown_at(lead), zone, covered),
        chips=tuple(label_chip(lead, each) for each in _chip_labels(lead, label)),
        excerpt=truncate(excerpt, EXCERPT_CHARS),
        also_on=tuple(Link(feed_name(item), safe_href(item.url)) for item in story.others),
        guesses=guesses,
    )


def _chip_labels(item: DigestItem, section_label: str | None) -> list[str]:
    if section_label is None:
        return []  # uncertain: its guesses are shown instead
    # The section's label first: the reader is scanning that function.
    return [section_label, *(label for label in item.labels if label != section_label)]


def _feed_view(feed: FeedHealth) -> _FeedView:
    # Gone and failing feeds are broken; a silent one may just be quiet.
    color = "#b45309" if feed.state.startswith("silent") else "#b91c1c"
    return _FeedView(
        name=one_line(feed.title or "") or host(feed.url),
        url=feed.url,
        state=feed.state,
        color=color,
    )
