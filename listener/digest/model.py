"""Pure: the digest as build_digest makes it and render_digest shows it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from listener.domain import DigestItem, DigestPeriod, FeedHealth, Recipient


@dataclass(frozen=True, slots=True)
class Story:
    """One story: its best copy, and the copies other feeds carried (one per feed)."""

    lead: DigestItem
    others: tuple[DigestItem, ...] = ()


@dataclass(frozen=True, slots=True)
class Section:
    """One followed business function: its count, the baseline, and the top stories."""

    label: str
    title: str
    count: int  # items (not stories), like the baseline it is compared with
    previous_daily_average: float | None  # None: no baseline day yet (a new install)
    change_pct: float | None  # None when the baseline is 0 or there is none
    stories: tuple[Story, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    recipient: Recipient
    period: DigestPeriod
    total_items: int  # every item of the period, classified or not
    counts: Mapping[str, int]  # label -> items, for every label (followed or not)
    baseline_days: int  # how many days the averages are over (0: none yet)
    sections: tuple[Section, ...]
    uncertain: tuple[Story, ...]  # the closest calls, at most items_per_section of them
    unhealthy_feeds: tuple[FeedHealth, ...]
    watches: tuple[WatchSection, ...] = ()  # watches.with_watches fills these two
    share_of_voice: tuple[VoiceShare, ...] = ()
    uncertain_total: int = 0  # uncertain stories near a followed function, shown or not


@dataclass(frozen=True, slots=True)
class MentionStory:
    """A story mentioning a watch: its lead carries `terms`."""

    story: Story
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WatchSection:
    name: str
    kind: str
    query: str
    count: int  # items mentioning the watch in the period
    previous_daily_average: float | None  # None: no baseline day yet
    change_pct: float | None  # None when the baseline is 0 or there is none
    by_function: tuple[tuple[str, int], ...]  # (label or "uncertain", items), LABELS order
    mentions: tuple[MentionStory, ...]  # the top stories, best first
    hidden: int  # mentioning items not shown as a story or a copy of one


@dataclass(frozen=True, slots=True)
class VoiceShare:
    name: str
    kind: str
    count: int
    share: float  # 0..1 of the brand and competitor mentions in the period
