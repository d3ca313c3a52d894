"""I/O: SQLite through sqlite-utils. Translates between rows and domain types; decides nothing.

`Store` is one connection with a mixin per table family, side by side over `_base`:
`_feeds`, `_items` (search, export), `_poll` (a poll's one transaction), `_labels`,
`_digests` (with `_period`, the SQL of a digest period), `_stats` (counts per feed and
function, as a digest counts), `_watches` (and mentions), `_spikes`, `_alerts`, `_daemon`
(heartbeat, maintenance); `_claims` is the exactly-once row
that digests and alerts share; `migrations` is the schema's history. `Store.search` takes an
FTS5 query (`watches.fts` writes it from what a person types).

One writer (the job's thread), any number of readers (WAL). Times cross this package's
boundary as aware datetimes, never as the text the columns hold.
"""

# ruff: noqa: E402  (sqlite-utils must be imported by the guard below, before the mixins)
from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path


def _import_sqlite_utils_without_numpy() -> None:
    """Import sqlite-utils as if numpy were not installed. It imports numpy, when present,
    only to give numpy scalars a column type; listener writes Python values only, and the
    import cost every command ~50 ms, a warm poll included, which otherwise never needs
    numpy (issue 14). A process that already holds numpy changes nothing."""
    if "numpy" in sys.modules or "sqlite_utils" in sys.modules:
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # `import numpy` now fails
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["numpy"]


_import_sqlite_utils_without_numpy()

from sqlite_utils import Database

from listener.errors import StoreError
from listener.store._alerts import AlertsMixin
from listener.store._base import wrap_errors
from listener.store._daemon import DaemonMixin
from listener.store._digests import DigestsMixin
from listener.store._feeds import FeedsMixin
from listener.store._items import ItemsMixin
from listener.store._labels import LabelsMixin
from listener.store._period import MAX_ITEM_AGE
from listener.store._poll import PollMixin
from listener.store._spikes import SpikesMixin
from listener.store._stats import TOTAL, UNCERTAIN, StatsMixin
from listener.store._watches import WatchesMixin
from listener.store.migrations import migrations

__all__ = ["MAX_ITEM_AGE", "TOTAL", "UNCERTAIN", "Store", "open_store"]


class Store(
    FeedsMixin,
    ItemsMixin,
    PollMixin,
    LabelsMixin,
    DigestsMixin,
    WatchesMixin,
    SpikesMixin,
    StatsMixin,
    AlertsMixin,
    DaemonMixin,
):
    """The database: one connection, every table family's reads and writes."""


def open_store(path: Path, *, busy_timeout_s: float = 5.0) -> Store:
    """Open (creating if needed) the database, switch to WAL and apply pending migrations."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise StoreError(f"opening {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        # SQLite says "unable to open database file": it needs the folder for its WAL files.
        raise StoreError(f"opening {path}: the folder {folder} is read-only")
    with wrap_errors(f"opening {path}"):
        # IMMEDIATE: the transactions Python opens by itself before a write take the write
        # lock first too (see write_transaction for the ones we open).
        conn = sqlite3.connect(
            str(path),
            timeout=busy_timeout_s,
            check_same_thread=False,
            isolation_level="IMMEDIATE",
        )
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        # In WAL mode NORMAL keeps the database consistent through crashes and only risks the
        # last transactions on power loss; FULL would fsync every feed's poll (most of a warm
        # cycle's time: https://www.sqlite.org/pragma.html#pragma_synchronous).
        db.execute("PRAGMA synchronous = NORMAL")
        if migrations.pending(db) or "_sqlite_migrations" not in db.table_names():
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.enable_wal()
            migrations.apply(db)
        return Store(db, path)
