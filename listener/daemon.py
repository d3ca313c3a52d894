"""I/O: the daemon loop around the jobs (APScheduler 3), its signals, and its single-run lock.

The only module that imports apscheduler; its untyped API stays in here. Every job is a plain
callable that also runs once from the CLI; this module only decides *when* it runs (app.py
holds the job table).

Missed runs (a host that sleeps, a long poll holding the one default worker):
- `coalesce=True`: after a wake-up, a job whose runs piled up runs once, not once per missed run.
- A generous grace, widened per job so the one coalesced run is always inside it: an interval
  job gets at least its interval (+ jitter), since the latest missed run is at most that old;
  a daily job gets no limit, since its latest missed run can be up to a day old and skipping
  it would lose a whole day. APScheduler's default grace is 1 s (agronholm/apscheduler#292).
- Waits in the scheduler thread run on the monotonic clock, which stops while the host sleeps,
  so a 1-hour wait can end hours late in wall time. The main thread therefore wakes the
  scheduler every WAKEUP_EVERY_S to re-check due jobs against the wall clock.
"""

from __future__ import annotations

import faulthandler
import fcntl
import math
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars

from listener.errors import ListenerError

log = structlog.get_logger(__name__)

EXECUTORS = ("default", "side")
WAKEUP_EVERY_S = 60.0
STOP_CHECK_S = 0.25
STDERR_FD = 2  # the descriptor, not sys.stderr: the process's own, whatever Python wraps it in
_DAILY_AT = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")

# Receives every job's next run time (aware UTC; None: no run to come).
OnSchedule = Callable[[Mapping[str, datetime | None]], None]


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    name: str  # "poll", "digest", "maintenance", "heartbeat"; unique
    func: Callable[[], object]
    every_s: float | None = None  # interval trigger
    daily_at_utc: str | None = None  # "03:30": cron trigger, UTC
    jitter_s: float = 0.0  # random delay added to each run, at most this
    run_at_start: bool = True  # such jobs start in the order start() is given them
    # "default" runs jobs one at a time (SQLite has one writer); "side" for the heartbeat.
    executor: str = "default"
    quiet: bool = False  # log a successful run at debug (the heartbeat, every 30 s)

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.daily_at_utc is None):
            raise ValueError(f"job {self.name}: give exactly one of every_s and daily_at_utc")
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"job {self.name}: every_s must be positive, not {self.every_s}")
        if self.daily_at_utc is not None and not _DAILY_AT.fullmatch(self.daily_at_utc):
            raise ValueError(
                f"job {self.name}: daily_at_utc must be HH:MM, not {self.daily_at_utc!r}"
            )
        if self.jitter_s < 0:
            raise ValueError(f"job {self.name}: jitter_s must not be negative")
        if self.executor not in EXECUTORS:
            raise ValueError(f"job {self.name}: executor must be one of {', '.join(EXECUTORS)}")


class DaemonScheduler:
    """The daemon's schedule: `start(jobs)` ... `shutdown()`, or `run_until_stopped(jobs, stop)`.

    `on_schedule` gets `next_runs()` once started and again each time a run is scheduled
    (from the scheduler's thread: keep it quick). `next_runs()` can also be read from any
    thread, even inside a job (the heartbeat writes it to the database).
    """

    def __init__(
        self, *, misfire_grace_s: int = 3600, on_schedule: OnSchedule | None = None
    ) -> None:
        # Imported here: one-shot commands use this module's signal and lock helpers, and
        # APScheduler's import (with its entry-point scan) cost each of them ~25 ms.
        from apscheduler.events import (
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self._misfire_grace_s = misfire_grace_s
        self._on_schedule = on_schedule
        self._executors: dict[str, Any] = {name: ThreadPoolExecutor(1) for name in EXECUTORS}
        self._scheduler: Any = BackgroundScheduler(
            timezone=UTC,
            executors=self._executors,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_s,
            },
        )
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        if on_schedule is not None:
            # Dispatched after APScheduler has moved the job's next_run_time forward.
            self._scheduler.add_listener(
                self._report_schedule, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES
            )

    def start(self, jobs: Sequence[ScheduledJob]) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        now = datetime.now(UTC)
        for position, job in enumerate(jobs):
            options: dict[str, Any] = {}
            if job.run_at_start:
                # APScheduler runs jobs due at the same instant in order of their ids, which put
                # "digest" before "poll": a new install's first digest went out empty before the
                # first poll had stored anything. A microsecond apart, they start in list order.
                options["next_run_time"] = now + timedelta(microseconds=position)
            self._scheduler.add_job(
                _run_logged,
                args=(job,),
                trigger=self._trigger(job),
                id=job.name,
                name=job.name,
                executor=job.executor,
                misfire_grace_time=self._grace_s(job),
                **options,
            )
        self._scheduler.start()
        next_runs = self.next_runs()
        log.info("scheduler_started", jobs=names, next_runs=_isoformat(next_runs))
        if self._on_schedule is not None:
            self._on_schedule(next_runs)

    def next_runs(self) -> dict[str, datetime | None]:
        """Each job's next run time (aware, UTC); None for a job with no run to come."""
        return {
            job.id: getattr(job, "next_run_time", None)  # unset while the job is pending
            for job in self._scheduler.get_jobs()
        }

    def wakeup(self) -> None:
        """Re-check due jobs now, against the wall clock (after a suspend or a clock jump)."""
        self._scheduler.wakeup()

    def shutdown(self) -> None:
        """Stop scheduling and wait for running jobs to finish; idempotent."""
        if self._scheduler.running:
            # Not APScheduler's shutdown(wait=True): it waits for running jobs while holding
            # its job-store lock, which next_runs() needs, so a job reading it at that moment
            # (the heartbeat, every few seconds) hung the daemon's stop for good. Here the
            # scheduler stops first and the jobs are waited for with no lock held.
            self._scheduler.shutdown(wait=False)
            for executor in self._executors.values():
                executor.shutdown(wait=True)
            log.info("scheduler_stopped")

    def run_until_stopped(self, jobs: Sequence[ScheduledJob], stop: threading.Event) -> None:
        """Start `jobs`, wait for `stop`, then shut down, letting running jobs finish."""
        self.start(jobs)
        try:
            next_wakeup = time.monotonic() + WAKEUP_EVERY_S
            # Short waits: the signal handler that sets `stop` runs in this thread, and only
            # once it wakes when the kernel gave SIGTERM to another thread.
            while not stop.wait(STOP_CHECK_S):
                if time.monotonic() >= next_wakeup:
                    self.wakeup()
                    next_wakeup = time.monotonic() + WAKEUP_EVERY_S
        finally:
            self.shutdown()

    @staticmethod
    def _trigger(job: ScheduledJob) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        jitter = job.jitter_s or None
        if job.daily_at_utc is not None:
            hour, minute = job.daily_at_utc.split(":")
            return CronTrigger(hour=int(hour), minute=int(minute), jitter=jitter, timezone=UTC)
        return IntervalTrigger(seconds=job.every_s, jitter=jitter, timezone=UTC)

    def _grace_s(self, job: ScheduledJob) -> int | None:
        if job.every_s is None:
            return None  # daily: run once however late, never lose a day
        return max(self._misfire_grace_s, math.ceil(job.every_s + job.jitter_s))

    def _report_schedule(self, event: Any) -> None:
        if self._on_schedule is not None:
            self._on_schedule(self.next_runs())

    @staticmethod
    def _on_skipped(event: Any) -> None:
        from apscheduler.events import EVENT_JOB_MISSED

        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "job_skipped",
                job=event.job_id,
                reason="missed",
                scheduled_at=event.scheduled_run_time.isoformat(),
            )
        else:  # the previous run is still going: normal when a poll outlasts its interval
            log.info("job_skipped", job=event.job_id, reason="still_running")


