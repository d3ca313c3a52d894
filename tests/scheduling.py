"""Run a DaemonScheduler on a thread of the test's own, as the daemon runs it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from listener.daemon import DaemonScheduler, OnSchedule, ScheduledJob


def run_until_stopped(
    jobs: Sequence[ScheduledJob],
    stop: threading.Event,
    *,
    misfire_grace_s: int = 3600,
    on_schedule: OnSchedule | None = None,
) -> None:
    """Run `jobs` on their schedules until `stop` is set; running jobs finish first."""
    scheduler = DaemonScheduler(misfire_grace_s=misfire_grace_s, on_schedule=on_schedule)
    scheduler.run_until_stopped(jobs, stop)
