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


@migrations()
def m002_classifications(db: Database) -> None:
    # Predictions and human corrections live apart: retraining or a new model never touches
    # what a person decided, and several models' predictions can coexist.
    db.execute(
        """
        CREATE TABLE predictions (
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            model_version TEXT NOT NULL,
            classified_at TEXT NOT NULL,
            uncertain INTEGER NOT NULL,
            top_score REAL NOT NULL,
            scores TEXT NOT NULL,
            PRIMARY KEY (item_id, model_version)
        )
        """
    )
    db.execute("CREATE INDEX predictions_model ON predictions(model_version, item_id)")
    db.execute(
        """
        CREATE TABLE classifications (
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            model_version TEXT NOT NULL,
            label TEXT NOT NULL,
            score REAL NOT NULL,
            rank INTEGER NOT NULL,
            PRIMARY KEY (item_id, model_version, label)
        )
        """
    )
    db.execute("CREATE INDEX classifications_label ON classifications(label, model_version)")
    db.execute(
        """
        CREATE TABLE labels (
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            rank INTEGER NOT NULL,
            labelled_by TEXT,
            labelled_at TEXT NOT NULL,
            PRIMARY KEY (item_id, label)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE models (
            version TEXT PRIMARY KEY,
            first_used_at TEXT NOT NULL,
            last_used_at TEXT NOT NULL,
            metadata TEXT NOT NULL
        )
        """
    )
    # The labels that count for an item: a person's correction if there is one, else the
    # labels of the most recently used model that classified it, unless that model was
    # unsure (an uncertain item belongs to no function until a person decides).
    db.execute(
        """
        CREATE VIEW item_labels AS
        SELECT labels.item_id, labels.label, 1.0 AS score, labels.rank,
               'human' AS source, NULL AS model_version
        FROM labels
        UNION ALL
        SELECT classifications.item_id, classifications.label, classifications.score,
               classifications.rank, 'model' AS source, classifications.model_version
        FROM classifications
        WHERE NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = classifications.item_id)
          AND (classifications.model_version, 0) = (
              SELECT predictions.model_version, predictions.uncertain FROM predictions
              JOIN models ON models.version = predictions.model_version
              WHERE predictions.item_id = classifications.item_id
              ORDER BY models.last_used_at DESC LIMIT 1)
        """
    )
    db.execute("DROP VIEW items_view")
    db.execute(
        """
        CREATE VIEW items_view AS
        SELECT items.id, items.published_at, feeds.title AS feed_title, feeds.url AS feed_url,
               feeds.tags AS feed_tags, items.title, items.url, items.summary, items.author,
               items.lang, items.guid, items.fetched_at, items.key,
               (SELECT group_concat(label, ',') FROM
                   (SELECT label FROM item_labels WHERE item_labels.item_id = items.id
                    ORDER BY rank)) AS labels,
               (SELECT predictions.uncertain FROM predictions
                JOIN models ON models.version = predictions.model_version
                WHERE predictions.item_id = items.id
                  AND NOT EXISTS (SELECT 1 FROM labels WHERE labels.item_id = items.id)
                ORDER BY models.last_used_at DESC LIMIT 1) AS uncertain
        FROM items JOIN feeds ON feeds.id = items.feed_id
        """
    )


