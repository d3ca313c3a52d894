"""I/O: the exactly-once row of each alert email (recipient, watch, episode opened at), and
the recent ones for `listener alerts list`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from listener.store._base import StoreBase, to_db_time, wrap_errors
from listener.store._claims import claim_row, mark_row_sent, release_row, row_attempts


class AlertsMixin(StoreBase):
    def claim_alert(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        functions: Sequence[str],
        *,
        now: datetime,
        stale_before: datetime,
    ) -> str | None:
        """Claim one alert email for sending (_claims.claim_row); None: not ours."""
        return claim_row(
            self.db,
            "alerts",
            _alert_keys(recipient, watch_id, opened_at),
            columns={"functions": json.dumps(list(functions))},
            now=now,
            stale_before=stale_before,
        )

    def mark_alert_sent(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        claim_id: str,
        *,
        now: datetime,
        message_id: str | None,
        delivery: str,
    ) -> None:
        keys = _alert_keys(recipient, watch_id, opened_at)
        mark_row_sent(
            self.db, "alerts", keys, claim_id, now=now, message_id=message_id, delivery=delivery
        )

    def release_alert(
        self,
        recipient: str,
        watch_id: int,
        opened_at: datetime,
        claim_id: str,
        *,
        error: str,
        retry_at: datetime,
    ) -> int:
        keys = _alert_keys(recipient, watch_id, opened_at)
        return release_row(self.db, "alerts", keys, claim_id, error=error, retry_at=retry_at)

    def alert_attempts(self, recipient: str, watch_id: int, opened_at: datetime) -> int:
        return row_attempts(self.db, "alerts", _alert_keys(recipient, watch_id, opened_at))

    def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        with wrap_errors("reading alerts"):
            return list(
                self.db.query(
                    "SELECT alerts.recipient, watches.name AS watch, alerts.opened_at,"
                    " alerts.functions, alerts.sent_at, alerts.delivery, alerts.attempts,"
                    " alerts.last_error FROM alerts JOIN watches ON watches.id = alerts.watch_id"
                    " ORDER BY alerts.opened_at DESC, watches.name, alerts.recipient LIMIT ?",
                    [limit],
                )
            )


def _alert_keys(recipient: str, watch_id: int, opened_at: datetime) -> dict[str, Any]:
    return {"recipient": recipient, "watch_id": watch_id, "opened_at": to_db_time(opened_at)}
