"""Pure: deterministic feeds for the benchmark (RSS 2.0 and ~20% Atom, English and French).

Everything derives from `(seed, feed index)`, so the server and the runner agree on what is
served without sharing anything but the seed. A feed's "changed" version prepends a few new
items, edits the newest old one (title and first paragraph) and drops the oldest ones, as a
real feed with a fixed window would.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from bench.words import LEXICONS, Lexicon, sentence, title

BASE_AT = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # the newest item of every first version
ATOM_FRACTION = 0.2
FRENCH_FRACTION = 0.4
OTHER_LANGUAGE_FRACTION = 0.1  # items in the other language, inside one feed
NEW_ITEMS_PER_CHANGE = 2
SENTENCE_POOL_SIZE = 8192  # per language; drawing from a pool keeps generation ~1 s per 30k items


@dataclass(frozen=True, slots=True)
class ItemSpec:
    number: int  # unique within the feed, across versions
    guid: str
    link: str
    title: str
    published_at: datetime
    html: str


@dataclass(frozen=True, slots=True)
class FeedSpec:
    index: int
    kind: str  # "rss" | "atom"
    lang: str  # "en" | "fr"
    title: str
    site_url: str
    items: tuple[ItemSpec, ...]


@dataclass(frozen=True, slots=True)
class ChangeCounts:
    """What polling a feed's changed version must store, after its first version."""

    new: int
    updated: int


def make_feed(seed: int, index: int, item_count: int) -> FeedSpec:
    """The first version of feed `index`: `item_count` items, newest first."""
    rng = random.Random(f"{seed}:{index}")
    kind = "atom" if rng.random() < ATOM_FRACTION else "rss"
    lang = "fr" if rng.random() < FRENCH_FRACTION else "en"
    site_url = f"https://news{index}.example.com/"
    published_at = BASE_AT
    items = []
    for number in range(item_count):
        items.append(_make_item(rng, index, number, lang, site_url, published_at))
        published_at -= timedelta(minutes=rng.randint(20, 720))
    name = title(rng, LEXICONS[lang])
    return FeedSpec(index, kind, lang, f"{name} #{index}", site_url, tuple(items))


def change_feed(seed: int, feed: FeedSpec) -> tuple[FeedSpec, ChangeCounts]:
    """The next version of `feed`: new items first, the newest old item edited, same length."""
    rng = random.Random(f"{seed}:{feed.index}:changed")
    size = len(feed.items)
    new_count = min(NEW_ITEMS_PER_CHANGE, size)
    next_number = max(item.number for item in feed.items) + 1
    newest_at = feed.items[0].published_at if feed.items else BASE_AT
    fresh = [
        _make_item(
            rng,
            feed.index,
            next_number + k,
            feed.lang,
            feed.site_url,
            newest_at + timedelta(hours=new_count - k),
        )
        for k in range(new_count)
    ]
    kept = list(feed.items[: size - new_count])
    if kept:
        lexicon = LEXICONS[feed.lang]
        edited = kept[0]
        note = " — mise à jour" if feed.lang == "fr" else " (updated)"
        kept[0] = replace(
            edited,
            title=edited.title + note,
            html=f"<p><em>{_escape_text(sentence(rng, lexicon))}</em></p>\n{edited.html}",
        )
    changed = replace(feed, items=(*fresh, *kept))
    return changed, ChangeCounts(new=new_count, updated=1 if kept else 0)


def changed_indexes(seed: int, feed_count: int, fraction: float) -> list[int]:
    """Which feeds get a new version for the "changed" cycle (round(N x fraction) of them)."""
    count = min(feed_count, round(feed_count * fraction))
    return sorted(random.Random(f"{seed}:changed").sample(range(feed_count), count))


def render_feed(feed: FeedSpec) -> bytes:
    return (render_atom(feed) if feed.kind == "atom" else render_rss(feed)).encode("utf-8")


def render_rss(feed: FeedSpec) -> str:
    newest = feed.items[0].published_at if feed.items else BASE_AT
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0">\n<channel>\n',
        f"<title>{_escape(feed.title)}</title>\n<link>{feed.site_url}</link>\n",
        f"<description>{_escape(feed.title)}</description>\n",
        f"<language>{feed.lang}</language>\n",
        f"<lastBuildDate>{format_datetime(newest)}</lastBuildDate>\n",
    ]
    for item in feed.items:
        # Alternate the two ways feeds carry HTML: entity-escaped text and CDATA.
        if (feed.index + item.number) % 3 == 0 or "]]>" in item.html:
            description = _escape(item.html)
        else:
            description = f"<![CDATA[{item.html}]]>"
        permalink = feed.index % 2 == 0
        guid = item.link if permalink else item.guid
        out.append(
            f"<item>\n<title>{_escape(item.title)}</title>\n<link>{item.link}</link>\n"
            f'<guid isPermaLink="{"true" if permalink else "false"}">{guid}</guid>\n'
            f"<pubDate>{format_datetime(item.published_at)}</pubDate>\n"
            f"<description>{description}</description>\n</item>\n"
        )
    out.append("</channel>\n</rss>\n")
    return "".join(out)


