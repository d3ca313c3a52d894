"""listener.daemon: a real BackgroundScheduler, real signals, a lock held by another process.

Nothing sleeps to wait: every test waits on an Event with a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import time_machine
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from listener import daemon
from listener.daemon import (
    DaemonScheduler,
    ScheduledJob,
    daemon_lock,
    install_signal_handlers,
)
from listener.errors import ListenerError, StoreError
from tests.scheduling import run_until_stopped

WAIT_S = 5.0  # upper bound for something that should happen within milliseconds
CHILD_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}  # finds listener


def start_script(script: str, *args: str) -> subprocess.Popen[str]:
    """`python -c script args…` in a process of its own, its three streams piped."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CHILD_ENV,
    )


@pytest.fixture(autouse=True)
def _fresh_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CLI run in this process (configure_logging(cache=True), e.g. test_end_to_end) caches
    # the module's logger proxy for good, and capture_logs no longer sees it.
    monkeypatch.setattr(daemon, "log", structlog.get_logger(daemon.__name__))


class Runs:
    """A job body that counts its runs and lets a test wait for the n-th."""

    def __init__(self, body: Callable[[], object] | None = None) -> None:
        self.count = 0
        self._body = body
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()
        if self._body is not None:
            self._body()

    def wait_for(self, n: int, timeout_s: float = WAIT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= n, timeout_s)


@contextmanager
def running(jobs: list[ScheduledJob], **options: Any) -> Iterator[DaemonScheduler]:
    scheduler = DaemonScheduler(**options)
    scheduler.start(jobs)
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def test_jobs_run_at_start() -> None:
    poll, digest = Runs(), Runs()
    jobs = [
        ScheduledJob("poll", poll, every_s=3600),
        ScheduledJob("maintenance", digest, daily_at_utc="03:30"),
    ]

    with running(jobs):
        assert poll.wait_for(1)
        assert digest.wait_for(1)


def test_jobs_run_at_start_in_the_order_given_not_by_name() -> None:
    """APScheduler orders jobs due at one instant by id; the digest must not read before the
    first poll has stored anything."""
    order: list[str] = []
    names = ["poll", "digest", "alerts"]  # the reverse of their alphabetical order
    runs = {name: Runs(lambda name=name: order.append(name)) for name in names}
    jobs = [ScheduledJob(name, runs[name], every_s=3600) for name in names]

    with running(jobs):
        assert all(run.wait_for(1) for run in runs.values())

    assert order == names


def test_the_daemon_polls_before_its_digest_and_alerts() -> None:
    from types import SimpleNamespace

    from listener.app import daemon_jobs
    from listener.config import parse_settings

    services: Any = SimpleNamespace(settings=parse_settings({}, {}), second_stage=None)
    names = [job.name for job in daemon_jobs(services) if job.run_at_start]
    assert names[0] == "poll"
    assert {"digest", "alerts"} <= set(names)


def test_a_job_not_run_at_start_waits_for_its_time() -> None:
    maintenance = Runs()
    job = ScheduledJob("maintenance", maintenance, daily_at_utc="03:30", run_at_start=False)

    with running([job]) as scheduler:
        next_run = scheduler.next_runs()["maintenance"]

    assert maintenance.count == 0
    assert next_run is not None
    assert next_run.utcoffset() == timedelta(0)
    assert (next_run.hour, next_run.minute) == (3, 30)
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=1)


def test_an_interval_job_runs_repeatedly() -> None:
    poll = Runs()

    with running([ScheduledJob("poll", poll, every_s=0.05)]):
        assert poll.wait_for(4)


def test_jobs_on_the_default_executor_never_overlap() -> None:
    lock = threading.Lock()
    active, peak = 0, 0
    hold = threading.Event()  # never set: each run holds the worker for 20 ms

    def body() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        hold.wait(0.02)
        with lock:
            active -= 1

    poll, digest = Runs(body), Runs(body)
    jobs = [ScheduledJob("poll", poll, every_s=0.01), ScheduledJob("digest", digest, every_s=0.01)]

    with running(jobs):
        assert poll.wait_for(3)
        assert digest.wait_for(3)

    assert peak == 1


