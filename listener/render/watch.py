"""Pure: what the digest and alert templates show of watches: mentions with their matched
terms highlighted, watch sections, share of voice.

Highlighting is data, not markup: a text is handed to the templates as (piece, marked)
pairs, and the HTML template escapes every piece, so a feed cannot inject markup through
a highlighted title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from listener.digest.model import Digest, MentionStory, Story, WatchSection
from listener.domain import DigestItem
from listener.feeds.text import truncate
from listener.render.parts import (
    EXCERPT_CHARS,
    LABEL_SHORT,
    TITLE_CHARS,
    Chip,
    Link,
    average_text,
    change_texts,
    feed_name,
    label_chip,
    local_time,
    one_line,
    safe_href,
    shown_at,
)
from listener.watches.highlight import segments, snippet, term_spans

Marked = tuple[tuple[str, bool], ...]  # a text as (piece, highlighted) pairs


@dataclass(frozen=True, slots=True)
class MentionView:
    item_id: int
    title: Marked
    href: str | None
    feed: str
    when: str
    chips: tuple[Chip, ...]
    excerpt: Marked  # the part of the summary around the first matched term, if any
    terms: str
    also_on: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class WatchView:
    name: str
    kind: str
    count: int
    change: str
    change_text: str
    average: str
    split: str  # "Marketing 5 · PR 3 · uncertain 2"
    mentions: tuple[MentionView, ...]
    hidden: int


@dataclass(frozen=True, slots=True)
class VoiceView:
    name: str
    kind: str
    count: int
    percent: str  # "45%"
    width: int  # of the bar, in percent of the row


def text_marks(parts: Marked) -> str:
    """The plain-text form of a marked text: *highlighted* pieces between asterisks."""
    return "".join(f"*{piece}*" if marked else piece for piece, marked in parts)


def marked_text(text: str, terms: Sequence[str], limit: int) -> Marked:
    """`text` on one line, cut to `limit` characters, its matched terms marked."""
    line = truncate(one_line(text), limit)
    return tuple(segments(line, term_spans(line, terms)))


def marked_excerpt(text: str, terms: Sequence[str], limit: int) -> Marked:
    """The part of `text` around its first matched term (its start when none matches)."""
    line = one_line(text)
    window, spans = snippet(line, term_spans(line, terms), limit)
    return tuple(segments(window, spans))


def mention_view(
    item: DigestItem,
    terms: Sequence[str],
    others: Sequence[DigestItem],
    covered: date | None,
    zone: ZoneInfo,
) -> MentionView:
    title = marked_text(item.title, terms, TITLE_CHARS) or (("(untitled)", False),)
    summary = one_line(item.summary)
    # Many feeds repeat the title as the summary: an excerpt that says nothing new is noise.
    repeats = summary.casefold().startswith(one_line(item.title).casefold())
    labels = item.labels if not item.uncertain else ()
    return MentionView(
        item_id=item.item_id,
        title=title,
        href=safe_href(item.url),
        feed=feed_name(item),
        when=local_time(shown_at(item), zone, covered),
        chips=tuple(label_chip(item, label) for label in labels),
        excerpt=() if repeats or not summary else marked_excerpt(summary, terms, EXCERPT_CHARS),
        terms=", ".join(terms),
        also_on=tuple(Link(feed_name(other), safe_href(other.url)) for other in others),
    )


def watch_views(digest: Digest, covered: date, zone: ZoneInfo) -> tuple[WatchView, ...]:
    days = digest.baseline_days
    return tuple(_watch_view(section, days, covered, zone) for section in digest.watches)


def voice_views(digest: Digest) -> tuple[VoiceView, ...]:
    return tuple(
        VoiceView(v.name, v.kind, v.count, f"{v.share:.0%}", max(round(v.share * 100), 1))
        for v in digest.share_of_voice
    )


def _watch_view(
    section: WatchSection, baseline_days: int, covered: date, zone: ZoneInfo
) -> WatchView:
    average = section.previous_daily_average
    change, change_text = change_texts(section.count, section.change_pct, average)
    split = " · ".join(
        f"{LABEL_SHORT.get(label, label)} {count}" for label, count in section.by_function
    )
    return WatchView(
        name=section.name,
        kind=section.kind,
        count=section.count,
        change=change,
        change_text=change_text,
        average=average_text(average, baseline_days),
        split=split,
        mentions=tuple(_story_mention(each, covered, zone) for each in section.mentions),
        hidden=section.hidden,
    )


def _story_mention(each: MentionStory, covered: date, zone: ZoneInfo) -> MentionView:
    story: Story = each.story
    return mention_view(story.lead, each.terms, story.others, covered, zone)
