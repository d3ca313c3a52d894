"""Pure: spike detection for watches. Compares a watch's mentions in the last 24 hours with
the same 24-hour windows on each of the days before (the trailing daily baseline), for each
business function and for all mentions together.

A spike is at least `min_count` mentions *and* more than mean + k x sd of the baseline
(population standard deviation). An episode opened by a spike stays open, and is alerted
once, until the volume is back to normal: under `min_count` or at most mean + k/2 x sd of
the baseline it opened with. The half-way exit keeps a count that hovers around the
threshold from opening a new episode, and an alert, every hour.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from listener.domain import ALL_FUNCTIONS, LABELS, DigestItem, SpikeRule, Terms, Watch

DAY = timedelta(hours=24)
FUNCTIONS: tuple[str, ...] = (ALL_FUNCTIONS, *LABELS)
EpisodeKey = tuple[int, str]  # (watch id, function)


@dataclass(frozen=True, slots=True)
class Volume:
    """One function's last 24 hours against its baseline."""

    count: int
    mean: float
    sd: float
    threshold: float  # mean + k x sd

    def is_spike(self, rule: SpikeRule) -> bool:
        return self.count >= rule.min_count and self.count > self.threshold


@dataclass(frozen=True, slots=True)
class EpisodePlan:
    opened: tuple[tuple[EpisodeKey, Volume], ...]
    updated: tuple[tuple[EpisodeKey, int], ...]  # still open: the latest count
    closed: tuple[EpisodeKey, ...]


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """What plan_episodes needs of an open episode: the baseline it opened with."""

    mean: float
    sd: float


@dataclass(frozen=True, slots=True)
class TermTrend:
    term: str
    count: int  # mentions with this term in the last 24 h
    daily_average: float  # over the baseline days


@dataclass(frozen=True, slots=True)
class SpikeAlert:
    """One alert email: a watch's functions that spiked at one check, and why."""

    watch: Watch
    opened_at: datetime  # the check (on the hour) that opened the episodes
    window_start: datetime
    functions: tuple[tuple[str, Volume], ...]  # ALL_FUNCTIONS first, then LABELS order
    terms: tuple[TermTrend, ...]  # the terms that drove it, most risen first
    items: tuple[tuple[DigestItem, Terms, int], ...]  # top items: item, terms, other feeds
    min_count: int = 0  # the rule's minimum, shown with the threshold


def check_time(now: datetime) -> datetime:
    """The hour a check at `now` evaluates: the last full hour, so a restart within the
    hour repeats the same check."""
    return now.replace(minute=0, second=0, microsecond=0)


def window_start(check_at: datetime, rule: SpikeRule) -> datetime:
    """The start of the oldest baseline window: the data one check reads."""
    return check_at - DAY * (rule.baseline_days + 1)


def warm_up_ends_at(history_since: datetime | None, rule: SpikeRule) -> datetime | None:
    """When the stored history (items first seen since `history_since`) first covers every
    baseline day of a check; before then, a baseline averages days with no data. None with
    no history at all."""
    if history_since is None:
        return None
    return history_since + DAY * (rule.baseline_days + 1)


def daily_counts(
    mentions: Iterable[tuple[datetime, Sequence[str]]], check_at: datetime, rule: SpikeRule
) -> dict[str, list[int]]:
    """function -> mentions per 24-hour window, [0] the last 24 h, [i] the window i days
    before it. Each mention counts in ALL_FUNCTIONS and in each of its labels."""
    counts = {function: [0] * (rule.baseline_days + 1) for function in FUNCTIONS}
    for at, labels in mentions:
        if at >= check_at:
            continue
        index = int((check_at - at) / DAY)
        if index > rule.baseline_days:
            continue
        counts[ALL_FUNCTIONS][index] += 1
        for label in labels:
            if label in counts:
                counts[label][index] += 1
    return counts


def assess(counts: Sequence[int], rule: SpikeRule) -> Volume:
    """The last 24 h ([0]) against the days before ([1:])."""
    baseline = counts[1:]
    mean = math.fsum(baseline) / len(baseline) if baseline else 0.0
    variance = math.fsum((n - mean) ** 2 for n in baseline) / len(baseline) if baseline else 0.0
    sd = math.sqrt(variance)
    return Volume(counts[0], mean, sd, mean + rule.threshold_sd * sd)


def is_back_to_normal(count: int, episode: OpenEpisode, rule: SpikeRule) -> bool:
    return count < rule.min_count or count <= episode.mean + rule.threshold_sd * episode.sd / 2


def plan_episodes(
    volumes: Mapping[EpisodeKey, Volume],
    open_episodes: Mapping[EpisodeKey, OpenEpisode],
    rule: SpikeRule,
) -> EpisodePlan:
    """Which episodes to open, keep (with their latest count) and close. An open episode
    whose watch was not assessed (removed, or its backfill pending) is left as it is."""
    opened, updated, closed = [], [], []
    for key, volume in volumes.items():
        episode = open_episodes.get(key)
        if episode is None:
            if volume.is_spike(rule):
                opened.append((key, volume))
        elif is_back_to_normal(volume.count, episode, rule):
            closed.append(key)
        else:
            updated.append((key, volume.count))
    return EpisodePlan(tuple(opened), tuple(updated), tuple(closed))


def term_trends(
    mentions: Iterable[tuple[datetime, Terms]], check_at: datetime, rule: SpikeRule
) -> tuple[TermTrend, ...]:
    """Each matched term's mentions in the last 24 h against its daily baseline, the ones
    that rose most first (terms absent from the last 24 h left out)."""
    current: Counter[str] = Counter()
    before: Counter[str] = Counter()
    start = check_at - DAY
    for at, terms in mentions:
        if at >= check_at:
            continue
        (current if at >= start else before).update(set(terms))
    days = max(rule.baseline_days, 1)
    trends = [TermTrend(term, n, before[term] / days) for term, n in current.items()]
    return tuple(sorted(trends, key=lambda t: (-(t.count - t.daily_average), t.term)))


def top_items(
    stories: Sequence[tuple[DigestItem, Terms, int]], limit: int
) -> tuple[tuple[DigestItem, Terms, int], ...]:
    """The items to show with an alert: the most widely carried first (a spike is often
    one story on many feeds), then the newest."""
    ranked = sorted(stories, key=lambda s: (-s[2], -s[0].published_at.timestamp(), s[0].item_id))
    return tuple(ranked[:limit])
