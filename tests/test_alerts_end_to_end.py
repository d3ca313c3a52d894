"""End to end: a fixture feed whose volume about a brand jumps triggers exactly one spike
alert through a real SMTP server on 127.0.0.1, only to the recipients who follow the
watch, and never twice: not on the next check, not after a restart."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from listener.cli import cli
from tests.smtp import SmtpServer

T0 = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)  # the day of the burst; the check is 12:00
QUIET_TOPICS = [
    "Acme opens a new store in Lyon",
    "Acme loyalty programme gets an update",
]
BURST = [
    f"Acme Corp recall: {what}"
    for what in (
        "customers queue at stores",
        "the CEO apologises on television",
        "regulators open an inquiry",
        "shares fall 8% at the opening",
        "unions call for a meeting",
        "competitors seize the moment",
        "a hotline for worried buyers",
        "what we know so far",
        "the timeline of a bad week",
        "insurers assess the cost",
        "retailers pull the products",
        "social media reacts",
    )
]
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
[alerts]
min_count = 5
threshold_sd = 3.0
[[recipients]]
name = "brand"
email = "brand@example.com"
timezone = "Europe/Paris"
watches = ["acme"]
[[recipients]]
name = "quiet"
email = "quiet@example.com"
alerts = false
[[recipients]]
name = "rivals"
email = "rivals@example.com"
watches = ["globex"]
[[watches]]
name = "acme"
kind = "brand"
query = '"acme corp" OR acme'
[[watches]]
name = "globex"
kind = "competitor"
query = "globex"
"""


