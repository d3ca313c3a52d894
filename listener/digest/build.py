"""Pure: what a recipient's daily digest contains: stories (the same item syndicated on
several feeds, once), ranked, per followed function, the uncertain items, feed health.

No clock, no I/O: `now` and the store's rows come in as parameters. Everything handed back
is aware UTC; only render/ converts times for the reader.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

from listener.digest.model import Digest, Section, Story
from listener.domain import LABELS, DigestData, DigestItem, DigestPeriod, Recipient

LABEL_TITLES: dict[str, str] = {
    "marketing": "Marketing",
    "communication": "Communication & PR",
    "human_resources": "HR & employer brand",
    "customer_service": "Customer service",
    "business_intelligence": "Business intelligence",
    "other": "Other",
}

# Ranking (see rank_stories): relevance x recency x reach.
RECENCY_HALF_LIFE = timedelta(hours=24)  # an item a day old weighs half a fresh one
REACH_BONUS = 0.1  # per other feed carrying the story...
REACH_MAX_FEEDS = 5  # ...counted up to this many, so a wire story cannot swamp a section
# The uncertain items shown are the closest calls: top score nearest this pivot, as in
# `listener review` (store.review_items), so the digest and the CLI agree.
UNCERTAIN_PIVOT = 0.5
MIN_TITLE_WORDS = 4  # shorter titles ("Update", "Press release") are not a story's identity

# Query parameters that only say where a click came from (Google Analytics, ad networks,
# newsletters, AT Internet on French media sites), never which page it is.
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_")
_TRACKING_NAMES = (
    "fbclid gclid dclid msclkid yclid igshid mc_cid mc_eid _hsenc _hsmi mkt_tok xtor ref"
    " ref_src cmpid ncid ito sr_share"
)
_TRACKING_PARAMS = frozenset(_TRACKING_NAMES.split())
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# A URL whose parts urlsplit returns unchanged: http(s), a lowercase host without port or
# user, a path without whitespace, no query or fragment.
_PLAIN_URL = re.compile(r"https?://(?P<host>[a-z0-9.-]+)(?P<path>/[^?#\s]*)?")
_NON_WORD = re.compile(r"[\W_]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")

_ScoreFn = Callable[[DigestItem], float]


# -- stories --------------------------------------------------------------------------------


def url_key(url: str | None) -> str | None:
    """The URL as a story identity: no scheme, www, default port, trailing slash, fragment
    or tracking parameters, the query sorted. None for anything but an http(s) URL."""
    if not url:
        return None
    # Most links are a lowercase host and a path: urlsplit and parse_qsl would return them
    # as they are (a third of a busy day's digest build went to them).
    plain = _PLAIN_URL.fullmatch(url)
    if plain:
        host = plain["host"].removeprefix("www.")
        return f"{host}{(plain['path'] or '').rstrip('/')}" if host else None
    return _parsed_url_key(url)


def _parsed_url_key(url: str) -> str | None:
    """url_key of any URL, through urllib's parser."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").removeprefix("www.")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    query = sorted(
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(name)
    )
    path = parts.path.rstrip("/")
    return f"{host}{path}?{urlencode(query)}" if query else f"{host}{path}"


def title_key(title: str) -> str | None:
    """The title as a story identity: case, accents, punctuation and spacing folded.

    None for titles under MIN_TITLE_WORDS words, which are too generic to identify a story.
    """
    bare = title
    if not title.isascii():  # most titles are: skip the per-character pass (digest hot path)
        decomposed = unicodedata.normalize("NFKD", title)
        bare = _COMBINING.sub("", decomposed)
    words = _NON_WORD.sub(" ", bare.casefold()).split()
    return " ".join(words) if len(words) >= MIN_TITLE_WORDS else None


def group_stories(items: Sequence[DigestItem]) -> list[Story]:
    """The same story syndicated on several feeds, once: items sharing a URL or a title.

    Grouping is transitive (A shares B's URL, B shares C's title: one story). The lead is
    the best-scored copy, then the earliest published; stories come in input order.
    """
    return [_story(group, _best_score) for group in _group(items)]


