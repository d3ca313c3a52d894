"""Fault injection through the real CLI, as real processes, against a hostile loopback server.

Each case is one defect a daemon watched by nobody at 3 a.m. cannot have: a server that
trickles its headers on a kept-alive connection, a body cut off by our own deadline, a signal
in the middle of a poll. Every case checks that the process ends within its deadline, that the
other feeds of the poll are stored, and that the database is intact.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from listener.config import parse_settings
from listener.domain import Fetched, ParsedFeed, Watch
from listener.jobs.poll import poll_feeds
from listener.jobs.services import Services
from listener.jobs.watches import backfill_watches
from listener.store import open_store
from tests.conftest import NOW
from tests.hostile import Hostile, hostile_server, ok, silent, trickle_headers, unterminated_body
from tests.polls import apply_poll
from tests.stopping import stop_process
from tests.test_poll import rss
from tests.test_poll_job import FakeFetcher, two_items
from tests.test_store import make_item, poll

pytestmark = pytest.mark.slow

# Short deadlines keep the suite fast; the defects do not depend on their length.
CONFIG = """
import_opml_on_init = ""
[poll]
connect_timeout_s = 1.0
read_timeout_s = {read_s}
total_timeout_s = {total_s}
parse_workers = {workers}
{extra}
"""


def feed(name: str) -> bytes:
    return rss(f"{name} news", (f"{name} hires", f"https://{name}.example/1", f"{name}-1", "Jobs."))


def listener(
    tmp_path: Path, workers: int = 1, extra: str = "", read_s: float = 1.0, total_s: float = 2.0
) -> list[str]:
    config = tmp_path / "listener.toml"
    config.write_text(CONFIG.format(workers=workers, extra=extra, read_s=read_s, total_s=total_s))
    db = tmp_path / "l.db"
    return [sys.executable, "-m", "listener", "--config", str(config), "--db", str(db)]


def run(base: list[str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*base, "--log-format", "json", *args], capture_output=True, text=True, timeout=timeout_s
    )


def feeds_table(tmp_path: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT feeds.url, feeds.last_status, feeds.last_error, count(items.id) AS items"
        " FROM feeds LEFT JOIN items ON items.feed_id = feeds.id GROUP BY feeds.id"
    ).fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    return {row["url"]: dict(row) for row in rows}


def test_headers_trickled_on_a_reused_connection_end_at_the_deadline(tmp_path: Path) -> None:
    routes = {"/a": ok(feed("a")), "/b": ok(feed("b")), "/slow": trickle_headers(0.2)}
    with hostile_server(routes) as server:
        base = listener(tmp_path)
        urls = [server.url("/a"), server.url("/b"), server.url("/slow")]
        assert run(base, "feeds", "add", *urls).returncode == 0
        started = time.monotonic()
        result = run(base, "poll", "--all")
        took = time.monotonic() - started
        assert server.reused("/slow"), "the trickle must come on a kept-alive connection"
    # The header block alone would take 200 s; total_timeout_s is 2 s.
    assert took < 15, (took, result.stdout)
    assert result.returncode == 0, result.stderr
    rows = feeds_table(tmp_path)
    assert rows[server.url("/a")]["items"] == rows[server.url("/b")]["items"] == 1
    slow = rows[server.url("/slow")]
    assert (slow["last_status"], slow["items"]) == ("failed", 0)
    assert "2s total deadline" in slow["last_error"]


def test_a_body_without_length_cut_off_at_the_deadline_is_a_timeout(tmp_path: Path) -> None:
    # A complete-looking feed, then spaces forever: cutting it off must not store it as ok.
    routes = {"/a": ok(feed("a")), "/cut": unterminated_body(feed("cut"), 0.1)}
    with hostile_server(routes) as server:
        base = listener(tmp_path)
        assert run(base, "feeds", "add", server.url("/a"), server.url("/cut")).returncode == 0
        result = run(base, "poll", "--all")
    assert result.returncode == 0, result.stderr
    rows = feeds_table(tmp_path)
    assert rows[server.url("/a")]["items"] == 1
    cut = rows[server.url("/cut")]
    assert (cut["last_status"], cut["items"]) == ("failed", 0)
    assert "deadline" in cut["last_error"]


def test_private_addresses_are_refused_when_the_setting_says_so(tmp_path: Path) -> None:
    with hostile_server({"/a": ok(feed("a"))}) as server:
        base = listener(tmp_path, extra="refuse_private_addresses = true")
        assert run(base, "feeds", "add", server.url("/a")).returncode == 0
        result = run(base, "poll", "--all")
        assert server.requests["/a"] == 0, "no byte may reach a refused address"
    assert result.returncode == 0, result.stderr
    row = feeds_table(tmp_path)[server.url("/a")]
    assert row["last_status"] == "failed"
    assert "127.0.0.1, a non-public address" in row["last_error"]
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("kind") == "refused" for e in logs if e["event"] == "feed_polled")


def wait_for_requests(server: Any, path: str, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while server.requests[path] < count:
        assert time.monotonic() < deadline, f"{path} was requested {server.requests[path]} times"
        time.sleep(0.05)  # the server counts from its own threads


@contextmanager
def one_prompt_and_seven_hung(tmp_path: Path) -> Iterator[tuple[Hostile, list[str]]]:
    """One feed that answers and seven that never do, on one host (max_per_host 2), added to a
    database whose fetch deadline is 30 s: a stop that waited for them would take minutes."""
    routes: dict[str, Any] = {"/a": ok(feed("a"))}
    routes.update({f"/hang{n}": silent() for n in range(7)})
    with hostile_server(routes) as server:
        base = listener(tmp_path, read_s=30.0, total_s=30.0)
        urls = [server.url("/a"), *(server.url(f"/hang{n}") for n in range(7))]
        assert run(base, "feeds", "add", *urls).returncode == 0
        yield server, base


def start(base: list[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*base, "--log-format", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_poll_at_once_and_keeps_what_was_fetched(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with one_prompt_and_seven_hung(tmp_path) as (server, base):
        poll = start(base, "poll", "--all")
        # max_per_host is 2: /hang1 is asked for only once /a's fetch has ended.
        wait_for_requests(server, "/hang1", 1)
        started = time.monotonic()
        out, err = stop_process(poll, sig, timeout_s=20)
        took = time.monotonic() - started
    assert took < 10, took  # the fetches in flight had 30 s left
    assert poll.returncode == 130, err
    assert "stopped by a signal" in err
    assert "1 new item," in out, "the summary is printed"
    rows = feeds_table(tmp_path)
    assert rows[server.url("/a")]["items"] == 1, "what was fetched before the signal is saved"
    hung = [rows[server.url(f"/hang{n}")] for n in range(7)]
    # Nothing is held against a feed whose fetch we cut short ourselves: it stays due.
    assert all(row["last_status"] is None for row in hung), hung


# Runs listener's CLI with a thread that, once told on stdin, sends SIGTERM to itself: the
# kernel may hand a process's signal to any of its threads, and Python runs the handler only
# in the main thread, when it next runs Python code.
SIGNAL_FROM_ANOTHER_THREAD = """
import signal, sys, threading
from listener.cli.main import main