class Feed:
    """The feed as the server shows it: items published so far (title, published_at)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, datetime]] = []

    def respond(self, request: Request) -> Response:
        entries = "".join(
            f"<item><title>{title}</title><link>https://news.example/{n}</link>"
            f"<guid>n{n}</guid><pubDate>{format_datetime(at, usegmt=True)}</pubDate>"
            f"<description>{title}. More on this story later today.</description></item>"
            for n, (title, at) in enumerate(self.items)
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Retail news</title><link>https://news.example/</link>{entries}"
            "</channel></rss>"
        )
        return Response(body, content_type="application/rss+xml")


@pytest.fixture
def env(tmp_path: Path, smtp: SmtpServer, httpserver: HTTPServer) -> dict[str, Any]:
    feed = Feed()
    httpserver.expect_request("/news").respond_with_handler(feed.respond)
    config = tmp_path / "listener.toml"
    config.write_text(CONFIG.format(port=smtp.port, outbox=tmp_path / "outbox"))
    return {
        "config": config,
        "db": tmp_path / "l.db",
        "smtp": smtp,
        "feed": feed,
        "url": str(httpserver.url_for("/news")),
    }


def run(env: dict[str, Any], at: datetime, *args: str) -> Result:
    with time_machine.travel(at, tick=False):
        result = CliRunner().invoke(
            cli,
            ["--config", str(env["config"]), "--db", str(env["db"]), "--log-format", "json", *args],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    return result


def quiet_week(env: dict[str, Any]) -> Any:
    """The feed added 10 days before T0, with two quiet mentions a day for the 8 days before
    it, polled the day before T0; returns the feed, for the burst to come."""
    feed = env["feed"]
    run(env, T0 - timedelta(days=10), "feeds", "add", env["url"])
    for days_ago in range(1, 9):
        for hour, title in zip((9, 15), QUIET_TOPICS, strict=True):
            published = (T0 - timedelta(days=days_ago)).replace(hour=hour, minute=0)
            feed.items.append((f"{title} ({days_ago} days ago)", published))
    run(env, T0 - timedelta(days=1), "poll", "--all")
    return feed


def test_a_volume_jump_sends_one_alert_to_the_followers(env: dict[str, Any]) -> None:
    feed = quiet_week(env)
    # A normal check after the quiet week: no spike.
    quiet = run(env, T0 - timedelta(days=1), "alerts", "check")
    assert "0 new spikes" in quiet.output
    # The first poll was a day ago: the baselines lean on the feed's archive for a week more.
    warm_until = T0 - timedelta(days=1) + timedelta(days=8)
    assert f"in baseline warm-up until {warm_until:%Y-%m-%d %H:%M}Z (the 7-day" in quiet.output
    assert "warm-up" not in run(env, warm_until, "alerts", "check").output
    assert env["smtp"].inbox.messages == []

    # The burst: twelve stories in the last hours, and the next poll and check.
    for n, title in enumerate(BURST):
        feed.items.append((title, T0 - timedelta(hours=2, minutes=10 * n)))
    run(env, T0, "poll", "--all")
    checked = run(env, T0, "alerts", "check")
    assert "acme (all" in checked.output
    assert "-> brand: sent" in checked.output

    (received,) = env["smtp"].inbox.messages
    assert received.rcpt_tos == ("brand@example.com",)
    message = received.message
    assert message["Subject"].startswith(
        "listener alert · acme: 13 mentions in 24 h (usually 2.0/day)"
    )
    assert message["Message-ID"].startswith("<alert.20261120T12.acme.")
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "WHAT DROVE IT" in text
    assert "acme corp" in text.split("WHAT DROVE IT")[1]
    assert "*Acme Corp* recall" in text
    assert '<span style="background-color:#fef08a;color:#111827;">Acme Corp</span>' in html
    for part in (text, html):  # the footer says which file to change
        assert f"in {env['config']} follows this watch" in " ".join(
            re.sub(r"<[^>]+>", "", part).split()
        )

    # The next check (volume still high) and a restart: the spike is not alerted again.
    again = run(env, T0 + timedelta(hours=1), "alerts", "check")
    assert "0 new spikes" in again.output
    run(env, T0 + timedelta(hours=1, minutes=5), "alerts", "check")
    assert len(env["smtp"].inbox.messages) == 1
    listed = run(env, T0 + timedelta(hours=1), "alerts", "list").output
    assert "OPEN" in listed
    assert "acme -> brand: 2026-11-20T12:30:00Z" in listed


class Hook:
    """A chat incoming webhook on loopback: refuses the first `fail` posts with a 500, keeps
    the JSON of the others."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.posts: list[dict[str, Any]] = []

    def respond(self, request: Request) -> Response:
        if self.fail:
            self.fail -= 1
            return Response("busy", status=500)
        self.posts.append(json.loads(request.get_data()))
        return Response("ok")


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_a_spike_goes_to_the_chat_webhook_once_with_retries(
    env: dict[str, Any], httpserver: HTTPServer, fmt: str
) -> None:
    hook = Hook(fail=1)
    httpserver.expect_request("/hooks/T000/SECRET", method="POST").respond_with_handler(
        hook.respond
    )
    url = httpserver.url_for("/hooks/T000/SECRET")
    config = env["config"].read_text()
    env["config"].write_text(
        config.replace(
            'email = "brand@example.com"\n',
            f'email = "brand@example.com"\nwebhook_url = "{url}"\nwebhook_format = "{fmt}"\n',
        )
    )
    shown = run(env, T0, "check-config").stdout
    assert "SECRET" not in shown  # the webhook's token is a secret
    feed = quiet_week(env)
    for n, title in enumerate(BURST):
        feed.items.append((title, T0 - timedelta(hours=2, minutes=10 * n)))
    run(env, T0, "poll", "--all")
    checked = run(env, T0, "alerts", "check").output
    assert "-> brand: sent" in checked
    assert "-> brand#webhook: failed (webhook " in checked
    assert "HTTP 500" in checked
    # The retry (5 minutes later) posts it; the email is not sent again.
    retried = run(env, T0 + timedelta(minutes=6), "alerts", "check").output
    assert "-> brand#webhook: sent via webhook " in retried
    run(env, T0 + timedelta(hours=1, minutes=5), "alerts", "check")
    assert len(hook.posts) == 1
    assert len(env["smtp"].inbox.messages) == 1
    (post,) = hook.posts
    if fmt == "slack":
        assert post["text"].startswith("*listener alert · acme: 13 mentions in 24 h")
        assert "*Acme Corp* recall" in post["text"]
    else:
        assert post["@type"] == "MessageCard"
        assert post["title"].startswith("listener alert · acme: 13 mentions in 24 h")
        assert "*Acme Corp* recall" in post["text"]
