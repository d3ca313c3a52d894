"""End to end: fixture feeds over HTTP on 127.0.0.1 → poll → classify → store → digest →
a real SMTP server on 127.0.0.1 (aiosmtpd), read back and checked. Then the failure paths:
SMTP down then up, a crash between claim and send, and the daemon as a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from listener.cli import cli
from listener.store import open_store
from tests.conftest import NOW
from tests.smtp import SmtpServer
from tests.stopping import stop_process
from tests.test_alerts_end_to_end import Hook
from tests.test_poll import rss

PARIS = ZoneInfo("Europe/Paris")
# The poll runs at this instant and every digest is sent on the Paris morning after it, so the
# tests hold on any day, at any hour and in any host time zone (the daemon test, a real
# process, uses the real clock and a send time derived from it instead).
POLLED_AT = NOW + timedelta(hours=2)
ITEMS_PUBLISHED = POLLED_AT - timedelta(hours=3)
HOSTILE = "<script>alert(1)</script><b>Acme</b> recrute 200 ingénieurs"

FEED_A = rss(
    "Acme newsroom",
    (
        "Acme hires 200 engineers and opens a training academy",
        "https://acme.example/1",
        "a1",
        "Recruiting, onboarding and pay for the new engineering teams.",
    ),
    (
        "Acme Q3 revenue up 12% as market share grows",
        "https://acme.example/2",
        "a2",
        "Quarterly results beat analyst forecasts; the company raised its guidance.",
    ),
    (
        "Customers report Acme app outage; support apologises",
        "https://acme.example/3",
        "a3",
        "Login failures for two hours; refunds for affected subscribers.",
    ),
    published=ITEMS_PUBLISHED,
)
FEED_B = rss(
    "Le fil RH",
    (
        HOSTILE.replace("<", "&lt;").replace(">", "&gt;"),
        "https://rh.example/1",
        "b1",
        "Offres d&apos;emploi, alternance et marque employeur : le groupe recrute à Lyon.",
    ),
    (
        "Acme hires 200 engineers and opens a training academy",
        "https://acme.example/1?utm_source=rss",
        "b2",
        "Recruiting, onboarding and pay for the new engineering teams.",
    ),
    published=ITEMS_PUBLISHED,
)

CONFIG = """
import_opml_on_init = ""
[poll]
parse_workers = 1
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout_s = 5.0
retries = 1
[digest]
outbox = "{outbox}"
[[recipients]]
name = "hr"
email = "hr@example.com"
timezone = "Europe/Paris"
send_at = "07:30"
functions = ["human_resources", "business_intelligence", "customer_service"]
"""


@pytest.fixture
def env(tmp_path: Path, smtp: SmtpServer, httpserver: HTTPServer) -> dict[str, Any]:
    httpserver.expect_request("/a").respond_with_data(FEED_A, content_type="application/rss+xml")
    httpserver.expect_request("/b").respond_with_data(FEED_B, content_type="application/rss+xml")
    config = tmp_path / "listener.toml"
    config.write_text(CONFIG.format(port=smtp.port, outbox=tmp_path / "outbox"))
    return {
        "config": config,
        "db": tmp_path / "l.db",
        "smtp": smtp,
        "feeds": [str(httpserver.url_for("/a")), str(httpserver.url_for("/b"))],
    }


def cli_run(env: dict[str, Any], *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--config", str(env["config"]), "--db", str(env["db"]), "--log-format", "json", *args],
        catch_exceptions=False,
    )


def next_morning(hour: int = 7, minute: int = 35) -> datetime:
    """The morning after POLLED_AT at hh:mm in Paris, as an aware UTC instant."""
    day = POLLED_AT.astimezone(PARIS).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def poll_now(env: dict[str, Any]) -> None:
    """Add the feeds and poll them at POLLED_AT (the clock ticks on from there)."""
    with time_machine.travel(POLLED_AT, tick=True):
        assert cli_run(env, "feeds", "add", *env["feeds"]).exit_code == 0
        result = cli_run(env, "poll", "--all")
    assert result.exit_code == 0, result.output
    assert "5 new items" in result.output


def test_poll_classify_digest_over_real_smtp(env: dict[str, Any]) -> None:
    poll_now(env)
    with time_machine.travel(next_morning(), tick=False):
        result = cli_run(env, "digest", "--send")
    assert result.exit_code == 0, result.output
    assert "hr " in result.output
    assert ": sent" in result.output
    (received,) = env["smtp"].inbox.messages
    message = received.message
    assert received.rcpt_tos == ("hr@example.com",)
    assert message["To"].addresses[0].username == "hr"
    assert message["Message-ID"].startswith("<digest.")
    assert next_morning().astimezone(PARIS).strftime("%-d %b %Y") in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    # Sections of the functions followed, with the items the model put there.
    assert "Acme hires 200 engineers" in text
    assert "Acme Q3 revenue up 12%" in text
    assert "app outage" in text
    # The same story on two feeds is shown once in its section, with its other source.
    hr_section = text.split("HR & EMPLOYER BRAND")[1].split("CUSTOMER SERVICE")[0]
    assert hr_section.count("Acme hires 200 engineers and opens a training academy") == 1
    assert "Le fil RH" in hr_section
    # Feed markup never reaches the email: parsing keeps plain text, rendering escapes it.
    assert "Acme recrute 200 ingénieurs" in text
    assert "<script" not in html
    assert "alert(1)" not in html
    assert "<b>Acme" not in html

    # Exactly once: a second run (or a restart) sends nothing more.
    with time_machine.travel(next_morning(7, 50), tick=False):
        again = cli_run(env, "digest", "--send")
    assert "already sent" in again.output
    following = (next_morning() + timedelta(days=1)).astimezone(PARIS).date()
    assert f"next at 07:30 Europe/Paris on {following}" in again.output
    assert len(env["smtp"].inbox.messages) == 1


def test_smtp_down_then_up_is_retried_and_sent_once(env: dict[str, Any]) -> None:
    poll_now(env)
    env["smtp"].inbox.refuse_next(2, "451 4.3.0 try again later")  # the send and its retry
    with time_machine.travel(next_morning(), tick=False):
        first = cli_run(env, "digest", "--send")
    assert ": failed" in first.output
    assert env["smtp"].inbox.messages == []
    with time_machine.travel(next_morning(7, 37), tick=False):
        waiting = cli_run(env, "digest", "--send")  # the back-off is not over
    assert "claimed or waiting retry" in waiting.output
    with time_machine.travel(next_morning(7, 45), tick=False):
        status = json.loads(cli_run(env, "status", "--json").output)
        second = cli_run(env, "digest", "--send")
    assert status["digests"][0]["attempts"] == 1
    assert "451" in status["digests"][0]["last_error"]
    assert ": sent" in second.output
    assert len(env["smtp"].inbox.messages) == 1


def test_a_crash_after_the_claim_is_recovered_without_a_double_send(env: dict[str, Any]) -> None:
    poll_now(env)
    morning = next_morning()
    day = morning.astimezone(PARIS).date().isoformat()
    store = open_store(env["db"])  # a sender that claimed the digest, then died
    claim = store.claim_digest(
        "hr",
        day,
        period=(morning - timedelta(days=1), morning),
        now=morning,
        stale_before=morning - timedelta(minutes=15),
    )
    store.close()
    assert claim is not None
    with time_machine.travel(morning + timedelta(minutes=5), tick=False):
        assert "claimed or waiting retry" in cli_run(env, "digest", "--send").output
    assert env["smtp"].inbox.messages == []
    with time_machine.travel(morning + timedelta(minutes=20), tick=False):
        assert ": sent" in cli_run(env, "digest", "--send").output
    with time_machine.travel(morning + timedelta(minutes=40), tick=False):
        assert "already sent" in cli_run(env, "digest", "--send").output
    assert len(env["smtp"].inbox.messages) == 1


def test_preview_sends_and_claims_nothing(env: dict[str, Any], tmp_path: Path) -> None:
    poll_now(env)
    tomorrow = next_morning().astimezone(PARIS).date().isoformat()
    out = tmp_path / "d.html"
    result = cli_run(env, "digest", "--preview", "--date", tomorrow, "--out", str(out))
    assert result.exit_code == 0
    assert "Acme hires 200 engineers" in result.stdout
    assert "<html" in out.read_text().lower()
    assert env["smtp"].inbox.messages == []
    conn = sqlite3.connect(env["db"])
    assert conn.execute("SELECT count(*) FROM digests").fetchone()[0] == 0


def test_a_test_digest_goes_out_now_and_leaves_the_day_alone(env: dict[str, Any]) -> None:
    poll_now(env)
    # An hour after the poll: the items were stored today, so yesterday's digest (due since
    # 07:30) would show none of them; the test digest shows the last 24 hours.
    with time_machine.travel(POLLED_AT + timedelta(hours=1), tick=False):
        result = cli_run(env, "digest", "--send", "--test", "--recipient", "hr")
    assert result.exit_code == 0, result.output
    assert "hr: test digest of the last 24 hours sent, 5 items via smtp" in result.output
    today = POLLED_AT.astimezone(PARIS).date()
    assert f"the daily digest is unaffected (next: due now ({today}))" in result.output
    (received,) = env["smtp"].inbox.messages
    test_message = received.message
    assert test_message["Subject"].startswith("[test] listener · ")
    assert test_message["X-Listener-Test"] == "yes"
    text = test_message.get_body(preferencelist=("plain",)).get_content()
    assert "Acme hires 200 engineers" in text
    conn = sqlite3.connect(env["db"])
    assert conn.execute("SELECT count(*) FROM digests").fetchone()[0] == 0  # nothing claimed
    # The real digest still goes out, with its own Message-ID.
    with time_machine.travel(next_morning(), tick=False):
        assert ": sent" in cli_run(env, "digest", "--send").output
    assert len(env["smtp"].inbox.messages) == 2
    real = env["smtp"].inbox.messages[1].message
    assert real["Message-ID"] != test_message["Message-ID"]
    assert not real["Subject"].startswith("[test]")


def test_the_first_digest_after_install_covers_what_was_stored_since_the_first_poll(
    env: dict[str, Any],
) -> None:
    poll_now(env)  # a new install: the first poll, at 11:00 in Paris
    # Today's 07:30 digest (about yesterday, when nothing was stored) is still due: it
    # covers what the first poll stored instead of an empty "yesterday".
    with time_machine.travel(POLLED_AT + timedelta(hours=1), tick=False):
        first = cli_run(env, "digest", "--send")
    assert ": sent, 5 items via smtp" in first.output
    # The next morning's digest starts where that one ended: nothing is shown twice.
    with time_machine.travel(next_morning(), tick=False):
        second = cli_run(env, "digest", "--send")
    assert ": sent, 0 items via smtp" in second.output
    assert len(env["smtp"].inbox.messages) == 2


def test_a_first_digest_in_the_same_second_as_the_first_poll_shows_its_items(
    env: dict[str, Any],
) -> None:
    """The daemon runs its first digest right after its first poll: stored times have whole
    seconds, so the period must not end at the very second the items carry."""
    poll_now(env)
    conn = sqlite3.connect(env["db"])
    (stored_at,) = conn.execute("SELECT max(fetched_at) FROM items").fetchone()
    conn.close()
    same_second = datetime.fromisoformat(stored_at) + timedelta(milliseconds=400)
    with time_machine.travel(same_second, tick=False):
        first = cli_run(env, "digest", "--send")
    assert ": sent, 5 items via smtp" in first.output
    with time_machine.travel(next_morning(), tick=False):
        second = cli_run(env, "digest", "--send")
    assert ": sent, 0 items via smtp" in second.output  # and none of them twice


def test_test_digest_needs_send_and_a_recipient(env: dict[str, Any]) -> None:
    result = cli_run(env, "digest", "--send", "--test")
    assert result.exit_code == 2
    assert "--test goes with --send and --recipient NAME" in result.output


# -- the daemon as a real process ---------------------------------------------------------


def start_daemon(env: dict[str, Any], config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "listener",
            "--config",
            str(config),
            "--db",
            str(env["db"]),
            "--log-format",
            "json",
            "run",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Any, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)  # polling a file/database written by another process
    return False


def stored_items(db: Path) -> int:
    try:
        conn = sqlite3.connect(db)
        count = int(conn.execute("SELECT count(*) FROM items").fetchone()[0])
        conn.close()
    except sqlite3.Error:
        return 0
    return count


def heartbeat_pid(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(db)
        row = conn.execute("SELECT pid FROM daemon WHERE stopped_at IS NULL").fetchone()
        conn.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


@pytest.mark.slow
def test_daemon_polls_sends_stops_cleanly_and_survives_kill_9(
    env: dict[str, Any], tmp_path: Path
) -> None:
    send_at = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    config = tmp_path / "daemon.toml"
    config.write_text(
        env["config"]
        .read_text()
        .replace('timezone = "Europe/Paris"', 'timezone = "UTC"')
        .replace('send_at = "07:30"', f'send_at = "{send_at}"\nsend_when_empty = true')
        .replace("[digest]", "[daemon]\nheartbeat_s = 1\n[digest]")
    )
    assert cli_run(env, "feeds", "add", *env["feeds"]).exit_code == 0
    daemon = start_daemon(env, config)
    try:
        assert wait_for(lambda: len(env["smtp"].inbox.messages) == 1), "no digest sent"
        assert wait_for(lambda: heartbeat_pid(env["db"]) == daemon.pid)
        # A second daemon on the same database refuses to start.
        second = start_daemon(env, config)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert "already running" in err
        status = cli_run(env, "status")
        assert "running (pid" in status.output
        # The daemon says which model it loaded; it is the file's, so status says nothing.
        assert "  model:" not in status.output
        report = json.loads(cli_run(env, "status", "--json").output)
        assert report["daemon"]["model_version"] == report["model_file"]["version"] is not None
        # The first poll is done (SIGTERM would cut a poll in flight short, by design), so
        # every later count is what this run stored.
        assert wait_for(lambda: stored_items(env["db"]) == 5)
        # SIGTERM: a clean stop within seconds.
        _, log_text = stop_process(daemon, signal.SIGTERM, timeout_s=30)
        assert daemon.returncode == 0
        (starting,) = [
            json.loads(line) for line in log_text.splitlines() if '"daemon_starting"' in line
        ]
        assert starting["config"] == f"{config} (given with --config)"
        assert "stopped" in cli_run(env, "status").output
        # kill -9, then a restart: the lock is free, nothing is sent twice.
        daemon = start_daemon(env, config)
        assert wait_for(lambda: heartbeat_pid(env["db"]) == daemon.pid)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
        daemon = start_daemon(env, config)
        assert wait_for(lambda: heartbeat_pid(env["db"]) == daemon.pid)
        conn = sqlite3.connect(env["db"])
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 5
        assert (
            conn.execute("SELECT count(*) FROM digests WHERE sent_at IS NOT NULL").fetchone()[0]
            == 1
        )
        conn.close()
        assert len(env["smtp"].inbox.messages) == 1
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)


def test_the_digest_summary_goes_to_the_chat_webhook_once(
    env: dict[str, Any], httpserver: HTTPServer
) -> None:
    hook = Hook(fail=1)
    httpserver.expect_request("/hooks/T1/SECRET", method="POST").respond_with_handler(hook.respond)
    url = httpserver.url_for("/hooks/T1/SECRET")
    env["config"].write_text(
        env["config"]
        .read_text()
        .replace(
            'send_at = "07:30"\n',
            f'send_at = "07:30"\nwebhook_url = "{url}"\nwebhook_digest = true\n',
        )
    )
    poll_now(env)
    with time_machine.travel(next_morning(), tick=False):
        first = cli_run(env, "digest", "--send")
    lines = dict(line.split(" ", 1) for line in first.output.splitlines() if " 20" in line)
    assert ": sent" in lines["hr"], first.output  # the email went
    assert ": failed" in lines["hr#webhook"], first.output  # the chat said 500
    with time_machine.travel(next_morning(7, 45), tick=False):
        second = cli_run(env, "digest", "--send")
    with time_machine.travel(next_morning(8, 30), tick=False):
        cli_run(env, "digest", "--send")
    assert "hr#webhook" in second.output
    (post,) = hook.posts
    text = post["text"]
    assert text.startswith("*listener · ")
    assert "Acme hires 200 engineers" in text  # the top HR story, in one paragraph
    assert "The whole digest went to hr@example.com" in text
    assert len(env["smtp"].inbox.messages) == 1, "the email is not sent again"