def render_atom(feed: FeedSpec) -> str:
    newest = feed.items[0].published_at if feed.items else BASE_AT
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{feed.lang}">\n',
        f"<title>{_escape(feed.title)}</title>\n",
        f'<link rel="alternate" href="{feed.site_url}"/>\n',
        f"<id>tag:bench.example,2026:feed-{feed.index}</id>\n",
        f"<updated>{_rfc3339(newest)}</updated>\n",
    ]
    for item in feed.items:
        element = "content" if item.number % 2 else "summary"
        out.append(
            f"<entry>\n<title>{_escape(item.title)}</title>\n"
            f'<link rel="alternate" href="{item.link}"/>\n<id>{item.guid}</id>\n'
            f"<published>{_rfc3339(item.published_at)}</published>\n"
            f"<updated>{_rfc3339(item.published_at)}</updated>\n"
            f'<{element} type="html">{_escape(item.html)}</{element}>\n</entry>\n'
        )
    out.append("</feed>\n")
    return "".join(out)


def _make_item(
    rng: random.Random, index: int, number: int, lang: str, site_url: str, published_at: datetime
) -> ItemSpec:
    if rng.random() < OTHER_LANGUAGE_FRACTION:
        lang = "en" if lang == "fr" else "fr"
    lexicon = LEXICONS[lang]
    return ItemSpec(
        number=number,
        guid=f"tag:bench.example,2026:feed-{index}/item-{number}",
        link=f"{site_url}articles/{number}",
        title=_title_with_entities(rng, lexicon),
        published_at=published_at,
        html=_html_body(rng, lexicon, site_url, rng.randint(100, 380)),
    )


def _title_with_entities(rng: random.Random, lexicon: Lexicon) -> str:
    text = title(rng, lexicon)
    if rng.random() < 0.15:
        text += " : R&D" if lexicon.lang == "fr" else ": M&A"
    return text


def _html_body(rng: random.Random, lexicon: Lexicon, site_url: str, word_target: int) -> str:
    """Paragraphs of 2-5 sentences with <strong>, <a> and HTML entities, ~word_target words."""
    pool = _sentence_pool(lexicon.lang)
    size = len(pool)
    paragraphs = []
    words = 0
    while words < word_target:
        sentences = []
        for _ in range(rng.randint(2, 5)):
            text, count = pool[int(rng.random() * size)]
            sentences.append(text)
            words += count
            if words >= word_target:
                break
        paragraphs.append(_decorate(rng, lexicon, site_url, " ".join(sentences)))
    return "\n".join(paragraphs)


@functools.cache
def _sentence_pool(lang: str) -> list[tuple[str, int]]:
    """Sentences with their word counts; the seed then only decides which are drawn."""
    rng = random.Random(f"sentences:{lang}")
    lexicon = LEXICONS[lang]
    pool = (sentence(rng, lexicon) for _ in range(SENTENCE_POOL_SIZE))
    return [(text, text.count(" ") + 1) for text in pool]


def _decorate(rng: random.Random, lexicon: Lexicon, site_url: str, text: str) -> str:
    tokens = _escape_text(text).split(" ")
    if len(tokens) > 4 and rng.random() < 0.5:
        at = rng.randrange(len(tokens))
        tokens[at] = f"<strong>{tokens[at]}</strong>"
    if len(tokens) > 6 and rng.random() < 0.4:
        at = rng.randrange(len(tokens) - 2)
        href = f"{site_url}topics/{rng.randint(1, 500)}?ref=feed&amp;utm_source=rss"
        tokens[at] = f'<a href="{href}">{tokens[at]}'
        tokens[at + 1] += "</a>"
    html = " ".join(tokens)
    if lexicon.lang == "fr":
        if rng.random() < 0.3:  # some publishers still write accents as named entities
            html = html.replace("é", "&eacute;").replace("è", "&egrave;")
        if rng.random() < 0.3:
            html += " &laquo;&nbsp;Un cap est franchi&nbsp;&raquo;, précise la direction."
        html = html.replace("'", "&#8217;")
    elif rng.random() < 0.3:
        html += " Growth reached 12&nbsp;% &mdash; &ldquo;a record&rdquo;, says the CEO."
    return f"<p>{html}</p>"


def _escape_text(text: str) -> str:
    """Text → HTML text (our words contain no markup, but "R&D" style names could)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape(text: str) -> str:
    """Text or HTML → XML character data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
