"""End to end through the CLI: real HTTP servers on 127.0.0.1, a SQLite file under tmp_path.

Every kind of bad input ends as a recorded state on its feed and one `feed_polled` log line,
while the other feeds are polled normally and the command exits 0.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from listener.cli import cli
from tests.conftest import NOW
from tests.servers import raw_server

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{title}</title><link>https://brand.example/</link>
{items}
</channel></rss>"""
ITEM = """<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>
<pubDate>{published}</pubDate>
<description>&lt;p&gt;{summary}&lt;/p&gt;</description></item>"""
# Two days before the suite's pinned clock; tests that read the clock pass their own date.
PUBLISHED = NOW - timedelta(days=2)


def rss(title: str, *items: tuple[str, str, str, str], published: datetime = PUBLISHED) -> bytes:
    """An RSS 2.0 body whose items are all dated `published`."""
    date = format_datetime(published.astimezone(UTC), usegmt=True)
    body = "".join(
        ITEM.format(title=t, link=link, guid=g, summary=s, published=date)
        for t, link, g, s in items
    )
    return RSS.format(title=title, items=body).encode()


GOOD = rss(
    "Acme newsroom",
    ("Acme hires 200 engineers in Lyon", "https://acme.example/a1", "a1", "Recruiting drive."),
    ("Acme Q3 results", "https://acme.example/a2", "a2", "Revenue up 12%."),
    ("Acme support portal", "https://acme.example/a3", "a3", "New help centre for clients."),
)
MOVED_TARGET = rss(
    "Globex blog",
    ("Globex launches a campaign", "https://globex.example/1", "g1", "Spring advertising."),
)
BROKEN_BUT_USABLE = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Broken</title>'
    b"<item><title>Still readable &nbsp; here</title><link>https://broken.example/1</link>"
    b"<description>An unescaped & ampersand</description></item>"
    b"<item><title>Second</title><link>https://broken.example/2</link></item>"
)
LATIN1_DECLARED_UTF8 = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Presse</title>'
    "<item><title>Grève à la SNCF : les contrôleurs réclament une prime</title>"
    "<link>https://presse.example/greve</link></item></channel></rss>"
).encode("latin-1")
NO_IDS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Bare</title>'
    b"<item><description>Only a summary, no id, no link, no title.</description></item>"
    b"<item><title>Only a title</title></item>"
    b"<item></item>"
    b"</channel></rss>"
)
HTML = b"<!DOCTYPE html><html><head><title>Shop</title></head><body><p>Hello</p></body></html>"

CONFIG = """
import_opml_on_init = ""
[poll]
connect_timeout_s = 1.0
read_timeout_s = 0.5
total_timeout_s = 1.5
max_body_mb = 0.25
parse_workers = {workers}
"""


def json_logs(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def feeds(httpserver: HTTPServer) -> Iterator[dict[str, str]]:
    """name → URL for one feed of each kind of good and bad input."""
    s = httpserver

    def at(path: str) -> str:
        return str(s.url_for(path))

    s.expect_request("/good").respond_with_data(GOOD, content_type="application/rss+xml")
    s.expect_request("/not-found").respond_with_data("nope", status=404)
    s.expect_request("/gone").respond_with_data("", status=410)
    s.expect_request("/error").respond_with_data("oops", status=500)
    s.expect_request("/old").respond_with_data("", status=301, headers={"Location": at("/new")})
    s.expect_request("/new").respond_with_data(MOVED_TARGET, content_type="application/rss+xml")
    s.expect_request("/loop-a").respond_with_data("", status=302, headers={"Location": "/loop-b"})
    s.expect_request("/loop-b").respond_with_data("", status=302, headers={"Location": "/loop-a"})
    s.expect_request("/throttled").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7200"}
    )
    s.expect_request("/huge").respond_with_data(b"<rss>" + b" " * 400_000 + b"</rss>")
    bomb = gzip.compress(b"\0" * 20_000_000)
    s.expect_request("/bomb").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"
    )
    s.expect_request("/broken").respond_with_data(BROKEN_BUT_USABLE)
    s.expect_request("/garbage").respond_with_data(b"<rss><channel><item><title>x</ti", status=200)
    s.expect_request("/html").respond_with_data(HTML, content_type="text/html")
    s.expect_request("/latin1").respond_with_data(
        LATIN1_DECLARED_UTF8, content_type="application/rss+xml; charset=utf-8"
    )
    s.expect_request("/empty").respond_with_data(b"", content_type="application/rss+xml")
    s.expect_request("/no-ids").respond_with_data(NO_IDS, content_type="application/rss+xml")
    with ExitStack() as stack:
        hang = stack.enter_context(raw_server("hang"))
        trickle = stack.enter_context(raw_server("trickle"))
        names = [
            "good",
            "not-found",
            "gone",
            "error",
            "old",
            "loop-a",
            "throttled",
            "huge",
            "bomb",
            "broken",
            "garbage",
            "html",
            "latin1",
            "empty",
            "no-ids",
        ]
        urls = {name: at(f"/{name}") for name in names}
        urls["hang"] = f"{hang}/feed"
        urls["trickle"] = f"{trickle}/feed"
        yield urls


