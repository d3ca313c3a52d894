"""Pure apart from reading its own templates: a Digest as a multipart/alternative email.

The only module that converts times to the recipient's zone. Feed text reaches the HTML
only through Jinja2's autoescape, and becomes a link only when it is an http(s) URL, so
a feed cannot put markup, scripts or `javascript:` links into the email.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2

from listener.digest import Digest, Section, Story, is_empty, top_guesses
from listener.domain import LABELS, DigestItem, FeedHealth
from listener.text import truncate

TEMPLATES = Path(__file__).parent / "templates"

# Short names for the subject line and the chips, where space is tight.
LABEL_SHORT: dict[str, str] = {
    "marketing": "Marketing",
    "communication": "PR",
    "human_resources": "HR",
    "customer_service": "Customer",
    "business_intelligence": "BI",
    "other": "Other",
}
# (background, text) per label: pale chips with dark text stay readable when a client
# ignores the background, and need no image or remote font.
LABEL_COLORS: dict[str, tuple[str, str]] = {
    "marketing": ("#fde8e8", "#9b1c1c"),
    "communication": ("#e1effe", "#1e429f"),
    "human_resources": ("#def7ec", "#03543f"),
    "customer_service": ("#fdf6b2", "#723b13"),
    "business_intelligence": ("#edebfe", "#5521b5"),
    "other": ("#f3f4f6", "#374151"),
}
_DEFAULT_COLORS = ("#f3f4f6", "#374151")
EXCERPT_CHARS = 200  # about two lines at 600 px
TITLE_CHARS = 160
TEXT_WIDTH = 72
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# English names, not strftime's: the machine's locale must not change the email.
_MONTH_NAMES = (
    "January February March April May June July August September October November December"
)
_MONTHS = tuple(_MONTH_NAMES.split())
# The store gives datetime.min to an item without a date; show when it was fetched instead.
_DATELESS_BEFORE = datetime(1971, 1, 1, tzinfo=UTC)
_SLUG = re.compile(r"[^a-z0-9-]+")


# -- what the templates see: plain, already formatted values -------------------------------


@dataclass(frozen=True, slots=True)
class _Chip:
    text: str
    background: str
    color: str


@dataclass(frozen=True, slots=True)
class _Link:
    text: str
    href: str | None  # None: not http(s), shown as text


@dataclass(frozen=True, slots=True)
class _StoryView:
    item_id: int
    title: str
    href: str | None
    feed: str
    when: str
    chips: tuple[_Chip, ...]
    excerpt: str
    also_on: tuple[_Link, ...]
    guesses: str  # uncertain items: the model's top two guesses


@dataclass(frozen=True, slots=True)
class _CountView:
    label: str
    title: str
    short: str
    count: int
    change: str  # "▲ +40%", "▼ −20%", "±0%", "new" or "—"
    change_text: str  # the same in ASCII, for the plain-text part
    average: str
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
) -> EmailMessage:
    """The digest as text/plain then text/html, with every header a mail client expects."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be an aware datetime")
    context = _context(digest, generated_at)
    text = _environment().get_template("digest.txt").render(context)
    html = _environment().get_template("digest.html").render(context)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(digest.recipient.name, addr_spec=digest.recipient.email)
    message["Subject"] = digest_subject(digest)
    message["Date"] = format_datetime(generated_at)
    message["Message-ID"] = message_id(digest, message_domain)
    message["X-Listener-Digest"] = f"{digest.period.recipient}/{digest.period.day.isoformat()}"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"  # the same, for Exchange
    # quoted-printable: 7-bit safe on any relay (no 8BITMIME needed), whatever the feeds say.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def digest_subject(digest: Digest) -> str:
    """'listener · Thu 26 Nov 2026 · 42 items — Marketing 11 · PR 5 · HR 12'.

    Counts only for followed functions with items, in the fixed label order so each
    function sits in the same place every morning.
    """
    day = digest.period.day
    head = (
        f"listener · {_DAYS[day.weekday()][:3]} {day.day} {_MONTHS[day.month - 1][:3]} {day.year}"
    )
    if is_empty(digest):
        return f"{head} · nothing new"
    counts = [
        f"{LABEL_SHORT[section.label]} {section.count}"
        for section in digest.sections
        if section.count > 0
    ]
    items = f"{digest.total_items} item{'' if digest.total_items == 1 else 's'}"
    return f"{head} · {items}" + (f" — {' · '.join(counts)}" if counts else "")


def message_id(digest: Digest, domain: str) -> str:
    """Deterministic per (recipient, day), so a retried send is recognisable as the same."""
    recipient = digest.period.recipient
    day = digest.period.day.isoformat()
    slug = _SLUG.sub("-", recipient.lower()).strip("-")[:32] or "recipient"
    # The hash tells apart recipients whose names slug alike ("Équipe" and "quipe").
    digest_hash = hashlib.sha256(f"{recipient}\n{day}".encode()).hexdigest()[:8]
    return f"<digest.{day}.{slug}.{digest_hash}@{domain}>"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# -- formatting -----------------------------------------------------------------------------