def install_signal_handlers(
    stop: threading.Event, event: str = "daemon_stopping"
) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop`, SIGUSR1 writes every thread's stack to stderr; return a
    function that restores the previous handlers.

    Only from the main thread (Python's rule for signal handlers). A second signal while
    stopping is logged and changes nothing: the stop is already as quick as it can be.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers must be called from the main thread")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info(event, signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    _register_stack_dump()

    def restore() -> None:
        for sig, handler in previous.items():
            # None: the handler was not installed from Python; the default is the best guess.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        faulthandler.unregister(signal.SIGUSR1)

    return restore


def _register_stack_dump() -> None:
    """`kill -USR1 <pid>`: every thread's stack on stderr, and the process runs on. It shows
    what a stop that hangs or a job that drags is doing, with no debugger on the server;
    faulthandler writes from C, so it answers even when the main thread is stuck in a lock."""
    faulthandler.register(signal.SIGUSR1, file=STDERR_FD, all_threads=True)


@contextmanager
def daemon_lock(db_path: Path) -> Iterator[None]:
    """Hold `<database>.lock` exclusively while the block runs: one daemon per database.

    flock locks belong to the open file, so the OS drops this one when the process ends in any
    way (even kill -9): a crash never blocks a restart. The file is never deleted; unlinking a
    lock file lets two processes each lock a different inode.
    """
    # Named after the real file: `alias.db -> l.db` or `./l.db` vs `/srv/l.db` is one database.
    real = db_path.resolve()
    lock_path = real.with_name(real.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ListenerError(f"cannot open the lock file {lock_path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ListenerError(
                f"another listener daemon is already running on {db_path} (pid {holder})"
            ) from exc
        except OSError as exc:
            raise ListenerError(f"cannot lock {lock_path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _run_logged(job: ScheduledJob) -> None:
    """Run one job with its own log context; no exception escapes to the scheduler."""
    # APScheduler reuses worker threads: start from a clean context every time.
    clear_contextvars()
    bind_contextvars(job=job.name, run_id=uuid.uuid4().hex[:12])
    started = time.perf_counter()
    log.debug("job_started")
    try:
        job.func()
    except ListenerError as exc:  # expected (config, store, mail): already explained
        log.warning(
            "job_failed",
            status="failed",
            error=str(exc),
            error_type=type(exc).__name__,
            duration_ms=_elapsed_ms(started),
        )
    except Exception:  # a bug: log the traceback and keep the daemon alive for the next run
        log.exception("job_failed", status="failed", duration_ms=_elapsed_ms(started))
    else:
        finished = log.debug if job.quiet else log.info
        finished("job_finished", status="ok", duration_ms=_elapsed_ms(started))
    finally:
        clear_contextvars()


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _isoformat(runs: Mapping[str, datetime | None]) -> dict[str, str | None]:
    return {name: when.isoformat() if when else None for name, when in runs.items()}
