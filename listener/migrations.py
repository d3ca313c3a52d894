"""I/O: the schema's history. Each change is a new function; applied ones are never edited.

docs/schema.md describes the result, and tests/test_docs.py keeps the two in step.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("listener")

# unicode61 with remove_diacritics 2 folds accents both in the index and in queries, so
# "equipe" finds "équipe" (https://www.sqlite.org/fts5.html#unicode61_tokenizer).
FTS_TOKENIZER = "unicode61 remove_diacritics 2"


@migrations()
def m001_feeds_items_polls(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            title TEXT,
            site_url TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            interval_minutes INTEGER,
            added_at TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            next_poll_at TEXT,
            last_polled_at TEXT,
            last_status TEXT,
            last_http_status INTEGER,
            error_count INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            failing_since TEXT,
            gone_at TEXT,
            last_warning TEXT,
            last_new_item_at TEXT,
            previous_url TEXT
        )
        """
    )
    db.execute("CREATE INDEX feeds_next_poll_at ON feeds(next_poll_at)")
    db.execute(
        """
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            guid TEXT,
            url TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            author TEXT,
            published_at TEXT NOT NULL,
            published_raw TEXT,
            date_is_estimated INTEGER NOT NULL DEFAULT 0,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            lang TEXT,
            content_hash TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX items_feed_published ON items(feed_id, published_at)")
    db.execute("CREATE INDEX items_published ON items(published_at)")
    db.execute(
        """
        CREATE TABLE polls (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            started_at TEXT NOT NULL,
            duration_ms INTEGER NOT NULL,
            status TEXT NOT NULL,
            http_status INTEGER,
            new_count INTEGER NOT NULL DEFAULT 0,
            updated_count INTEGER NOT NULL DEFAULT 0,
            seen_count INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX polls_feed_started ON polls(feed_id, started_at)")
    db.table("items").enable_fts(["title", "summary"], create_triggers=True, tokenize=FTS_TOKENIZER)
    db.execute(
        """
        CREATE VIEW items_view AS
        SELECT items.id, items.published_at, feeds.title AS feed_title, feeds.url AS feed_url,
               feeds.tags AS feed_tags, items.title, items.url, items.summary, items.author,
               items.lang, items.guid, items.fetched_at, items.key
        FROM items JOIN feeds ON feeds.id = items.feed_id
        """
    )