def _context(digest: Digest, generated_at: datetime) -> dict[str, object]:
    zone = ZoneInfo(digest.recipient.timezone)
    covered = digest.period.day - timedelta(days=1)
    counts = tuple(_count_view(digest, section) for section in digest.sections)
    sections = tuple(_section_view(section, covered, zone) for section in digest.sections)
    uncertain = tuple(_story_view(story, None, covered, zone) for story in digest.uncertain)
    feeds = tuple(_feed_view(feed) for feed in digest.unhealthy_feeds)
    first = next((section.stories[0].title for section in sections if section.stories), "")
    summary = " · ".join(f"{count.short} {count.count}" for count in counts if count.count)
    return {
        "subject": digest_subject(digest),
        "preheader": " — ".join(part for part in (summary, first) if part),
        "recipient": digest.recipient,
        "day_long": _long_date(digest.period.day),
        "covered_long": _long_date(covered),
        "timezone": digest.recipient.timezone,
        "total_items": digest.total_items,
        "empty": is_empty(digest),
        "counts": counts,
        "count_width": 100 // max(len(counts), 1),
        "sections": sections,
        "uncertain": uncertain,
        "feeds": feeds,
        "labels": ", ".join(LABELS),
        "generated": _local_time(generated_at, zone, None),
        "text_heading": _text_heading,
        "text_wrap": _text_wrap,
    }


def _count_view(digest: Digest, section: Section) -> _CountView:
    change, change_text = _change(section.count, section.change_pct)
    return _CountView(
        label=section.label,
        title=section.title,
        short=LABEL_SHORT.get(section.label, section.title),
        count=section.count,
        change=change,
        change_text=change_text,
        average=f"{digest.previous_daily_average.get(section.label, 0.0):.1f}",
        color=LABEL_COLORS.get(section.label, _DEFAULT_COLORS)[1],
    )


def _section_view(section: Section, covered: date, zone: ZoneInfo) -> _SectionView:
    stories = tuple(_story_view(story, section.label, covered, zone) for story in section.stories)
    shown = sum(
        1
        for story in section.stories
        for item in (story.lead, *story.others)
        if section.label in item.labels and not item.uncertain
    )
    change, change_text = _change(section.count, section.change_pct)
    return _SectionView(
        label=section.label,
        title=section.title,
        count=section.count,
        change=change,
        change_text=change_text,
        color=LABEL_COLORS.get(section.label, _DEFAULT_COLORS)[1],
        stories=stories,
        hidden=max(section.count - shown, 0),
    )


def _story_view(story: Story, label: str | None, covered: date, zone: ZoneInfo) -> _StoryView:
    lead = story.lead
    title = _one_line(lead.title) or "(untitled)"
    summary = _one_line(lead.summary)
    # Many feeds repeat the title as the summary: an excerpt that says nothing new is noise.
    excerpt = "" if summary.casefold().startswith(title.casefold()) else summary
    # Label names as `listener label` takes them: the guess is one copy-paste away.
    guesses = ", ".join(f"{guess} {score:.0%}" for guess, score in top_guesses(lead))
    return _StoryView(
        item_id=lead.item_id,
        title=truncate(title, TITLE_CHARS),
        href=_safe_href(lead.url),
        feed=_feed_name(lead),
        when=_local_time(_shown_at(lead), zone, covered),
        chips=tuple(_chip(lead, each) for each in _chip_labels(lead, label)),
        excerpt=truncate(excerpt, EXCERPT_CHARS),
        also_on=tuple(_Link(_feed_name(item), _safe_href(item.url)) for item in story.others),
        guesses=guesses,
    )


def _chip_labels(item: DigestItem, section_label: str | None) -> list[str]:
    if section_label is None:
        return []  # uncertain: its guesses are shown instead
    # The section's label first: the reader is scanning that function.
    return [section_label, *(label for label in item.labels if label != section_label)]


def _chip(item: DigestItem, label: str) -> _Chip:
    background, color = LABEL_COLORS.get(label, _DEFAULT_COLORS)
    short = LABEL_SHORT.get(label, label)
    score = item.scores.get(label)
    return _Chip(f"{short} {score:.0%}" if score is not None else short, background, color)


def _feed_view(feed: FeedHealth) -> _FeedView:
    # Gone and failing feeds are broken; a silent one may just be quiet.
    color = "#b45309" if feed.state.startswith("silent") else "#b91c1c"
    return _FeedView(
        name=_one_line(feed.title or "") or _host(feed.url),
        url=feed.url,
        state=feed.state,
        color=color,
    )


def _change(count: int, change_pct: float | None) -> tuple[str, str]:
    """(HTML, plain text) forms of the change against the 7-day daily average."""
    if change_pct is None:
        return ("new", "new") if count > 0 else ("—", "-")
    rounded = round(change_pct)
    if rounded == 0:
        return "±0%", "+0%"
    if rounded > 0:
        return f"▲ +{rounded}%", f"+{rounded}%"
    return f"▼ −{-rounded}%", f"-{-rounded}%"  # a true minus sign in HTML


def _safe_href(url: str | None) -> str | None:
    """The URL if a mail client may link it: http(s) with a host and no whitespace."""
    if not url or any(char.isspace() or ord(char) < 32 for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _feed_name(item: DigestItem) -> str:
    return _one_line(item.feed_title or "") or _host(item.feed_url)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def _one_line(text: str) -> str:
    # Feed text is cleaned when parsed; folding again keeps a title from adding lines
    # (or a fake "Correct it:" line) to the plain-text layout.
    return " ".join(text.split())


def _shown_at(item: DigestItem) -> datetime:
    return item.published_at if item.published_at >= _DATELESS_BEFORE else item.fetched_at


def _local_time(when: datetime, zone: ZoneInfo, covered: date | None) -> str:
    """'14:05' on the covered day, else 'Tue 24 Nov 14:05' (in the recipient's zone)."""
    local = when.astimezone(zone)
    if covered is not None and local.date() == covered:
        return f"{local:%H:%M}"
    return f"{_DAYS[local.weekday()][:3]} {local.day} {_MONTHS[local.month - 1][:3]} {local:%H:%M}"


def _long_date(day: date) -> str:
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _text_heading(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * min(len(text), TEXT_WIDTH)}"


def _text_wrap(text: str, indent: str = "   ", first: str | None = None) -> str:
    return textwrap.fill(
        text,
        width=TEXT_WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