def test_the_side_executor_runs_beside_a_long_default_job() -> None:
    release = threading.Event()
    poll = Runs(lambda: release.wait(WAIT_S))
    heartbeat = Runs()
    jobs = [
        ScheduledJob("poll", poll, every_s=3600),
        ScheduledJob("heartbeat", heartbeat, every_s=0.02, executor="side"),
    ]

    with running(jobs):
        assert poll.wait_for(1)
        assert heartbeat.wait_for(3)  # while poll still holds the default worker
        release.set()


def test_a_failing_job_is_logged_with_its_traceback_and_runs_again() -> None:
    def broken() -> None:
        raise RuntimeError("bug in poll")

    poll = Runs(broken)

    with (
        capture_logs(processors=[merge_contextvars]) as logs,
        running([ScheduledJob("poll", poll, every_s=0.02)]),
    ):
        assert poll.wait_for(3)

    failures = [entry for entry in logs if entry["event"] == "job_failed"]
    assert len(failures) >= 2
    first = failures[0]
    assert first["log_level"] == "error"
    assert first["exc_info"] is True
    assert first["status"] == "failed"
    assert first["job"] == "poll"
    assert len(first["run_id"]) == 12
    assert failures[0]["run_id"] != failures[1]["run_id"]


def test_an_expected_error_is_a_warning_without_traceback() -> None:
    def locked() -> None:
        raise StoreError("database is locked")

    digest = Runs(locked)

    with (
        capture_logs(processors=[merge_contextvars]) as logs,
        running([ScheduledJob("digest", digest, every_s=3600)]),
    ):
        assert digest.wait_for(1)

    [failure] = [entry for entry in logs if entry["event"] == "job_failed"]
    assert failure["log_level"] == "warning"
    assert "exc_info" not in failure
    assert failure["error"] == "database is locked"
    assert failure["error_type"] == "StoreError"
    assert failure["job"] == "digest"


def test_a_successful_run_logs_one_canonical_line() -> None:
    poll = Runs()

    with (
        capture_logs(processors=[merge_contextvars]) as logs,
        running([ScheduledJob("poll", poll, every_s=3600)]),
    ):
        assert poll.wait_for(1)

    job_lines = [entry for entry in logs if entry.get("job") == "poll"]
    assert [entry["event"] for entry in job_lines] == ["job_started", "job_finished"]
    finished = job_lines[1]
    assert finished["status"] == "ok"
    assert isinstance(finished["duration_ms"], int)
    assert job_lines[0]["run_id"] == finished["run_id"]


def test_on_schedule_gets_the_next_run_times_at_start_and_after_each_scheduling() -> None:
    snapshots: list[dict[str, datetime | None]] = []
    enough, stop = threading.Event(), threading.Event()

    def record(next_runs: Mapping[str, datetime | None]) -> None:
        snapshots.append(dict(next_runs))
        if len(snapshots) >= 4:
            enough.set()

    jobs = [
        ScheduledJob("poll", Runs(), every_s=0.05),
        ScheduledJob("maintenance", Runs(), daily_at_utc="03:30", run_at_start=False),
    ]
    daemon_thread = threading.Thread(
        target=run_until_stopped, args=(jobs, stop), kwargs={"on_schedule": record}
    )
    daemon_thread.start()
    try:
        assert enough.wait(WAIT_S)
    finally:
        stop.set()
        daemon_thread.join(WAIT_S)

    assert all(set(snapshot) == {"poll", "maintenance"} for snapshot in snapshots)
    polls = [when for snapshot in snapshots if (when := snapshot["poll"]) is not None]
    assert len(polls) == len(snapshots)
    assert all(when.utcoffset() == timedelta(0) for when in polls)
    assert max(polls) > min(polls)  # moves forward as runs are scheduled
    assert snapshots[-1]["maintenance"] == snapshots[0]["maintenance"]


