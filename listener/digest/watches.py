"""Pure: the digest's watch sections: each followed watch's mentions in the period, their
change against the 7 days before, their split by business function, the top mentions, and
the share of voice among the recipient's brands and competitors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from listener.digest.build import (
    REACH_BONUS,
    REACH_MAX_FEEDS,
    RECENCY_HALF_LIFE,
    change_pct,
    daily_average,
    group_stories,
)
from listener.digest.model import Digest, MentionStory, Story, VoiceShare, WatchSection
from listener.domain import LABELS, DigestData, DigestItem, Recipient, Watch
from listener.watches.highlight import term_spans

SHARE_OF_VOICE_KINDS = ("brand", "competitor")
UNCERTAIN = "uncertain"  # the split's names for mentions in no function: the model was unsure
UNCLASSIFIED = "unclassified"  # ...or has not seen the item
_KIND_ORDER = {"brand": 0, "competitor": 1, "person": 2, "topic": 3}
# A mention in the title says more about the watch than one deep in the summary.
TITLE_WEIGHT = 1.0
SUMMARY_WEIGHT = 0.5


def with_watches(digest: Digest, data: DigestData) -> Digest:
    """The digest with its watch sections and share of voice."""
    sections, voices = build_watch_sections(digest.recipient, data, digest.period.ends_at)
    return dataclasses.replace(digest, watches=sections, share_of_voice=voices)


def followed_watches(recipient: Recipient, watches: Sequence[Watch]) -> tuple[Watch, ...]:
    """The recipient's watches (every one when it names none): brands first, then
    competitors, people and topics, each by name."""
    wanted = set(recipient.watches)
    chosen = [w for w in watches if not wanted or w.name in wanted]
    return tuple(sorted(chosen, key=lambda w: (_KIND_ORDER.get(w.kind, 9), w.name)))


def build_watch_sections(
    recipient: Recipient, data: DigestData, now: datetime
) -> tuple[tuple[WatchSection, ...], tuple[VoiceShare, ...]]:
    """One section per watch in `data.watches` (already those the recipient follows), and
    the share of voice when at least two brands or competitors are followed."""
    items = {item.item_id: item for item in data.items}
    sections = []
    for watch in data.watches:
        mentioning = [
            items[item_id]
            for item_id, found in data.mentions.items()
            if watch.name in found and item_id in items
        ]
        mentioning.sort(key=lambda item: item.item_id)
        average = daily_average(data.watch_daily_counts.get(watch.name, ()), data.baseline_days)
        stories = _ranked(group_stories(mentioning), data.mentions, watch.name, now)
        top = tuple(stories[: recipient.items_per_section])
        shown = sum(1 + len(each.story.others) for each in top)
        sections.append(
            WatchSection(
                name=watch.name,
                kind=watch.kind,
                query=watch.query,
                count=len(mentioning),
                previous_daily_average=average,
                change_pct=change_pct(len(mentioning), average),
                by_function=_by_function(mentioning),
                mentions=top,
                hidden=max(len(mentioning) - shown, 0),
            )
        )
    return tuple(sections), share_of_voice(sections)


def share_of_voice(sections: Sequence[WatchSection]) -> tuple[VoiceShare, ...]:
    """Each brand's and competitor's part of their mentions, largest first; () when fewer
    than two are followed or none was mentioned."""
    voices = [s for s in sections if s.kind in SHARE_OF_VOICE_KINDS]
    total = sum(s.count for s in voices)
    if len(voices) < 2 or total == 0:
        return ()
    shares = [VoiceShare(s.name, s.kind, s.count, s.count / total) for s in voices]
    return tuple(sorted(shares, key=lambda v: (-v.count, v.name)))


def _by_function(items: Sequence[DigestItem]) -> tuple[tuple[str, int], ...]:
    counts = dict.fromkeys(LABELS, 0)
    counts |= {UNCERTAIN: 0, UNCLASSIFIED: 0}
    for item in items:
        if item.uncertain:
            counts[UNCERTAIN] += 1
        elif not item.labels:
            counts[UNCLASSIFIED] += 1
        for label in item.labels if not item.uncertain else ():
            counts[label] = counts.get(label, 0) + 1
    return tuple((label, n) for label, n in counts.items() if n)


def _ranked(
    stories: Sequence[Story],
    mentions: Mapping[int, Mapping[str, tuple[str, ...]]],
    watch: str,
    now: datetime,
) -> list[MentionStory]:
    """Best first: where the lead mentions the watch (title > summary) x recency x reach,
    as build.rank_stories weighs a function's stories."""

    def key(each: MentionStory) -> tuple[float, float, int]:
        lead = each.story.lead
        where = TITLE_WEIGHT if term_spans(lead.title, each.terms) else SUMMARY_WEIGHT
        age = max(now - lead.published_at, timedelta(0))
        reach = 1 + REACH_BONUS * min(len(each.story.others), REACH_MAX_FEEDS)
        rank = where * 0.5 ** (age / RECENCY_HALF_LIFE) * reach
        return (-rank, -lead.published_at.timestamp(), lead.item_id)

    found = [MentionStory(story, mentions[story.lead.item_id][watch]) for story in stories]
    return sorted(found, key=key)