def rank_stories(stories: Sequence[Story], label: str | None, now: datetime) -> list[Story]:
    """Best first, by relevance x recency x reach of each story's lead:

        relevance = lead's score for `label` (its best score when `label` is None); a label
                    the model did not score but a person gave counts as 1.0
        recency   = 0.5 ** (age / 24 h), age = now - published_at (0 if in the future)
        reach     = 1 + 0.1 x (other feeds carrying it, up to 5)

    so within a day's digest the score dominates and a day's age costs as much as halving
    it. Ties: the most recently published first, then the lowest item id.
    """

    def key(story: Story) -> tuple[float, float, int]:
        lead = story.lead
        age = max(now - lead.published_at, timedelta(0))
        recency = 0.5 ** (age / RECENCY_HALF_LIFE)
        reach = 1 + REACH_BONUS * min(len(story.others), REACH_MAX_FEEDS)
        rank = _relevance(lead, label) * recency * reach
        return (-rank, -lead.published_at.timestamp(), lead.item_id)

    return sorted(stories, key=key)


# -- the digest -----------------------------------------------------------------------------


def build_digest(recipient: Recipient, period: DigestPeriod, data: DigestData) -> Digest:
    """Counts against the daily baseline, the top stories per followed function, the
    uncertain items worth a look, and the feeds that need attention."""
    items = data.items
    labels = [*LABELS, *sorted({lb for item in items for lb in item.labels} - set(LABELS))]
    # One pass over the items, not one per label.
    confident = Counter(lb for item in items if not item.uncertain for lb in set(item.labels))
    counts = {label: confident[label] for label in labels}
    days = data.baseline_days
    averages = {label: daily_average(data.daily_counts.get(label, ()), days) for label in labels}
    followed = _followed(recipient)
    groups = [_settled_by_people(group) for group in _group(items)]
    uncertain = _uncertain_stories(groups, recipient, followed)
    by_label = _groups_by_label(groups)
    sections = tuple(
        Section(
            label=label,
            title=LABEL_TITLES[label],
            count=counts[label],
            previous_daily_average=averages[label],
            change_pct=change_pct(counts[label], averages[label]),
            stories=tuple(
                rank_stories(
                    _section_stories(by_label.get(label, ()), label), label, period.ends_at
                )[: recipient.items_per_section]
            ),
        )
        for label in followed
    )
    return Digest(
        recipient=recipient,
        period=period,
        total_items=len(items),
        counts=counts,
        baseline_days=days,
        sections=sections,
        uncertain=uncertain[: recipient.items_per_section],
        unhealthy_feeds=data.unhealthy_feeds,
        uncertain_total=len(uncertain),
    )


def is_empty(digest: Digest) -> bool:
    """Nothing in the followed functions or watches and nothing uncertain: only a "nothing
    new" note."""
    return (
        not digest.uncertain
        and all(not section.stories for section in digest.sections)
        and all(not section.mentions for section in digest.watches)
    )


def change_pct(count: int, baseline: float | None) -> float | None:
    """Percentage change of `count` against the daily baseline; None when the baseline is 0
    or there is none yet."""
    if baseline is None or baseline <= 0:
        return None
    return (count - baseline) / baseline * 100


def top_guesses(item: DigestItem, limit: int = 2) -> list[tuple[str, float]]:
    """The model's best labels for an item, best first (ties in LABELS order)."""
    order = {label: index for index, label in enumerate(LABELS)}
    ranked = sorted(item.scores.items(), key=lambda pair: (-pair[1], order.get(pair[0], 99)))
    return ranked[:limit]


def _followed(recipient: Recipient) -> tuple[str, ...]:
    # LABELS order whatever the config's order: "other" last, and the same place every day.
    wanted = set(recipient.functions) or set(LABELS)
    return tuple(label for label in LABELS if label in wanted)


def _groups_by_label(
    groups: Sequence[Sequence[DigestItem]],
) -> dict[str, list[Sequence[DigestItem]]]:
    """label -> the groups with a copy confidently labelled so, in order (each section then
    looks at its own groups, not at every group of the day)."""
    by_label: dict[str, list[Sequence[DigestItem]]] = {}
    for group in groups:
        labels = {lb for item in group if not item.uncertain for lb in item.labels}
        for label in labels:
            by_label.setdefault(label, []).append(group)
    return by_label