def test_the_stop_event_ends_the_daemon_after_the_running_job_finishes() -> None:
    started, finished, stop = threading.Event(), threading.Event(), threading.Event()
    work = threading.Event()  # never set: the job "works" for 0.3 s

    def slow() -> None:
        started.set()
        work.wait(0.3)
        finished.set()

    daemon_thread = threading.Thread(
        target=run_until_stopped, args=([ScheduledJob("poll", slow, every_s=3600)], stop)
    )
    daemon_thread.start()
    assert started.wait(WAIT_S)
    stop_at = time.monotonic()
    stop.set()
    daemon_thread.join(timeout=2.0)

    assert not daemon_thread.is_alive()
    assert finished.is_set()  # not cut mid-way
    assert time.monotonic() - stop_at < 2.0


# A job that reads the schedule while the daemon stops, as the heartbeat does every few
# seconds. Run in its own process: a deadlock would leave threads no test can end.
READ_SCHEDULE_WHILE_STOPPING = """
import threading
from listener.daemon import DaemonScheduler, ScheduledJob

stop, pause = threading.Event(), threading.Event()
scheduler = DaemonScheduler()

def heartbeat():
    stop.set()
    pause.wait(1.0)  # the main thread sees `stop` within 0.25 s and begins the shutdown
    print("read", scheduler.next_runs(), flush=True)

scheduler.run_until_stopped([ScheduledJob("heartbeat", heartbeat, every_s=3600)], stop)
print("stopped", flush=True)
"""


def test_a_job_reading_the_schedule_does_not_hang_the_stop() -> None:
    # APScheduler's shutdown(wait=True) held the lock next_runs() needs while it waited for
    # the job: the daemon logged daemon_stopping and never exited.
    child = subprocess.run(
        [sys.executable, "-c", READ_SCHEDULE_WHILE_STOPPING],
        capture_output=True,
        text=True,
        timeout=30,
        env=CHILD_ENV,
    )

    assert child.returncode == 0, child.stderr
    ours = [line for line in child.stdout.splitlines() if line.startswith(("read", "stopped"))]
    assert ours == ["read {}", "stopped"]  # no run to come once the scheduler has stopped


def test_job_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of every_s and daily_at_utc"):
        ScheduledJob("poll", Runs())
    with pytest.raises(ValueError, match="HH:MM"):
        ScheduledJob("maintenance", Runs(), daily_at_utc="3h30")
    with pytest.raises(ValueError, match="executor"):
        ScheduledJob("heartbeat", Runs(), every_s=60, executor="other")
    with pytest.raises(ValueError, match="unique"):
        DaemonScheduler().start(
            [ScheduledJob("poll", Runs(), every_s=60), ScheduledJob("poll", Runs(), every_s=60)]
        )


# A host that sleeps: the wall clock jumps; on wake, each job runs once (no backlog, no skip).
SLEEP_START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def test_after_a_host_sleep_piled_up_runs_coalesce_into_one() -> None:
    with time_machine.travel(SLEEP_START, tick=True) as traveller:
        poll = Runs()
        scheduler = DaemonScheduler(misfire_grace_s=3600)
        # Not run at start: a wake-up while a run is still finishing would be a max_instances
        # skip, which is another behaviour.
        scheduler.start([ScheduledJob("poll", poll, every_s=600, run_at_start=False)])
        try:
            traveller.shift(timedelta(minutes=55))  # 01:10 ... 01:50 missed, all within grace
            scheduler.wakeup()
            assert poll.wait_for(1)
        finally:
            scheduler.shutdown()  # waits for any backlog run that was submitted

    assert poll.count == 1


