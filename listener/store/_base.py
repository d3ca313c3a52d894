"""I/O: what the store's modules share: the connection they all use (`StoreBase`), the text
form of every *_at column (times cross the store's boundary as aware datetimes, never as
this text), chunked lookups by item key, and the translation of sqlite3 errors into
StoreError messages a person can act on."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from listener.errors import StoreError

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CHUNK = 500  # stays under SQLite's bound-parameter limit
NEVER = datetime.min.replace(tzinfo=UTC)  # for NOT NULL time columns read back as None


class StoreBase:
    """The connection every table family's mixin works on. A mixin uses `self.db` only,
    never another mixin's methods: what two families share is a function of this package."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path

    def close(self) -> None:
        self.db.close()


def item_values_by_key(db: Database, column: str, keys: Iterable[str]) -> dict[str, Any]:
    """key -> `column` of the stored items among `keys`, CHUNK keys per query."""
    keys = list(keys)
    found: dict[str, Any] = {}
    with wrap_errors("reading items"):
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, {column} FROM items WHERE key IN ({marks})"
            found.update(db.execute(sql, chunk).fetchall())
    return found


def to_db_time(value: datetime) -> str:
    """Aware datetime → the UTC text form stored in every *_at column."""
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def from_db_time(value: str | None) -> datetime | None:
    """The text of a *_at column → an aware UTC datetime (None stays None)."""
    if value is None:
        return None
    # fromisoformat reads the trailing Z (3.11+) and is ~20x faster than strptime, which
    # mattered when a digest reads a busy day's 16,000 items.
    return datetime.fromisoformat(value).astimezone(UTC)


@contextmanager
def write_transaction(db: Database) -> Iterator[None]:
    """One write transaction that takes the write lock first, waiting busy_timeout for it.

    sqlite-utils' `atomic()` opens with a deferred BEGIN: the transaction reads, then asks for
    the write lock, and if another connection wrote in between SQLite refuses at once with
    "database is locked" instead of waiting (a read snapshot cannot be upgraded:
    https://www.sqlite.org/lang_transaction.html). BEGIN IMMEDIATE waits like any other lock.
    Inside a transaction already open, it is a savepoint of that transaction.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


@contextmanager
def wrap_errors(action: str) -> Iterator[None]:
    """sqlite3 errors become StoreError with a message a person can act on."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StoreError(
                f"{action}: the database is locked by another process (is a daemon or an "
                "export still running?)"
            ) from exc
        if "readonly" in text or "read-only" in text:
            raise StoreError(f"{action}: the database file is read-only") from exc
        if "unable to open" in text:
            raise StoreError(f"{action}: cannot open the database file (missing folder?)") from exc
        raise StoreError(f"{action}: {text}") from exc
    except sqlite3.IntegrityError:
        raise  # a constraint we broke is a bug, not a condition to report
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{action}: {exc} (is this a listener database?)") from exc