# name → (feeds.last_status, items stored, a word expected in last_error or None)
EXPECTED: dict[str, tuple[str, int, str | None]] = {
    "good": ("ok", 3, None),
    "not-found": ("failed", 0, "404"),
    "gone": ("gone", 0, "410"),
    "error": ("failed", 0, "500"),
    "old": ("ok", 1, None),
    "loop-a": ("failed", 0, "redirect"),
    "throttled": ("failed", 0, "429"),
    "huge": ("failed", 0, "larger than"),
    "bomb": ("failed", 0, "larger than"),
    "broken": ("ok", 2, None),
    "garbage": ("failed", 0, "no usable items"),
    "html": ("failed", 0, "HTML"),
    "latin1": ("ok", 1, None),
    "empty": ("failed", 0, "empty"),
    "no-ids": ("ok", 2, None),
    "hang": ("failed", 0, "timed out"),
    "trickle": ("failed", 0, "deadline"),
}


def run(tmp_path: Path, *args: str, workers: int = 2) -> Any:
    config = tmp_path / "listener.toml"
    config.write_text(CONFIG.format(workers=workers))
    runner = CliRunner()
    return runner.invoke(
        cli,
        ["--config", str(config), "--db", str(tmp_path / "l.db"), "--log-format", "json", *args],
        catch_exceptions=False,
    )


def feed_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT feeds.*, (SELECT count(*) FROM items WHERE feed_id = feeds.id) AS n FROM feeds"
    ).fetchall()
    conn.close()
    return {row["url"]: dict(row) for row in rows}


def test_bad_input_is_recorded_per_feed_and_never_stops_the_others(
    tmp_path: Path, feeds: dict[str, str]
) -> None:
    assert run(tmp_path, "feeds", "add", *feeds.values()).exit_code == 0
    before = datetime.now(UTC)
    result = run(tmp_path, "poll", "--all")
    assert result.exit_code == 0, result.output
    rows = feed_rows(tmp_path)
    moved_to = feeds["old"].replace("/old", "/new")
    assert moved_to in rows, "a 301 updates the stored URL"
    assert rows[moved_to]["previous_url"] == feeds["old"]
    for name, (status, count, error_word) in EXPECTED.items():
        url = moved_to if name == "old" else feeds[name]
        row = rows[url]
        assert (row["last_status"], row["n"]) == (status, count), (name, row)
        if error_word:
            assert error_word.lower() in (row["last_error"] or "").lower(), (
                name,
                row["last_error"],
            )
            assert row["error_count"] == 1
            assert row["failing_since"] is not None
        else:
            assert row["error_count"] == 0, (name, row)
    assert rows[feeds["gone"]]["next_poll_at"] is None
    assert rows[feeds["broken"]]["last_warning"], "a usable malformed feed keeps its warning"
    throttled_next = datetime.fromisoformat(rows[feeds["throttled"]]["next_poll_at"])
    assert throttled_next >= before + timedelta(seconds=7200 - 5), "Retry-After is honoured"

    events = [e for e in json_logs(result.stderr) if e["event"] == "feed_polled"]
    assert sorted(e["feed"] for e in events) == sorted(feeds.values())
    assert all(e["status"] in ("ok", "failed", "gone") for e in events)
    assert "polled 17 feeds" in result.output


