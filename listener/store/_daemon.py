"""I/O: the daemon's row (its heartbeat, read by `listener status`) and the daily
maintenance of the database."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from listener.store._base import StoreBase, from_db_time, to_db_time, wrap_errors, write_transaction


class DaemonMixin(StoreBase):
    def record_heartbeat(
        self,
        *,
        pid: int,
        host: str,
        version: str,
        started_at: datetime,
        now: datetime,
        next_runs: Mapping[str, datetime | None],
        model_version: str | None = None,
    ) -> None:
        runs = {name: to_db_time(at) if at else None for name, at in next_runs.items()}
        with wrap_errors("writing the heartbeat"), write_transaction(self.db):
            self.db.execute(
                "INSERT INTO daemon (id, pid, host, version, started_at, heartbeat_at,"
                " stopped_at, next_runs, model_version) VALUES (1, ?, ?, ?, ?, ?, NULL, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host,"
                " version = excluded.version, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,"
                " next_runs = excluded.next_runs, model_version = excluded.model_version",
                [
                    pid,
                    host,
                    version,
                    to_db_time(started_at),
                    to_db_time(now),
                    json.dumps(runs),
                    model_version,
                ],
            )

    def record_daemon_stopped(self, pid: int, now: datetime) -> None:
        with wrap_errors("recording the daemon's stop"), write_transaction(self.db):
            self.db.execute(
                "UPDATE daemon SET stopped_at = ? WHERE id = 1 AND pid = ?", [to_db_time(now), pid]
            )

    def daemon_state(self) -> dict[str, Any] | None:
        with wrap_errors("reading the daemon state"):
            rows = list(self.db.query("SELECT * FROM daemon WHERE id = 1"))
        return rows[0] if rows else None

    def last_heartbeat(self) -> datetime | None:
        """When the daemon last wrote its heartbeat; None if it never ran on this database."""
        with wrap_errors("reading the daemon state"):
            row = self.db.execute("SELECT heartbeat_at FROM daemon WHERE id = 1").fetchone()
        return from_db_time(row[0]) if row else None

    def run_maintenance(self, *, polls_before: datetime) -> dict[str, int]:
        """Drop old polls rows, optimise the full-text index and the query planner's stats."""
        with wrap_errors("maintenance"):
            with write_transaction(self.db):
                deleted = self.db.execute(
                    "DELETE FROM polls WHERE started_at < ?", [to_db_time(polls_before)]
                ).rowcount
                self.db.execute("INSERT INTO items_fts(items_fts) VALUES ('optimize')")
            self.db.execute("PRAGMA optimize")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"polls_deleted": deleted}
