"""I/O: the digest benchmark. Every recipient's digest over a large generated database.

The database (bench/digest_db.py: N items over 60 days from 1000 feeds, with predictions,
classifications and a few human labels) is written straight into SQLite, then reopened with
`open_store` as the daemon opens it. For each recipient (all functions and feeds; HR only;
one feed tag; another time zone) `jobs.digest.preview_digest` builds the digest the daemon
would send for the latest day (the local date of the clock, covering the local day before)
and renders it: the timed call, checked against the target. Then the same digest again, in
pieces: `digest_data` (the store's queries and the feeds' health), `build_digest`,
`render_digest`; and the queries inside digest_data one by one: the period's items, the
label counts of the 7 days before (7 queries), the feed list.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from bench.digest_db import DbConfig, generate_database
from bench.digest_report import NAME as NAME  # the section's name, for bench.__main__
from bench.digest_report import RecipientRun, Timed, make_report
from bench.report import SectionReport

_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "digest", "digests over a generated database (section 'digest')"
    )
    group.add_argument(
        "--digest-items",
        type=int,
        default=1_000_000,
        help="items in the generated database (default 1000000; 50000 for a quick run)",
    )
    group.add_argument(
        "--digest-feeds",
        type=int,
        default=1000,
        help="feeds in the generated database (default 1000)",
    )
    group.add_argument(
        "--digest-days", type=int, default=60, help="days the items are spread over (default 60)"
    )
    group.add_argument(
        "--digest-fts",
        choices=("rebuild", "skip"),
        default="rebuild",
        help="build the full-text index once after the load, or leave it empty (the digest "
        "does not read it; default rebuild)",
    )
    group.add_argument(
        "--digest-repeat",
        type=int,
        default=1,
        help="timed preview_digest calls per recipient; the target is checked against the "
        "slowest (default 1)",
    )


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    from listener.config import parse_settings
    from listener.domain import Recipient
    from listener.store import open_store

    config = DbConfig(
        items=options.digest_items,
        feeds=options.digest_feeds,
        days=options.digest_days,
        seed=options.seed,
        fts=options.digest_fts,
    )
    db_path = work_dir / "digest.db"
    started = time.perf_counter()
    info = generate_database(db_path, config)
    generate_s = time.perf_counter() - started
    settings = parse_settings(
        {"database": str(db_path), "import_opml_on_init": "", "digest": {"outbox": str(work_dir)}},
        {},
    )
    recipients = (
        Recipient("everyone", "everyone@example.com", "Europe/Paris"),
        Recipient("hr", "hr@example.com", "Europe/Paris", functions=("human_resources",)),
        Recipient("competitors", "ci@example.com", "Europe/Paris", tags=("competitors",)),
        Recipient("new-york", "ny@example.com", "America/New_York", send_at="08:00"),
    )
    store = open_store(db_path)
    try:
        runs = [
            _run_recipient(store, settings, recipient, config.end_at, options.digest_repeat)
            for recipient in recipients
        ]
        plan = _plan_note(store)
    finally:
        store.close()
    return make_report(config, info, generate_s, runs, plan, db_path)


def _timed(call: Callable[[], _T]) -> tuple[_T, Timed]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Timed(time.perf_counter() - wall, time.process_time() - cpu)


def _run_recipient(
    store: Any, settings: Any, recipient: Any, now: datetime, repeat: int
) -> RecipientRun:
    from listener.digest.build import build_digest
    from listener.digest.periods import baseline_periods, digest_period
    from listener.jobs.digest import digest_data, preview_digest
    from listener.render.digest import render_digest

    day = now.astimezone(ZoneInfo(recipient.timezone))  # the local date of the clock
    previews = []
    message = None
    for _ in range(max(1, repeat)):
        message, timed = _timed(lambda: preview_digest(store, settings, recipient, day, now))
        previews.append(timed)
    period = digest_period(recipient, day.date())
    data, data_t = _timed(lambda: digest_data(store, settings, recipient, period, now))
    digest, build_t = _timed(lambda: build_digest(recipient, period, data))
    _, render_t = _timed(
        lambda: render_digest(
            digest,
            sender=settings.digest.sender,
            generated_at=now,
            message_domain=settings.digest.message_domain,
        )
    )
    _, items_t = _timed(
        lambda: store.digest_items(period.starts_at, period.ends_at, recipient.tags)
    )

    def counts() -> None:
        for earlier in baseline_periods(recipient, period, store.first_fetched_at()):
            store.label_counts(earlier.starts_at, earlier.ends_at, recipient.tags)

    _, counts_t = _timed(counts)
    _, feeds_t = _timed(lambda: store.list_feeds(with_item_count=False))

    expected = _count_items(store, period, recipient.tags)
    problems = []
    if digest.total_items != expected:
        problems.append(f"{digest.total_items} items in the digest, {expected} in the period")
    followed = len(recipient.functions) or 6
    if len(digest.sections) != followed:
        problems.append(f"{len(digest.sections)} sections, expected {followed}")
    if expected and not any(section.stories for section in digest.sections):
        problems.append("no story in any section")
    body = message.as_bytes() if message is not None else b""
    if b"text/html" not in body or b"text/plain" not in body:
        problems.append("the email lacks its HTML or text part")
    follows = ", ".join(recipient.functions) or "all functions"
    follows += "; tags " + ", ".join(recipient.tags) if recipient.tags else "; all feeds"
    return RecipientRun(
        name=recipient.name,
        timezone=recipient.timezone,
        follows=follows,
        items=digest.total_items,
        expected_items=expected,
        stories=sum(len(s.stories) for s in digest.sections) + len(digest.uncertain),
        unhealthy=len(digest.unhealthy_feeds),
        email_kb=len(body) / 1024,
        previews=tuple(previews),
        data=data_t,
        build=build_t,
        render=render_t,
        items_query=items_t,
        counts_queries=counts_t,
        feeds_query=feeds_t,
        problems=tuple(problems),
    )


def _count_items(store: Any, period: Any, tags: tuple[str, ...]) -> int:
    """The period's items as the digest must select them, by the plainest query."""
    from listener.store._base import to_db_time
    from listener.store._period import MAX_ITEM_AGE

    sql = (
        "SELECT count(*) FROM items JOIN feeds ON feeds.id = items.feed_id"
        " WHERE items.fetched_at >= ? AND items.fetched_at < ? AND items.published_at >= ?"
    )
    params = [
        to_db_time(period.starts_at),
        to_db_time(period.ends_at),
        to_db_time(period.starts_at - MAX_ITEM_AGE),
    ]
    if tags:
        marks = ",".join("?" * len(tags))
        sql += f" AND EXISTS (SELECT 1 FROM json_each(feeds.tags) WHERE value IN ({marks}))"
        params += list(tags)
    return int(store.db.execute(sql, params).fetchone()[0])


def _plan_note(store: Any) -> str | None:
    """Whether SQLite evaluates the item_labels view over the whole database per query."""
    from listener.store import _digests as store_digest

    sql = getattr(store_digest, "_COUNTS_SQL", None)
    if sql is None:
        return None
    params = {"start": "", "end": "", "oldest": "", "tags": "[]"}
    try:
        plan = [
            row[3]
            for row in store.db.execute("EXPLAIN QUERY PLAN " + sql.format(tag_filter=""), params)
        ]
    except sqlite3.Error:
        return None
    if any("MATERIALIZE item_labels" in step or "SCAN classifications" in step for step in plan):
        return (
            "query plan of label_counts: SQLite materializes the whole item_labels view "
            "(SCAN classifications, every item of the database) before it joins the period's "
            "items: its cost grows with the database, not with the day"
        )
    return None
