"""Pure apart from reading the templates: formatting shared by the digest and the alert
emails (times in the reader's zone, safe links, label chips, changes, plain-text layout)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from listener.domain import BASELINE_DAYS, DigestItem, Recipient

if TYPE_CHECKING:
    import jinja2

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
DEFAULT_COLORS = ("#f3f4f6", "#374151")
EXCERPT_CHARS = 200  # about two lines at 600 px
TITLE_CHARS = 160
TEXT_WIDTH = 72
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# English names, not strftime's: the machine's locale must not change the email.
_MONTH_NAMES = (
    "January February March April May June July August September October November December"
)
MONTHS = tuple(_MONTH_NAMES.split())
# The store gives datetime.min to an item without a date; show when it was fetched instead.
DATELESS_BEFORE = datetime(1971, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Chip:
    text: str
    background: str
    color: str


@dataclass(frozen=True, slots=True)
class Link:
    text: str
    href: str | None  # None: not http(s), shown as text


@cache
def environment() -> jinja2.Environment:
    import jinja2  # here: a poll imports the renderers (through the jobs) and renders nothing

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


def label_chip(item: DigestItem, label: str) -> Chip:
    background, color = LABEL_COLORS.get(label, DEFAULT_COLORS)
    short = LABEL_SHORT.get(label, label)
    score = item.scores.get(label)
    return Chip(f"{short} {score:.0%}" if score is not None else short, background, color)


def change_texts(count: int, change_pct: float | None, average: float | None) -> tuple[str, str]:
    """(HTML, plain text) forms of the change against the baseline's daily `average`; empty
    with no baseline yet (there is nothing to compare with, not a rise from zero)."""
    if average is None:
        return "", ""
    if change_pct is None:
        return ("new", "new") if count > 0 else ("—", "-")
    rounded = round(change_pct)
    if rounded == 0:
        return "±0%", "+0%"
    if rounded > 0:
        return f"▲ +{rounded}%", f"+{rounded}%"
    return f"▼ −{-rounded}%", f"-{-rounded}%"  # a true minus sign in HTML


def average_text(average: float | None, days: int) -> str:
    """'7-day avg 4.0'; '3-day avg 1.3' in a new install's first week; 'no baseline yet'."""
    return "no baseline yet" if average is None else f"{days}-day avg {average:.1f}"


def baseline_note(days: int) -> str:
    """What the digest's changes are measured against, for the HTML part."""
    if days == 0:
        return (
            "No change shown yet: listener has not stored a full day of items before this"
            " period (the day of its first poll holds the feeds' archives)."
        )
    span = f"{days} days" if days > 1 else "day"
    if days < BASELINE_DAYS:
        return (
            f"Change against the daily average of the {span} before, all that listener has"
            f" stored yet ({BASELINE_DAYS} from then on)."
        )
    return f"Change against the daily average of the {span} before."


def safe_href(url: str | None) -> str | None:
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


def feed_name(item: DigestItem) -> str:
    return one_line(item.feed_title or "") or host(item.feed_url)


def host(url: str) -> str:
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def one_line(text: str) -> str:
    # Feed text is cleaned when parsed; folding again keeps a title from adding lines
    # (or a fake "Correct it:" line) to the plain-text layout.
    return " ".join(text.split())


def shown_at(item: DigestItem) -> datetime:
    return item.published_at if item.published_at >= DATELESS_BEFORE else item.fetched_at


def local_time(when: datetime, zone: ZoneInfo, covered: date | None) -> str:
    """'14:05' on the covered day, else 'Tue 24 Nov 14:05' (in the recipient's zone)."""
    local = when.astimezone(zone)
    if covered is not None and local.date() == covered:
        return f"{local:%H:%M}"
    return f"{DAYS[local.weekday()][:3]} {local.day} {MONTHS[local.month - 1][:3]} {local:%H:%M}"


def long_date(day: date) -> str:
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def settings_place(settings_file: str | None) -> str:
    """Where a recipient's entry is to be changed: the settings file the daemon read, or,
    on the built-in defaults, where one would go."""
    if settings_file:
        return settings_file
    return "a listener.toml settings file (listener check-config lists where one is read)"


def text_heading(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * min(len(text), TEXT_WIDTH)}"


def text_wrap(text: str, indent: str = "   ", first: str | None = None) -> str:
    return textwrap.fill(
        text,
        width=TEXT_WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def make_message(
    template: str,
    context: Mapping[str, object],
    *,
    sender: str,
    recipient: Recipient,
    subject: str,
    generated_at: datetime,
    message_id: str,
    headers: Mapping[str, str],
) -> EmailMessage:
    """`template`.txt then `template`.html as a multipart/alternative email, with every
    header a mail client expects."""
    text = environment().get_template(f"{template}.txt").render(context)
    html = environment().get_template(f"{template}.html").render(context)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(recipient.name, addr_spec=recipient.email)
    message["Subject"] = subject
    message["Date"] = format_datetime(generated_at)
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name] = value
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"  # the same, for Exchange
    # quoted-printable: 7-bit safe on any relay (no 8BITMIME needed), whatever the feeds say.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message
