"""Say what is happening: `feeds list` with a header, titles and the last error's reason,
"no network?" once when every feed fails to connect, when the next digest goes out, and a
stopped daemon said to be stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from pytest_httpserver import HTTPServer

from listener.config import SHIPPED_MODEL
from listener.store import Store, open_store
from tests.smtp import free_port
from tests.test_cli import invoke, no_starter_feeds

# 10:00 in Paris, after the default recipient's 07:30 digest.
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_feeds_list_has_a_header_the_titles_and_the_last_error(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    db, config = tmp_path / "l.db", no_starter_feeds(tmp_path)
    httpserver.expect_request("/missing").respond_with_data("no", status=404)
    missing = str(httpserver.url_for("/missing"))
    invoke(db, "feeds", "add", missing, config=config)
    store = open_store(db)
    store.add_feed("https://rh.example/feed", now=NOW, title="Le blog RH")
    store.close()
    assert invoke(db, "poll", "--all", config=config).exit_code == 0
    lines = invoke(db, "feeds", "list", config=config).stdout.splitlines()
    assert lines[0].split() == ["items", "last", "poll", "(UTC)", "state", "tags", "feed"]
    failing = lines.index(next(line for line in lines if line.endswith(missing)))
    assert "failing since" in lines[failing]
    assert lines[failing + 1].strip() == "last error: HTTP 404 Not Found"
    assert any("Le blog RH  https://rh.example/feed" in line for line in lines)


def test_every_feed_failing_to_connect_says_no_network_once(tmp_path: Path) -> None:
    db, config = tmp_path / "l.db", no_starter_feeds(tmp_path)
    closed = free_port()  # nothing listens there: connections are refused
    urls = [f"http://127.0.0.1:{closed}/feed{n}" for n in range(3)]
    invoke(db, "feeds", "add", *urls, config=config)
    out = invoke(db, "poll", "--all", config=config).stdout
    assert "polled 3 feeds" in out
    assert out.count("no network? every feed failed to connect (3 feeds): cannot connect") == 1
    assert "failed http" not in out  # not one line per feed


def beat(store: Store, now: datetime, model_version: str | None = None) -> None:
    """A heartbeat of daemon 4242, started two hours before NOW, next poll 5 minutes on."""
    store.record_heartbeat(
        pid=4242,
        host="h",
        version="0",
        started_at=NOW - timedelta(hours=2),
        now=now,
        next_runs={"poll": now + timedelta(minutes=5)},
        model_version=model_version,
    )


def test_status_says_when_each_digest_goes_out_and_that_a_stopped_daemon_is_stopped(
    tmp_path: Path,
) -> None:
    db, config = tmp_path / "l.db", no_starter_feeds(tmp_path)
    store = open_store(db)
    beat(store, NOW - timedelta(hours=1))
    store.record_daemon_stopped(4242, NOW - timedelta(hours=1))
    # Today's digest (07:30 Paris) went out: the next one is tomorrow's.
    period = (NOW - timedelta(days=1), NOW)
    claim = store.claim_digest("team", "2026-11-26", period=period, now=NOW, stale_before=NOW)
    assert claim is not None
    store.mark_digest_sent(
        "team", "2026-11-26", claim, now=NOW, item_count=0, message_id=None, delivery="outbox"
    )
    store.close()
    with time_machine.travel(NOW, tick=False):
        out = invoke(db, "status", config=config).stdout
    assert "daemon:   stopped (pid 4242" in out
    assert "next poll" not in out  # no stale "next" times
    assert "nothing polls, sends or checks until `listener run` starts again" in out
    assert "next digest: team at 07:30 Europe/Paris on 2026-11-27 (once the daemon runs)" in out


def test_status_says_when_the_daemon_runs_an_older_model_than_the_file(tmp_path: Path) -> None:
    # `listener model train` replaced the model file after the daemon loaded the old one:
    # until its next poll loads the new one (or if that fails), status says so.
    db, config = tmp_path / "l.db", no_starter_feeds(tmp_path)
    shipped = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())["model_version"]

    def status_with_daemon_on(version: str) -> tuple[str, dict[str, Any]]:
        store = open_store(db)
        beat(store, NOW, model_version=version)
        store.close()
        with time_machine.travel(NOW, tick=False):
            text = invoke(db, "status", config=config).stdout
            report = json.loads(invoke(db, "status", "--json", config=config).stdout)
        return text, report

    text, report = status_with_daemon_on("bf-000000000000")
    assert "daemon:   running (pid 4242" in text
    assert (
        f"  model: it scores with bf-000000000000; {SHIPPED_MODEL} now holds {shipped}, which "
        "it loads before its next poll (if it stays, its log says why: model_reload_failed)"
    ) in text
    assert report["daemon"]["model_version"] == "bf-000000000000"
    assert report["model_file"] == {"path": str(SHIPPED_MODEL), "version": shipped}
    text, _ = status_with_daemon_on(shipped)
    assert "model:" not in text