def shoot() -> None:
    sys.stdin.readline()
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=shoot, daemon=True).start()
sys.argv = ["listener", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    ("args", "returncode"), [(("poll", "--all"), 130), (("run",), 0)], ids=["poll", "daemon"]
)
def test_a_signal_taken_by_another_thread_still_stops_at_once(
    tmp_path: Path, args: tuple[str, ...], returncode: int
) -> None:
    with one_prompt_and_seven_hung(tmp_path) as (server, base):
        command = [sys.executable, "-c", SIGNAL_FROM_ANOTHER_THREAD, *base[3:]]
        process = subprocess.Popen(
            [*command, "--log-format", "json", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_requests(server, "/hang1", 1, timeout_s=60)
            started = time.monotonic()
            _, err = process.communicate("now\n", timeout=70)
            took = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
    # A main thread asleep in a bare wait stayed there until the hung fetches' 30 s deadline
    # (the poll), or until the scheduler's next 60 s wakeup (the daemon).
    assert took < 10, took
    assert process.returncode == returncode, err


def test_sigterm_stops_the_daemon_in_the_middle_of_a_poll(tmp_path: Path) -> None:
    with one_prompt_and_seven_hung(tmp_path) as (server, base):
        daemon = start(base, "run")
        try:
            # max_per_host is 2: /hang1 is asked for only once /a's fetch has ended.
            wait_for_requests(server, "/hang1", 1, timeout_s=60)
            started = time.monotonic()
            _, err = stop_process(daemon, signal.SIGTERM, timeout_s=30)
            took = time.monotonic() - started
        finally:
            if daemon.poll() is None:
                daemon.kill()
    assert took < 10, took  # the fetches in flight had 30 s left
    assert daemon.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "poll_stopped" in events
    assert events[-1] == "daemon_stopped"
    assert feeds_table(tmp_path)[server.url("/a")]["items"] == 1


def test_a_daemon_killed_in_the_middle_of_a_poll_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    with one_prompt_and_seven_hung(tmp_path) as (server, base):
        daemon = start(base, "run")
        try:
            # /a is fetched (and parsed) once /hang1 is asked for; the hung ones hold the poll.
            wait_for_requests(server, "/hang1", 1, timeout_s=60)
            daemon.send_signal(signal.SIGKILL)  # no cleanup code runs
            daemon.wait(timeout=10)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        rows = feeds_table(tmp_path)  # PRAGMA integrity_check passes
        assert rows[server.url("/a")]["items"] in (0, 1)  # written in its batch, or not at all
        hung = [server.url(f"/hang{n}") for n in range(7)]
        assert run(base, "feeds", "remove", *hung).returncode == 0
        for _ in range(2):  # the restart's poll, then one more: /a's item exactly once
            result = run(base, "poll", "--all")
            assert result.returncode == 0, result.stderr
            assert feeds_table(tmp_path)[server.url("/a")]["items"] == 1
    conn = sqlite3.connect(tmp_path / "l.db")
    assert conn.execute("SELECT count(*), count(DISTINCT key) FROM items").fetchone() == (1, 1)
    assert conn.execute("SELECT count(*) FROM items_fts").fetchone() == (1,)
    conn.close()


HAMMER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from listener.store import open_store
store = open_store(Path(sys.argv[1]), busy_timeout_s=10)
print("ready", flush=True)
until = time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    now = datetime.now(UTC)
    store.record_heartbeat(pid=1, host="h", version="v", started_at=now, now=now, next_runs={})
"""


def test_writes_wait_for_the_lock_instead_of_failing_at_once(tmp_path: Path) -> None:
    """A CLI write while the daemon's heartbeat writes: the write waits, it never fails with
    'database is locked' after a millisecond (a deferred BEGIN read first, then could not
    upgrade its lock)."""
    db = tmp_path / "l.db"
    open_store(db).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", HAMMER, str(db), "4"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        store = open_store(db, busy_timeout_s=10)
        calls = 0
        until = time.monotonic() + 3
        now = datetime.now(UTC)
        while time.monotonic() < until:  # add_feed reads, then writes, in one transaction
            store.add_feed(f"https://feeds.example/{calls}", now=now, tags=["x"])
            calls += 1
        store.close()
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert calls > 50
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM feeds").fetchone()[0] == calls
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB filesystem (tmpfs), so a write can fail with 'database or disk is full'."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def big_feed(name: str, items: int) -> bytes:
    filler = " ".join(f"{name}{n} market signal" for n in range(300))  # ~5 KB per item
    return rss(
        f"{name} wire",
        *(
            (f"{name} item {n}", f"https://{name}.example/{n}", f"{name}-{n}", filler)
            for n in range(items)
        ),
    )


def test_a_full_disk_fails_that_feed_and_the_poll_goes_on(tmp_path: Path, small_disk: Path) -> None:
    routes = {"/a": ok(feed("a")), "/huge": ok(big_feed("huge", 400)), "/c": ok(feed("c"))}
    with hostile_server(routes) as server:
        config = tmp_path / "listener.toml"
        config.write_text(CONFIG.format(workers=1, extra="", read_s=1.0, total_s=5.0))
        db = small_disk / "l.db"
        base = [sys.executable, "-m", "listener", "--config", str(config), "--db", str(db)]
        urls = [server.url("/a"), server.url("/huge"), server.url("/c")]
        assert run(base, "feeds", "add", *urls).returncode == 0
        # Leave about 1 MB free: the small feeds fit, the 2 MB one does not.
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        (small_disk / "filler").write_bytes(b"\0" * (free - 1024 * 1024))
        result = run(base, "poll", "--all")
        (small_disk / "filler").unlink()
    assert result.returncode == 1, result.stderr
    assert "polled 3 feeds" in result.stdout, "the summary is printed"
    assert "could not save 1 of 3 feeds" in result.stderr
    conn = sqlite3.connect(db)
    rows = dict(
        conn.execute(
            "SELECT feeds.url, count(items.id) FROM feeds"
            " LEFT JOIN items ON items.feed_id = feeds.id GROUP BY feeds.id"
        ).fetchall()
    )
    assert rows == {server.url("/a"): 1, server.url("/huge"): 0, server.url("/c"): 1}
    status, error = conn.execute(
        "SELECT last_status, last_error FROM feeds WHERE url = ?", [server.url("/huge")]
    ).fetchone()
    assert status == "failed"
    assert "cannot save" in error
    assert "full" in error
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- parse workers: real processes that die, run out of memory or out of time -------------


def parse_or_misbehave(feed_id: int, fetched: Fetched) -> ParsedFeed:
    """two_items, except for the feeds whose URL says how to misbehave (runs in a worker)."""
    if fetched.url.endswith("/die"):
        os._exit(3)  # a worker killed mid-parse (OOM killer, segfault)
    if fetched.url.endswith("/hog"):
        hog = bytearray(1024 * 1024 * 1024)  # beyond parse_memory_mb
        return ParsedFeed(title=str(len(hog)), site_url=None, items=())
    if fetched.url.endswith("/slow"):
        time.sleep(30)
    return two_items(feed_id, fetched)


def test_a_parse_worker_that_dies_fails_its_feed_only(tmp_path: Path) -> None:
    settings = parse_settings(
        {"poll": {"parse_workers": 2, "parse_memory_mb": 64, "parse_timeout_s": 1.0}}, {}
    )
    store = open_store(tmp_path / "l.db")
    names = ["a", "die", "b", "hog", "c", "slow", "d"]
    for name in names:
        store.add_feed(f"https://x.example/{name}", now=NOW)
    services = Services(settings, store, FakeFetcher({}), parse=parse_or_misbehave)
    results = {r.url.rsplit("/", 1)[1]: r for r in poll_feeds(services, NOW, all_feeds=True)}
    assert sorted(results) == sorted(names)
    for name in ("a", "b", "c", "d"):
        assert (results[name].status, results[name].new) == ("ok", 2), results[name]
    assert results["die"].status == "failed"
    assert "parse worker died" in (results["die"].error or "")
    assert "parse worker's 64 MB" in (results["hog"].error or "")
    assert "not parsed within 1 s" in (results["slow"].error or "")
    # The failures are recorded (with their back-off), so the next poll does not die again.
    rows = dict(store.db.execute("SELECT url, last_status FROM feeds").fetchall())
    assert rows["https://x.example/die"] == "failed"
    store.close()


# --- hostile text: formulas, huge fields, broken URLs --------------------------------------


def test_formulas_are_neutralised_in_csv_and_huge_titles_are_capped(tmp_path: Path) -> None:
    hostile = rss(
        "Formulas",
        ('=HYPERLINK("https://evil.example","click")', "https://f.example/1", "f1", "@SUM(A1)"),
        ("-2+3", "https://f.example/2", "f2", "+cmd|' /C calc'!A0"),
        ("Huge " + "word " * 400_000, "https://f.example/3", "f3", "A 2 MB title."),
    )
    with hostile_server({"/f": ok(hostile)}) as server:
        base = listener(tmp_path)
        assert run(base, "feeds", "add", server.url("/f")).returncode == 0
        assert run(base, "poll", "--all").returncode == 0
    export = run(base, "export", "--format", "csv")
    assert export.returncode == 0
    cells = export.stdout
    assert "'=HYPERLINK(" in cells
    assert "'@SUM(A1)" in cells
    assert "'-2+3" in cells
    assert "'+cmd|" in cells
    assert len(cells) < 20_000, "the 2 MB title is stored capped"
    jsonl = [json.loads(line) for line in run(base, "export").stdout.splitlines()]
    assert {row["title"] for row in jsonl} >= {'=HYPERLINK("https://evil.example","click")'}
    assert max(len(row["title"]) for row in jsonl) <= 1_000


@pytest.mark.parametrize("url", ["http://[::1", "http://a.example/feed\nX-Evil: 1"])
def test_a_broken_url_is_one_clear_message(tmp_path: Path, url: str) -> None:
    base = listener(tmp_path)
    added = run(base, "feeds", "add", url, "https://ok.example/feed")
    assert added.returncode == 2
    assert "not an http(s) URL" in added.stderr
    assert "Traceback" not in added.stderr
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<opml version="2.0"><body>'
        f'<outline text="bad" xmlUrl="{url.replace(chr(10), "&#10;")}"/>'
        '<outline text="good" xmlUrl="https://ok.example/feed"/></body></opml>'
    )
    imported = run(base, "feeds", "import", str(opml))
    assert "Traceback" not in imported.stderr
    assert "1 feed added" in imported.stdout + imported.stderr
    config = tmp_path / "bad.toml"
    config.write_text(f"[[feeds]]\nurl = {json.dumps(url)}\n")
    checked = run([sys.executable, "-m", "listener", "--config", str(config)], "check-config")
    assert checked.returncode == 1
    assert "feeds[0].url: not an http(s) URL" in checked.stderr


def test_one_daemon_per_database_even_through_a_symlink(tmp_path: Path) -> None:
    base = listener(tmp_path)
    assert run(base, "init").returncode == 0
    (tmp_path / "alias.db").symlink_to(tmp_path / "l.db")
    first = subprocess.Popen(
        [*base, "--log-format", "json", "run"], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "l.db.lock").exists() or not (tmp_path / "l.db.lock").read_text():
            assert time.monotonic() < deadline
            assert first.poll() is None
            time.sleep(0.1)  # the daemon writes its pid into the lock file once it holds it
        alias = [*base[:-1], str(tmp_path / "alias.db")]
        second = run(alias, "run", timeout_s=60)
        assert second.returncode == 1
        assert "already running" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_a_missing_or_read_only_folder_is_named(tmp_path: Path, small_disk: Path) -> None:
    missing = run([*listener(tmp_path)[:-1], str(tmp_path / "nope" / "l.db")], "init")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    read_only = run([*listener(tmp_path)[:-1], str(small_disk / "l.db")], "init")
    assert read_only.returncode == 1
    assert "is read-only" in read_only.stderr


def test_a_stop_pauses_a_watch_backfill_between_batches(tmp_path: Path) -> None:
    store = open_store(tmp_path / "l.db")
    store.add_feed("https://a.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    items = [make_item(source.id, n, title=f"Acme news {n}") for n in range(1, 31)]
    apply_poll(store, poll(source.id), items)
    store.save_watch(Watch("acme", "acme"), origin="cli", now=NOW)
    stop = threading.Event()
    stop.set()
    assert backfill_watches(store, batch_size=10, stop=stop) == 0
    assert store.list_watches()[0].matched_through == 0, "nothing skipped: resumes from here"
    assert backfill_watches(store, batch_size=10) == 30
    assert store.list_watches()[0].matched_through == store.max_item_id()
    store.close()