def _section_stories(groups: Sequence[Sequence[DigestItem]], label: str) -> list[Story]:
    """The stories with a copy confidently labelled `label`; that copy leads, and every
    other copy, whatever its labels, is listed as also carrying it."""
    stories = []
    for group in groups:
        members = [item for item in group if label in item.labels and not item.uncertain]
        if members:
            # A copy a person labelled leads: the others may only have taken its labels.
            lead = _best(members, lambda item: _relevance(item, label) + item.corrected)
            stories.append(_story_with_lead(lead, group))
    return stories


def _uncertain_stories(
    groups: Sequence[Sequence[DigestItem]], recipient: Recipient, followed: tuple[str, ...]
) -> tuple[Story, ...]:
    """Stories that only have uncertain copies (a confident copy already settles the story),
    whose top two guesses touch a followed function, closest calls first: all of them, so
    that the digest can say how many it does not show."""
    stories = []
    for group in groups:
        if any(item.labels and not item.uncertain for item in group):
            continue
        members = [item for item in group if item.uncertain]
        if not members:
            continue  # unclassified only: nothing for a person to confirm yet
        story = _story_with_lead(_best(members, _best_score), group)
        if recipient.functions and not {g for g, _ in top_guesses(story.lead)} & set(followed):
            continue
        stories.append(story)

    def closeness(story: Story) -> tuple[float, float, int]:
        lead = story.lead
        gap = abs(_best_score(lead) - UNCERTAIN_PIVOT)
        return (gap, -lead.published_at.timestamp(), lead.item_id)

    return tuple(sorted(stories, key=closeness))


def _group(items: Sequence[DigestItem]) -> list[list[DigestItem]]:
    """Union-find over shared URL keys and title keys; groups in order of first member."""
    parent = list(range(len(items)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]  # path halving keeps the trees flat
            index = parent[index]
        return index

    first_with: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        for kind, key in (("url", url_key(item.url)), ("title", title_key(item.title))):
            if key is None:
                continue
            other = first_with.setdefault((kind, key), index)
            if other == index:
                continue  # the key's first item: nothing to join
            a, b = root(index), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the smaller root keeps input order stable
    groups: dict[int, list[DigestItem]] = {}
    for index, item in enumerate(items):
        groups.setdefault(root(index), []).append(item)
    return list(groups.values())


def _settled_by_people(group: list[DigestItem]) -> list[DigestItem]:
    """A person's correction of one copy settles the story: the other copies take its labels
    (with several corrected copies, all their labels), so a story corrected out of a
    function does not come back into it through another feed's copy. Counts stay per item."""
    corrected = [item for item in group if item.corrected]
    if not corrected or len(corrected) == len(group):
        return group  # nearly every group: nothing to settle
    labels = tuple(dict.fromkeys(label for item in corrected for label in item.labels))
    return [
        item if item.corrected else replace(item, labels=labels, uncertain=False) for item in group
    ]


def _story(group: Sequence[DigestItem], score: _ScoreFn) -> Story:
    return _story_with_lead(_best(group, score), group)


def _story_with_lead(lead: DigestItem, group: Sequence[DigestItem]) -> Story:
    """`lead` plus one copy per other feed (the earliest published of each)."""
    if len(group) == 1:
        return Story(lead=lead)  # most stories: no sort, no set
    feeds = {lead.feed_url}
    others = []
    for item in sorted(group, key=lambda item: (item.published_at.timestamp(), item.item_id)):
        if item.feed_url not in feeds:
            feeds.add(item.feed_url)
            others.append(item)
    return Story(lead=lead, others=tuple(others))


def _best(items: Sequence[DigestItem], score: _ScoreFn) -> DigestItem:
    """The best-scored item, then the earliest published, then the lowest id."""
    if len(items) == 1:
        return items[0]
    return min(items, key=lambda item: (-score(item), item.published_at.timestamp(), item.item_id))


def _relevance(item: DigestItem, label: str | None) -> float:
    if label is None:
        return _best_score(item)
    if label in item.scores:
        return item.scores[label]
    return 1.0 if label in item.labels else 0.0


def _best_score(item: DigestItem) -> float:
    return max(item.scores.values(), default=1.0 if item.labels else 0.0)


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_PARAMS or lowered.startswith(_TRACKING_PREFIXES)


def daily_average(values: Sequence[int], days: int) -> float | None:
    """The mean count over the `days` baseline days (`values` has a count per day, or none
    for a label or watch never seen then); None when there is no baseline day yet."""
    return math.fsum(values) / days if days else None
