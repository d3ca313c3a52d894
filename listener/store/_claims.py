"""I/O: exactly-once sending for the digests and alerts tables (healthchecks' optimistic
`next_report_date`, made a row): claim a row with one conditional write, send, then mark it
sent, or release it with a retry time when the send failed.

Both tables have the columns claimed_at, claim_id, sent_at, message_id, delivery, attempts,
last_error and next_attempt_at; `keys` names the row (its primary key columns).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from listener.store._base import to_db_time, wrap_errors, write_transaction

_TABLES = frozenset({"digests", "alerts"})  # the only tables these functions write


def claim_row(
    db: Database,
    table: str,
    keys: Mapping[str, Any],
    *,
    columns: Mapping[str, Any],
    now: datetime,
    stale_before: datetime,
) -> str | None:
    """Claim a row for sending (inserting it with `columns` if new); the claim id, or None
    when it is sent, claimed by a live sender, or waiting for its next retry. One
    conditional write, so two processes can never both win."""
    if table not in _TABLES:
        raise ValueError(f"not a claimable table: {table}")
    claim_id = uuid.uuid4().hex
    values = {**keys, **columns}
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    conflict = ", ".join(keys)
    params = {
        **values,
        "_now": to_db_time(now),
        "_claim": claim_id,
        "_stale": to_db_time(stale_before),
    }
    with wrap_errors(f"claiming a row of {table}"), write_transaction(db):
        db.execute(
            f"""
            INSERT INTO {table} ({names}, claimed_at, claim_id) VALUES ({marks}, :_now, :_claim)
            ON CONFLICT ({conflict}) DO UPDATE SET claimed_at = :_now, claim_id = :_claim
            WHERE {table}.sent_at IS NULL
              AND ({table}.claimed_at IS NULL OR {table}.claimed_at < :_stale)
              AND ({table}.next_attempt_at IS NULL OR {table}.next_attempt_at <= :_now)
            """,
            params,
        )
        row = db.execute(
            f"SELECT claim_id FROM {table} WHERE {_where(keys)}", dict(keys)
        ).fetchone()
    return claim_id if row and row[0] == claim_id else None


def mark_row_sent(
    db: Database,
    table: str,
    keys: Mapping[str, Any],
    claim_id: str,
    *,
    now: datetime,
    message_id: str | None,
    delivery: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The claimed row was sent (or needed no sending): record when and how."""
    more = "".join(f", {name} = :{name}" for name in extra or {})
    with wrap_errors(f"marking a row of {table} sent"), write_transaction(db):
        db.execute(
            f"UPDATE {table} SET sent_at = :_now, message_id = :_message_id,"
            f" delivery = :_delivery, attempts = attempts + 1, last_error = NULL,"
            f" next_attempt_at = NULL{more} WHERE {_where(keys)} AND claim_id = :_claim",
            {
                **keys,
                **(extra or {}),
                "_now": to_db_time(now),
                "_message_id": message_id,
                "_delivery": delivery,
                "_claim": claim_id,
            },
        )


def release_row(
    db: Database,
    table: str,
    keys: Mapping[str, Any],
    claim_id: str,
    *,
    error: str,
    retry_at: datetime,
) -> int:
    """A failed send gives the claim back, to be retried at `retry_at`; the attempts so far."""
    with wrap_errors(f"releasing a row of {table}"), write_transaction(db):
        db.execute(
            f"UPDATE {table} SET claimed_at = NULL, claim_id = NULL, attempts = attempts + 1,"
            f" last_error = :_error, next_attempt_at = :_retry"
            f" WHERE {_where(keys)} AND claim_id = :_claim",
            {**keys, "_error": error, "_retry": to_db_time(retry_at), "_claim": claim_id},
        )
        row = db.execute(
            f"SELECT attempts FROM {table} WHERE {_where(keys)}", dict(keys)
        ).fetchone()
    return int(row[0]) if row else 0


def row_attempts(db: Database, table: str, keys: Mapping[str, Any]) -> int:
    with wrap_errors(f"reading {table}"):
        row = db.execute(
            f"SELECT attempts FROM {table} WHERE {_where(keys)}", dict(keys)
        ).fetchone()
    return int(row[0]) if row else 0


def _where(keys: Mapping[str, Any]) -> str:
    return " AND ".join(f"{name} = :{name}" for name in keys)
