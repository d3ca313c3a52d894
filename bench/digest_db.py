"""I/O: a large listener database generated straight into SQLite, for the digest benchmark.

Polling a million items through `poll_feeds` would take an hour; this writes the rows the
poll would have written, with executemany in big transactions:

feeds            N feeds, tags (language + 1-2 topics), some failing, gone or silent
items            spread evenly over `days` of fetched_at ending at `end_at`, over the feeds
                 with a skewed (log-normal) activity; published a few hours before being
                 fetched (1% are archive items months old, which the digest leaves out);
                 3% are another feed's copy of a recent story (same title or same article
                 URL with tracking parameters), so the digest has stories to group
predictions      one per item, one model; scores over the six labels, ~10% uncertain
classifications  the model's labels: 1-2 per confident item, the best guess (1) per
                 uncertain one, as `Store.save_predictions` writes them
labels           a person's correction on ~0.1% of the items
models           one row; polls: none (the digest does not read them)

The full-text index: its triggers are dropped for the load and the index is rebuilt once at
the end ("rebuild"), or left empty ("skip": the digest never reads it, but `listener
search` then finds nothing). Either way the triggers are put back.

Text comes from bench/texts.py's sentence pools: titles are mostly unique, summaries are
2-6 sentences (modest: feeds' summaries are often a lead paragraph).
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.texts import make_summary, make_title
from bench.words import LEXICONS, title

END_AT = datetime(2026, 11, 20, 7, 45, tzinfo=UTC)  # the clock: after 07:30 in Paris
MODEL_VERSION = "bench-model-1"
TOPIC_TAGS = ("press", "competitors", "clients", "hr", "industry", "brand")
_TOPIC_WEIGHTS = (30, 15, 15, 15, 15, 10)
FRENCH_FEEDS = 0.4
OTHER_LANGUAGE_ITEMS = 0.1
COPY_FRACTION = 0.03  # items that are another feed's copy of a recent story
ARCHIVE_FRACTION = 0.01
UNCERTAIN_FRACTION = 0.1
HUMAN_LABEL_EVERY = 1000  # one item in this many has a person's labels
FAILING_FEEDS, GONE_FEEDS, SILENT_FEEDS = 0.02, 0.005, 0.02
SUMMARY_SENTENCES_WORDS = (25, 80)
PREDICTION_TEMPLATES = 4096
CHUNK_ITEMS = 50_000
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # listener.store._base's
_LABEL_WEIGHTS = {  # how often each label is an item's best one
    "marketing": 22,
    "communication": 20,
    "human_resources": 12,
    "customer_service": 12,
    "business_intelligence": 14,
    "other": 20,
}
_AUTHORS = ("Claire Martin", "John Smith", "Newsroom", "Rédaction", "A. Dupont", "Staff")


@dataclass(frozen=True, slots=True)
class DbConfig:
    items: int
    feeds: int
    days: int
    seed: int
    fts: str  # "rebuild" | "skip"
    end_at: datetime = END_AT


@dataclass(frozen=True, slots=True)
class DbInfo:
    path: Path
    items: int
    feeds: int
    predictions: int
    classifications: int
    human_labels: int
    uncertain: int
    copies: int
    size_bytes: int
    phases_s: dict[str, float] = field(default_factory=dict)
    feeds_by_tag: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Prediction:
    scores_json: str
    top_score: float
    uncertain: int
    labels: tuple[tuple[str, float], ...]  # (label, score) by rank


@dataclass
class _Feed:
    id: int
    lang: str
    weight: float
    tags: tuple[str, ...]
    state: str  # ok | failing | gone | silent
    items: int = 0
    last_new_at: int = 0  # epoch seconds


def generate_database(path: Path, config: DbConfig) -> DbInfo:
    """Create the database at `path` (which must not exist) with listener's schema, fill it."""
    from listener.domain import LABELS
    from listener.store import open_store

    phases: dict[str, float] = {}
    started = time.perf_counter()
    store = open_store(path)
    conn = store.db.conn
    # Bulk-load settings: no WAL (a 1 GB WAL would be written and then checkpointed), no
    # fsync, no foreign-key checks (we write consistent ids), a large page cache for the
    # random inserts into the items.key index. Restored below.
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # KiB: 256 MB
    triggers = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'items'"
    ).fetchall()
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    phases["schema"] = time.perf_counter() - started

    rng = random.Random(f"{config.seed}:digest-db")
    feeds = _make_feeds(rng, config.feeds)
    templates = _make_templates(rng, LABELS, PREDICTION_TEMPLATES)
    end_ts = int(config.end_at.timestamp())
    start_ts = end_ts - config.days * 86_400
    started = time.perf_counter()
    counts = _insert_items(conn, rng, config, feeds, templates, start_ts, end_ts)
    phases["items+predictions"] = time.perf_counter() - started

    started = time.perf_counter()
    human = _insert_feeds_and_rest(conn, rng, config, feeds, LABELS, start_ts, end_ts)
    phases["feeds+labels+models"] = time.perf_counter() - started

    started = time.perf_counter()
    if config.fts == "rebuild":
        with conn:
            conn.execute("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")
    for _, sql in triggers:
        conn.execute(sql)
    phases[f"fts ({config.fts})"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA journal_mode = WAL")
    store.close()
    phases["close"] = time.perf_counter() - started
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    feeds_by_tag: dict[str, int] = {}
    for feed in feeds:
        for tag in feed.tags:
            feeds_by_tag[tag] = feeds_by_tag.get(tag, 0) + 1
    return DbInfo(
        path=path,
        items=config.items,
        feeds=len(feeds),
        predictions=config.items,
        classifications=counts["classifications"],
        human_labels=human,
        uncertain=counts["uncertain"],
        copies=counts["copies"],
        size_bytes=size,
        phases_s=phases,
        feeds_by_tag=dict(sorted(feeds_by_tag.items())),
    )


def _make_feeds(rng: random.Random, count: int) -> list[_Feed]:
    feeds = []
    for index in range(count):
        lang = "fr" if rng.random() < FRENCH_FEEDS else "en"
        draw = rng.random()
        state = "ok"
        if draw < GONE_FEEDS:
            state = "gone"
        elif draw < GONE_FEEDS + SILENT_FEEDS:
            state = "silent"
        elif draw < GONE_FEEDS + SILENT_FEEDS + FAILING_FEEDS:
            state = "failing"
        topics = set(rng.choices(TOPIC_TAGS, weights=_TOPIC_WEIGHTS, k=rng.randint(1, 2)))
        weight = 0.0 if state in ("gone", "silent") else rng.lognormvariate(0.0, 1.0)
        feeds.append(_Feed(index + 1, lang, weight, (lang, *sorted(topics)), state))
    if not any(feed.weight for feed in feeds):
        feeds[0].weight = 1.0
    return feeds


def _make_templates(rng: random.Random, labels: tuple[str, ...], count: int) -> list[_Prediction]:
    """Score vectors drawn once; each item takes one (json.dumps per item would cost ~5 s)."""
    weights = [_LABEL_WEIGHTS.get(label, 1) for label in labels]
    templates = []
    for _ in range(count):
        uncertain = rng.random() < UNCERTAIN_FRACTION
        best = rng.choices(labels, weights=weights)[0]
        scores = {label: round(rng.uniform(0.01, 0.2), 4) for label in labels}
        if uncertain:  # nothing passes its threshold: the best guess is kept, flagged
            scores[best] = round(rng.uniform(0.25, 0.49), 4)
            chosen = [best]
        else:
            scores[best] = round(rng.uniform(0.55, 0.99), 4)
            chosen = [best]
            if best != "other" and rng.random() < 0.25:
                second = rng.choice([lb for lb in labels if lb not in (best, "other")])
                scores[second] = round(rng.uniform(0.5, scores[best]), 4)
                chosen.append(second)
        templates.append(
            _Prediction(
                scores_json=json.dumps(scores),
                top_score=max(scores.values()),
                uncertain=int(uncertain),
                labels=tuple((label, scores[label]) for label in chosen),
            )
        )
    return templates


def _insert_items(
    conn: sqlite3.Connection,
    rng: random.Random,
    config: DbConfig,
    feeds: list[_Feed],
    templates: list[_Prediction],
    start_ts: int,
    end_ts: int,
) -> dict[str, int]:
    span = end_ts - start_ts
    cumulative = []
    total = 0.0
    for feed in feeds:
        total += feed.weight
        cumulative.append(total)
    gmtime, strftime, sha256 = time.gmtime, time.strftime, hashlib.sha256
    recent: list[tuple[str, str]] = []  # (title, url) of the last items, for copies
    uncertain = classifications = copies = 0
    for chunk_start in range(0, config.items, CHUNK_ITEMS):
        chunk_end = min(config.items, chunk_start + CHUNK_ITEMS)
        owners = rng.choices(feeds, cum_weights=cumulative, k=chunk_end - chunk_start)
        item_rows = []
        prediction_rows = []
        classification_rows = []
        for offset, feed in enumerate(owners):
            item_id = chunk_start + offset + 1
            fetched_ts = start_ts + (span * (item_id - 1)) // config.items + 1
            fetched = strftime(_TIME_FORMAT, gmtime(fetched_ts))
            if rng.random() < ARCHIVE_FRACTION:
                published_ts = fetched_ts - rng.randint(30, 400) * 86_400
            else:
                published_ts = fetched_ts - int(rng.expovariate(1 / 7200))
            published = strftime(_TIME_FORMAT, gmtime(published_ts))
            feed.items += 1
            feed.last_new_at = fetched_ts
            url = f"https://news{feed.id}.example.com/articles/{feed.items}"
            # The key hashes the guid, which stays the feed's own even for a copied story.
            guid = url if feed.id % 2 == 0 else f"tag:news{feed.id}.example.com,2026:{feed.items}"
            lang = feed.lang
            if rng.random() < OTHER_LANGUAGE_ITEMS:
                lang = "en" if lang == "fr" else "fr"
            if recent and rng.random() < COPY_FRACTION:
                copies += 1
                item_title, original_url = recent[int(rng.random() * len(recent))]
                if rng.random() < 0.5:  # an aggregator linking the original article
                    url = f"{original_url}?utm_source=rss&utm_medium=feed{feed.id}"
            else:
                item_title = make_title(rng, lang)
                recent.append((item_title, url))
                if len(recent) > 200:
                    del recent[:100]
            summary = make_summary(rng, lang, *SUMMARY_SENTENCES_WORDS)
            author = _AUTHORS[int(rng.random() * len(_AUTHORS))] if rng.random() < 0.2 else None
            item_rows.append(
                (
                    item_id,
                    sha256(f"{feed.id}|{guid}".encode()).hexdigest(),
                    feed.id,
                    guid,
                    url,
                    item_title,
                    summary,
                    author,
                    published,
                    published,
                    fetched,
                    fetched,
                    lang,
                    sha256(f"{item_id}|{item_title}".encode()).hexdigest(),
                )
            )
            template = templates[int(rng.random() * len(templates))]
            uncertain += template.uncertain
            prediction_rows.append(
                (
                    item_id,
                    MODEL_VERSION,
                    fetched,
                    template.uncertain,
                    template.top_score,
                    template.scores_json,
                )
            )
            for rank, (label, score) in enumerate(template.labels):
                classification_rows.append((item_id, MODEL_VERSION, label, score, rank))
        classifications += len(classification_rows)
        with conn:
            conn.executemany(
                "INSERT INTO items (id, key, feed_id, guid, url, title, summary, author,"
                " published_at, published_raw, date_is_estimated, fetched_at, updated_at, lang,"
                " content_hash) VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?,?,?)",
                item_rows,
            )
            conn.executemany(
                "INSERT INTO predictions (item_id, model_version, classified_at, uncertain,"
                " top_score, scores) VALUES (?,?,?,?,?,?)",
                prediction_rows,
            )
            conn.executemany(
                "INSERT INTO classifications (item_id, model_version, label, score, rank)"
                " VALUES (?,?,?,?,?)",
                classification_rows,
            )
    return {"uncertain": uncertain, "classifications": classifications, "copies": copies}


def _insert_feeds_and_rest(
    conn: sqlite3.Connection,
    rng: random.Random,
    config: DbConfig,
    feeds: list[_Feed],
    labels: tuple[str, ...],
    start_ts: int,
    end_ts: int,
) -> int:
    """Feeds (with what the items say of them), a person's labels, the model row."""

    def stamp(ts: int) -> str:
        return time.strftime(_TIME_FORMAT, time.gmtime(ts))

    end = stamp(end_ts)
    added = stamp(start_ts - 86_400)
    rows = []
    for feed in feeds:
        name = title(random.Random(f"{config.seed}:feed:{feed.id}"), LEXICONS[feed.lang])
        last_new = stamp(feed.last_new_at) if feed.items else None
        failing_since = error = gone = None
        status, http_status, error_count = "not_modified", 304, 0
        if feed.state == "failing":
            status, http_status, error_count = "failed", 503, 3
            failing_since = stamp(end_ts - 2 * 86_400)
            error = "HTTP 503"
        elif feed.state == "gone":
            status, http_status = "gone", 410
            gone = stamp(end_ts - 20 * 86_400)
        elif feed.state == "silent":
            last_new = stamp(end_ts - 12 * 86_400)
        rows.append(
            (
                feed.id,
                f"https://news{feed.id}.example.com/feed.xml",
                f"{name} #{feed.id}",
                f"https://news{feed.id}.example.com/",
                json.dumps(list(feed.tags)),
                added,
                f'"{feed.id}-etag"',
                end,
                stamp(end_ts + 3600),
                end,
                status,
                http_status,
                error_count,
                error,
                failing_since,
                gone,
                last_new,
            )
        )
    human = []
    for item_id in range(HUMAN_LABEL_EVERY // 2, config.items + 1, HUMAN_LABEL_EVERY):
        chosen = rng.sample(labels, rng.randint(1, 2))
        for rank, label in enumerate(chosen):
            human.append((item_id, label, rank, "bench", stamp(end_ts - 3600)))
    with conn:
        conn.executemany(
            "INSERT INTO feeds (id, url, title, site_url, tags, added_at, etag, last_modified,"
            " next_poll_at, last_polled_at, last_status, last_http_status, error_count,"
            " last_error, failing_since, gone_at, last_new_item_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO labels (item_id, label, rank, labelled_by, labelled_at)"
            " VALUES (?,?,?,?,?)",
            human,
        )
        conn.execute(
            "INSERT INTO models (version, first_used_at, last_used_at, metadata)"
            " VALUES (?, ?, ?, ?)",
            [MODEL_VERSION, added, end, json.dumps({"bench": True})],
        )
    return len({row[0] for row in human})