def test_after_a_long_host_sleep_late_runs_still_happen() -> None:
    with time_machine.travel(SLEEP_START, tick=True) as traveller:
        maintenance, poll = Runs(), Runs()
        scheduler = DaemonScheduler(misfire_grace_s=3600)
        scheduler.start(
            [
                ScheduledJob("maintenance", maintenance, daily_at_utc="01:30", run_at_start=False),
                # Longer than the grace: its latest missed run (07:00) is 1 h 50 min late.
                ScheduledJob("poll", poll, every_s=7200, run_at_start=False),
            ]
        )
        try:
            traveller.shift(timedelta(hours=7, minutes=50))  # asleep until 08:50
            scheduler.wakeup()
            assert maintenance.wait_for(1)  # 7 h 20 min late, still runs
            assert poll.wait_for(1)
            next_runs = scheduler.next_runs()
        finally:
            scheduler.shutdown()

    assert (maintenance.count, poll.count) == (1, 1)
    assert next_runs["maintenance"] == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
    poll_next = next_runs["poll"]
    assert poll_next is not None
    assert poll_next > SLEEP_START + timedelta(hours=7, minutes=50)


def test_signals_set_the_stop_event_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    try:
        with capture_logs() as logs:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(WAIT_S)
    finally:
        restore()

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert logs == [{"event": "daemon_stopping", "signal": "SIGTERM", "log_level": "info"}]


STACKS_ON_SIGUSR1 = """
import threading
from listener.daemon import install_signal_handlers

stop = threading.Event()
install_signal_handlers(stop)

def wait_here():
    print("ready", flush=True)
    return stop.wait(20)  # gives up by itself: the test never waits for ever

print("stopped" if wait_here() else "timed out", flush=True)
"""


def test_sigusr1_writes_every_threads_stack_and_the_process_runs_on() -> None:
    child = start_script(STACKS_ON_SIGUSR1)
    try:
        assert child.stdout is not None
        assert child.stderr is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGUSR1)
        dump = []
        for line in child.stderr:  # ends at EOF if no dump comes before the child gives up
            dump.append(line)
            if "in wait_here" in line:
                break
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=WAIT_S)
    finally:
        child.kill()
        child.wait(timeout=WAIT_S)

    assert any(line.startswith("Current thread") for line in dump), dump
    assert any("in wait_here" in line for line in dump), dump
    assert out.endswith("stopped\n")  # the dump did not end the process; SIGTERM did


def test_sigint_sets_the_stop_event() -> None:
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(WAIT_S)
    finally:
        restore()


def test_signal_handlers_need_the_main_thread() -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            install_signal_handlers(threading.Event())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join(WAIT_S)

    assert len(errors) == 1


HOLD_LOCK = """
import sys
from pathlib import Path
from listener.daemon import daemon_lock

with daemon_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until killed
"""


def test_a_second_daemon_on_the_same_database_is_refused_until_the_first_dies(
    db_path: Path,
) -> None:
    holder = start_script(HOLD_LOCK, str(db_path))
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()  # returns at "locked", or at EOF if the child failed
        assert line == "locked\n", holder.stderr.read() if holder.stderr else ""

        message = f"another listener daemon is already running on {db_path} (pid {holder.pid})"
        with pytest.raises(ListenerError) as caught, daemon_lock(db_path):
            pass
        assert str(caught.value) == message

        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(timeout=WAIT_S)
        with daemon_lock(db_path):
            assert (db_path.parent / f"{db_path.name}.lock").read_text() == f"{os.getpid()}\n"
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


def test_the_lock_is_released_when_the_block_ends(db_path: Path) -> None:
    with daemon_lock(db_path):
        pass
    with daemon_lock(db_path):
        pass


def test_the_lock_reports_an_unusable_folder(tmp_path: Path) -> None:
    with (
        pytest.raises(ListenerError, match="cannot open the lock file"),
        daemon_lock(tmp_path / "missing" / "listener.db"),
    ):
        pass