@migrations()
def m003_digests_and_daemon(db: Database) -> None:
    # One row per recipient and local day: the claim/sent pair makes each digest go out
    # exactly once across restarts (healthchecks' optimistic next_report_date, made a row).
    db.execute(
        """
        CREATE TABLE digests (
            recipient TEXT NOT NULL,
            day TEXT NOT NULL,
            period_start TEXT NOT NULL,
            period_end TEXT NOT NULL,
            claimed_at TEXT,
            claim_id TEXT,
            sent_at TEXT,
            item_count INTEGER,
            message_id TEXT,
            delivery TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at TEXT,
            PRIMARY KEY (recipient, day)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE daemon (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            version TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            stopped_at TEXT,
            next_runs TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    # The digest selects the items first seen in a period.
    db.execute("CREATE INDEX items_fetched ON items(fetched_at)")


@migrations()
def m004_watches_mentions_alerts(db: Database) -> None:
    # A watch's matched_through is a cursor: every item with id <= it has been matched
    # against the watch's current revision. Store-time matching advances it with the items
    # it stores, a backfill batch by batch, so an interrupted backfill resumes, and a
    # changed query (revision + 1, cursor back to 0) never mixes old and new mentions.
    db.execute(
        """
        CREATE TABLE watches (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            query TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            origin TEXT NOT NULL,
            revision INTEGER NOT NULL DEFAULT 1,
            matched_through INTEGER NOT NULL DEFAULT 0,
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    # published_at is the item's, copied so that counting a watch's mentions per day (the
    # spike check, every hour) reads one index range and no items row.
    db.execute(
        """
        CREATE TABLE mentions (
            watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            published_at TEXT NOT NULL,
            terms TEXT NOT NULL,
            PRIMARY KEY (watch_id, item_id)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX mentions_item ON mentions(item_id)")
    db.execute("CREATE INDEX mentions_watch_published ON mentions(watch_id, published_at)")
    # One row per spike episode of a watch in a function: opened by the check that first
    # sees the last 24 h over the threshold, closed by the first one that sees it back to
    # normal. The partial unique index allows one open episode per (watch, function).
    db.execute(
        """
        CREATE TABLE spikes (
            id INTEGER PRIMARY KEY,
            watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
            function TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            count INTEGER NOT NULL,
            baseline_mean REAL NOT NULL,
            baseline_sd REAL NOT NULL,
            threshold REAL NOT NULL,
            peak_count INTEGER NOT NULL
        )
        """
    )
    db.execute(
        "CREATE UNIQUE INDEX spikes_open ON spikes(watch_id, function) WHERE ended_at IS NULL"
    )
    # One alert email per recipient, watch and check that opened episodes: claimed, sent,
    # marked like the digests, so it goes out exactly once across restarts.
    db.execute(
        """
        CREATE TABLE alerts (
            recipient TEXT NOT NULL,
            watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
            opened_at TEXT NOT NULL,
            functions TEXT NOT NULL,
            claimed_at TEXT,
            claim_id TEXT,
            sent_at TEXT,
            message_id TEXT,
            delivery TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at TEXT,
            PRIMARY KEY (recipient, watch_id, opened_at)
        )
        """
    )


@migrations()
def m005_fts_inserts_by_batch(db: Database) -> None:
    # New items enter items_fts in one INSERT ... SELECT per poll batch (store/_poll.py),
    # not through a trigger per row: 30,000 new items took 6.6 s of FTS writes through the
    # trigger and 3.5-4.1 s by batch (issue 14). Changed and deleted items keep their
    # triggers (items_au, items_ad). Items are only inserted by Store.apply_all.
    db.execute("DROP TRIGGER IF EXISTS items_ai")


@migrations()
def m006_digest_period_indexes(db: Database) -> None:
    # The digest reads a period's items (and its 7-day baseline) by fetched_at, keeping those
    # published within a week, from chosen feeds: with published_at and feed_id in the index
    # that selection reads no items row (~3 of a day's 8 ms at a million items). It replaces
    # items_fetched, a prefix of it.
    db.execute("CREATE INDEX items_fetched_published ON items(fetched_at, published_at, feed_id)")
    db.execute("DROP INDEX IF EXISTS items_fetched")
    # Which model's prediction counts for an item is the most recently used model that
    # classified it: walking the models newest first on this index, each item costs one
    # primary-key probe into predictions, not a sort.
    db.execute("CREATE INDEX models_last_used ON models(last_used_at)")


@migrations()
def m007_refined_predictions(db: Database) -> None:
    # The classifier's second stage (classify/refine.py) re-scores a model's uncertain
    # predictions in place: refined_by names the head that did (NULL: the linear model's own
    # prediction). A poll that re-classifies a changed item replaces the row, so it is
    # refined again. The partial index holds only the predictions still to refine.
    db.execute("ALTER TABLE predictions ADD COLUMN refined_by TEXT")
    db.execute(
        "CREATE INDEX predictions_to_refine ON predictions(model_version, item_id)"
        " WHERE uncertain = 1 AND refined_by IS NULL"
    )


@migrations()
def m008_daemon_model_version(db: Database) -> None:
    # The model the running daemon loaded at start: `listener status` compares it with the
    # configured model file, which `listener model train` may have replaced since.
    db.execute("ALTER TABLE daemon ADD COLUMN model_version TEXT")