def test_second_poll_stores_nothing_new(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/good").respond_with_data(GOOD, content_type="application/rss+xml")
    url = str(httpserver.url_for("/good"))
    run(tmp_path, "feeds", "add", url)
    first = run(tmp_path, "poll", "--all", workers=1)
    assert "3 new items" in first.output
    second = run(tmp_path, "poll", "--all", workers=1)
    assert "0 new items, 0 updated" in second.output
    assert "1 unchanged" in second.output  # no validators, same bytes: not parsed again
    conn = sqlite3.connect(tmp_path / "l.db")
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM polls").fetchone()[0] == 2


def test_changed_item_is_updated_not_duplicated(tmp_path: Path, httpserver: HTTPServer) -> None:
    edited = GOOD.replace(b"Revenue up 12%.", b"Revenue up 14% (corrected).")
    httpserver.expect_ordered_request("/feed").respond_with_data(GOOD)
    httpserver.expect_ordered_request("/feed").respond_with_data(edited)
    url = str(httpserver.url_for("/feed"))
    run(tmp_path, "feeds", "add", url)
    run(tmp_path, "poll", "--all", workers=1)
    result = run(tmp_path, "poll", "--all", workers=1)
    assert "0 new items, 1 updated" in result.output
    conn = sqlite3.connect(tmp_path / "l.db")
    summaries = [r[0] for r in conn.execute("SELECT summary FROM items ORDER BY id")]
    assert summaries[1] == "Revenue up 14% (corrected)."
    assert len(summaries) == 3


def test_a_site_moved_to_https_keeps_its_items_instead_of_storing_them_twice(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    # Every guid and link goes from http://acme.example to https://www.acme.example; one
    # item gains a guid it did not have; one is really new; one post is then listed in both
    # forms, and each stays an item, as it did before.
    def item(base: str, n: int, title: str, *, guid: bool = True) -> tuple[str, str, str, str]:
        return (title, f"{base}/a{n}", f"{base}/?p={n}" if guid else "", f"Post {n}.")

    old, moved = "http://acme.example", "https://www.acme.example"
    first = [
        item(old, 1, "Acme hires"),
        item(old, 2, "Acme results"),
        item(old, 3, "Help", guid=False),
    ]
    second = [*first, item(old, 4, "Acme in both forms")]
    third = [
        item(moved, 1, "Acme hires"),
        item(moved, 2, "Acme results"),
        item(moved, 3, "Help"),
        item(moved, 4, "Acme in both forms"),
        item(old, 4, "Acme in both forms"),
        item(moved, 5, "Acme opens a store"),
    ]
    for items in (first, second, third):
        body = rss("Acme", *items).replace(b"<guid></guid>", b"")
        httpserver.expect_ordered_request("/feed").respond_with_data(body)
    url = str(httpserver.url_for("/feed"))
    run(tmp_path, "feeds", "add", url)
    assert "3 new items" in run(tmp_path, "poll", "--all", workers=1).output
    assert "1 new item," in run(tmp_path, "poll", "--all", workers=1).output
    conn = sqlite3.connect(tmp_path / "l.db")
    before = dict(conn.execute("SELECT title, id FROM items WHERE title != 'Acme in both forms'"))
    result = run(tmp_path, "poll", "--all", workers=1)
    # a1-a3 renamed (and updated: their links changed), a4's https form and a5 new.
    assert "2 new items, 3 updated" in result.output, result.output
    (polled,) = [e for e in json_logs(result.stderr) if e["event"] == "feed_polled"]
    assert (polled["new"], polled["updated"], polled["seen"], polled["renamed"]) == (2, 3, 1, 3)
    rows = conn.execute("SELECT id, title, guid, url FROM items ORDER BY id").fetchall()
    assert [row[1] for row in rows] == [
        "Acme hires",
        "Acme results",
        "Help",
        "Acme in both forms",
        "Acme in both forms",
        "Acme opens a store",
    ]
    by_title = {title: (item_id, guid, link) for item_id, title, guid, link in rows}
    assert by_title["Acme hires"] == (before["Acme hires"], f"{moved}/?p=1", f"{moved}/a1")
    assert by_title["Help"] == (before["Help"], f"{moved}/?p=3", f"{moved}/a3")
    # The next poll of the same body finds every item under its key: nothing renamed.
    httpserver.expect_ordered_request("/feed").respond_with_data(
        rss("Acme", *third).replace(b"<guid></guid>", b"") + b" "
    )
    again = run(tmp_path, "poll", "--all", workers=1)
    (polled,) = [e for e in json_logs(again.stderr) if e["event"] == "feed_polled"]
    assert (polled["new"], polled["updated"], polled["seen"]) == (0, 0, 6)
    assert "renamed" not in polled


def test_conditional_get_304_costs_no_parsing(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/feed").respond_with_data(
        GOOD, headers={"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 09:00:00 GMT"}
    )
    httpserver.expect_ordered_request(
        "/feed",
        headers={"If-None-Match": '"v1"', "If-Modified-Since": "Tue, 24 Nov 2026 09:00:00 GMT"},
    ).respond_with_data("", status=304)
    url = str(httpserver.url_for("/feed"))
    run(tmp_path, "feeds", "add", url)
    run(tmp_path, "poll", "--all", workers=1)
    result = run(tmp_path, "poll", "--all", workers=1)
    assert "1 not modified" in result.output
    httpserver.check_assertions()


def test_poll_without_all_only_polls_due_feeds(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data(GOOD)
    run(tmp_path, "feeds", "add", str(httpserver.url_for("/feed")))
    assert "polled 1 feed " in run(tmp_path, "poll", workers=1).output
    assert "nothing due" in run(tmp_path, "poll", workers=1).output


UNDATED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Harbour notices</title><link>https://notices.example/</link>
<lastBuildDate>{built}</lastBuildDate>{items}</channel></rss>"""


def undated(built: datetime, *items: tuple[str, str]) -> bytes:
    """An RSS body whose items have no date, under a channel built at `built`."""
    body = "".join(
        f"<item><title>{title}</title><link>https://notices.example/{n}</link>"
        f"<description>{summary}</description></item>"
        for n, (title, summary) in enumerate(items)
    )
    date = format_datetime(built, usegmt=True)
    return UNDATED.format(built=date, items=body).encode()


def test_a_new_feeds_undated_archive_takes_the_feeds_date_and_later_items_their_own(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """The first poll's items without a date are the feed's archive: stored as first seen,
    they would be today's news in every digest and spike. They take the channel's date; an
    item that appears later is dated when first seen, even under a channel date that never
    changes, and an edit keeps the date an item was stored with."""
    built = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    ferry, office = ("Ferry timetable", "Two extra crossings."), ("Office moves", "To the quay.")
    later = ("Quay closed for repairs", "From Monday, use the north gate.")
    edited = ("Ferry timetable", "Two extra crossings, and one on Sundays.")
    httpserver.expect_ordered_request("/feed").respond_with_data(undated(built, ferry, office))
    httpserver.expect_ordered_request("/feed").respond_with_data(
        undated(built, edited, office, later)
    )
    run(tmp_path, "feeds", "add", str(httpserver.url_for("/feed")))
    assert "2 new items" in run(tmp_path, "poll", "--all", workers=1).output
    second_poll = datetime.now(UTC).replace(microsecond=0)
    assert "1 new item, 1 updated" in run(tmp_path, "poll", "--all", workers=1).output

    conn = sqlite3.connect(tmp_path / "l.db")
    rows = {
        title: (datetime.fromisoformat(published), estimated, summary)
        for title, published, estimated, summary in conn.execute(
            "SELECT title, published_at, date_is_estimated, summary FROM items"
        )
    }
    assert rows["Ferry timetable"] == (built, 1, "Two extra crossings, and one on Sundays.")
    assert rows["Office moves"] == (built, 1, "To the quay.")
    published, estimated, _ = rows["Quay closed for repairs"]
    assert published >= second_poll
    assert estimated == 1
