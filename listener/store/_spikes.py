"""I/O: spike episodes: the open ones, what a check opens, updates and closes, and the
recent ones for `listener alerts list`. Decides nothing: what is a spike is
`watches.spikes`' business."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from listener.domain import NewSpike, SpikeRow
from listener.store._base import (
    NEVER,
    StoreBase,
    from_db_time,
    to_db_time,
    wrap_errors,
    write_transaction,
)


class SpikesMixin(StoreBase):
    def open_spikes(self) -> dict[tuple[int, str], SpikeRow]:
        with wrap_errors("reading spikes"):
            rows = self.db.execute(
                "SELECT id, watch_id, function, started_at, count, peak_count, baseline_mean,"
                " baseline_sd FROM spikes WHERE ended_at IS NULL"
            ).fetchall()
        return {
            (row[1], row[2]): SpikeRow(
                row[0], row[1], row[2], from_db_time(row[3]) or NEVER, *row[4:]
            )
            for row in rows
        }

    def record_spikes(
        self,
        *,
        opened: Sequence[NewSpike],
        updated: Mapping[int, int],
        closed: Sequence[int],
        now: datetime,
    ) -> int:
        """Open episodes, update the counts of open ones (spike id -> count), close others
        (by id); one transaction. The episodes opened (one already open for the same watch
        and function is left alone)."""
        stamp = to_db_time(now)
        with wrap_errors("recording spikes"), write_transaction(self.db):
            added = 0
            for spike in opened:
                added += self.db.execute(
                    "INSERT OR IGNORE INTO spikes (watch_id, function, started_at, count,"
                    " baseline_mean, baseline_sd, threshold, peak_count)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        spike.watch_id,
                        spike.function,
                        stamp,
                        spike.count,
                        spike.baseline_mean,
                        spike.baseline_sd,
                        spike.threshold,
                        spike.count,
                    ],
                ).rowcount
            for spike_id, count in updated.items():
                self.db.execute(
                    "UPDATE spikes SET count = ?, peak_count = max(peak_count, ?) WHERE id = ?",
                    [count, count, spike_id],
                )
            for spike_id in closed:
                self.db.execute("UPDATE spikes SET ended_at = ? WHERE id = ?", [stamp, spike_id])
        return added

    def recent_spikes(self, limit: int = 20) -> list[dict[str, Any]]:
        with wrap_errors("reading spikes"):
            return list(
                self.db.query(
                    "SELECT watches.name AS watch, spikes.* FROM spikes"
                    " JOIN watches ON watches.id = spikes.watch_id"
                    " ORDER BY spikes.ended_at IS NOT NULL, spikes.started_at DESC, spikes.id DESC"
                    " LIMIT ?",
                    [limit],
                )
            )
