"""The command line: clear messages and exit codes, feeds management, search and export."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from listener.cli import cli
from listener.feeds.opml import parse_opml
from listener.store import open_store
from tests.conftest import NOW
from tests.file_limits import cap_file_size
from tests.polls import apply_poll
from tests.test_store import make_item, poll

ROOT = Path(__file__).parent.parent


def invoke(db: Path, *args: str, config: Path | None = None) -> Result:
    base = ["--db", str(db), "--log-format", "json"]
    if config is not None:
        base = ["--config", str(config), *base]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def no_starter_feeds(tmp_path: Path) -> Path:
    """Settings under which a new database starts empty (the defaults import starter feeds)."""
    config = tmp_path / "bare.toml"
    config.write_text('import_opml_on_init = ""\n')
    return config


def test_missing_config_file_is_one_clear_message(tmp_path: Path) -> None:
    result = invoke(tmp_path / "l.db", "check-config", config=tmp_path / "missing.toml")
    assert result.exit_code == 1
    assert "config file not found" in result.output
    assert "Traceback" not in result.output


def test_bad_config_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[poll]\ninterval_minutes = -1\n[[feeds]]\nurl = "file:///etc/passwd"\n')
    result = invoke(tmp_path / "l.db", "poll", config=config)
    assert result.exit_code == 1
    assert "poll.interval_minutes: must be > 0" in result.output
    assert "feeds[0].url: not an http(s) URL" in result.output


def test_check_config_prints_effective_settings(tmp_path: Path) -> None:
    result = invoke(tmp_path / "l.db", "check-config", config=ROOT / "config" / "listener.toml")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["poll"]["interval_minutes"] == 60
    assert data["database"] == str(tmp_path / "l.db")
    assert data["cache_dir"] == os.environ["LISTENER_CACHE_DIR"]  # conftest's, not ~/.cache


def test_new_database_starts_with_the_starter_feeds(tmp_path: Path) -> None:
    result = invoke(tmp_path / "l.db", "init", config=ROOT / "config" / "listener.toml")
    assert result.exit_code == 0
    starter, _ = parse_opml((ROOT / "config" / "feeds.opml").read_bytes())
    assert f"{len(starter)} feeds, 0 items" in result.output


def test_feeds_add_list_remove(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    result = invoke(
        db,
        "feeds",
        "add",
        "https://a.example/rss",
        "https://b.example/rss",
        "--tag",
        "HR",
        "--interval",
        "2h",
        config=no_starter_feeds(tmp_path),
    )
    assert result.output.splitlines() == [
        "added https://a.example/rss",
        "added https://b.example/rss",
    ]
    assert invoke(db, "feeds", "add", "https://a.example/rss").output.startswith("updated")
    listed = json.loads(invoke(db, "feeds", "list", "--json").output)
    assert [(f["url"], f["tags"], f["interval_minutes"], f["state"]) for f in listed] == [
        ("https://a.example/rss", ["hr"], 120, "new (not polled yet)"),
        ("https://b.example/rss", ["hr"], 120, "new (not polled yet)"),
    ]
    assert "new (not polled yet)" in invoke(db, "feeds", "list").output
    assert invoke(db, "feeds", "remove", "https://a.example/rss").output.startswith("removed")
    missing = invoke(db, "feeds", "remove", "https://a.example/rss")
    assert missing.exit_code == 1
    assert "not a known feed" in missing.output


def test_feeds_add_rejects_non_http_urls(tmp_path: Path) -> None:
    result = invoke(tmp_path / "l.db", "feeds", "add", "ftp://x.example/feed")
    assert result.exit_code == 2
    assert "not an http(s) URL" in result.output


@pytest.mark.parametrize("interval", ["soon", "0m"])
def test_feeds_add_rejects_bad_intervals(tmp_path: Path, interval: str) -> None:
    result = invoke(
        tmp_path / "l.db", "feeds", "add", "https://a.example/rss", "--interval", interval
    )
    assert result.exit_code == 2
    assert "not a duration" in result.output


def test_opml_import_is_idempotent_and_export_round_trips(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    opml = ROOT / "config" / "feeds.opml"
    first = invoke(db, "feeds", "import", str(opml), config=no_starter_feeds(tmp_path))
    starter, _ = parse_opml(opml.read_bytes())
    assert f"{len(starter)} feeds added, 0 already known" in first.output
    again = invoke(db, "feeds", "import", str(opml))
    assert f"0 feeds added, {len(starter)} already known" in again.output
    exported = invoke(db, "feeds", "export").output
    feeds, problems = parse_opml(exported.encode())
    assert problems == []
    assert {(f.url, f.tags) for f in feeds} == {(f.url, f.tags) for f in starter}


def test_opml_import_of_a_non_opml_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.opml"
    bad.write_text("<html></html>")
    result = invoke(tmp_path / "l.db", "feeds", "import", str(bad))
    assert result.exit_code == 1
    assert "not <opml>" in result.output


@pytest.fixture
def filled_db(tmp_path: Path) -> Path:
    path = tmp_path / "l.db"
    store = open_store(path)
    store.add_feed("https://rh.example/feed", now=NOW, tags=["hr"])
    (source,) = store.feed_sources(None)
    apply_poll(
        store,
        poll(source.id),
        [
            make_item(
                source.id, 1, title="L'équipe RH recrute", summary="Télétravail, « confiance »"
            ),
            make_item(source.id, 2, title="Résultats annuels", summary='CSV "quotes", commas'),
        ],
    )
    store.close()
    return path


def test_search_prints_matches(filled_db: Path) -> None:
    result = invoke(filled_db, "search", "equipe")
    assert result.exit_code == 0
    assert "L'équipe RH recrute" in result.stdout
    assert "1 item" in result.stderr
    rows = [
        json.loads(line)
        for line in invoke(filled_db, "search", "recru*", "--json").stdout.splitlines()
    ]
    assert [r["title"] for r in rows] == ["L'équipe RH recrute"]


@pytest.mark.parametrize("query", ['"unbalanced', "AND", "(x", "x)"])
def test_malformed_search_is_a_usage_error_without_traceback(filled_db: Path, query: str) -> None:
    result = invoke(filled_db, "search", query)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "position" in result.output or "unclosed" in result.output


def test_export_jsonl_and_csv(filled_db: Path) -> None:
    lines = invoke(filled_db, "export").stdout.splitlines()
    assert [json.loads(line)["title"] for line in lines] == [
        "Résultats annuels",
        "L'équipe RH recrute",
    ]
    table = list(csv.DictReader(io.StringIO(invoke(filled_db, "export", "--format", "csv").stdout)))
    assert table[0]["summary"] == 'CSV "quotes", commas'
    assert table[1]["feed_url"] == "https://rh.example/feed"


def test_export_to_a_file_says_how_many_items_it_wrote(filled_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "items.csv"
    result = invoke(filled_db, "export", "--format", "csv", "-o", str(target))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == f"2 items exported to {target}\n"
    assert len(list(csv.DictReader(target.open(encoding="utf-8")))) == 2
    # No item matches: the file still exists, empty, and the count says so.
    empty = tmp_path / "none.jsonl"
    result = invoke(filled_db, "export", "--function", "cs", "-o", str(empty))
    assert result.stderr == f"0 items exported to {empty}\n"
    assert empty.read_bytes() == b""


def test_an_export_that_cannot_be_written_whole_keeps_the_previous_file(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    store = open_store(db)
    store.add_feed("https://rh.example/feed", now=NOW)
    (source,) = store.feed_sources(None)
    items = [make_item(source.id, n, title=f"Item {n}", summary="word " * 400) for n in range(600)]
    apply_poll(store, poll(source.id), items)
    store.close()
    target = tmp_path / "items.jsonl"
    target.write_text("yesterday's export\n")
    # A real fault: the export (about 1.3 MB) outgrows what the kernel lets the process
    # write; the database, only read, is not written.
    done = subprocess.run(
        [sys.executable, "-m", "listener", "--db", str(db), "export", "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: cap_file_size(1 << 19),
    )
    assert done.returncode == 1
    assert done.stderr == f"Error: cannot write {target}: File too large\n"
    assert target.read_text() == "yesterday's export\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["items.jsonl", "l.db"]
    # Without the cap, the same export replaces it whole.
    assert len(invoke(db, "export", "-o", str(target)).stderr.splitlines()) == 1
    assert len(target.read_text().splitlines()) == 600


def test_an_export_to_a_missing_folder_is_an_error(filled_db: Path, tmp_path: Path) -> None:
    result = invoke(filled_db, "export", "-o", str(tmp_path / "nope" / "items.csv"))
    assert result.exit_code == 1
    assert f"cannot write {tmp_path / 'nope' / 'items.csv'}: no folder" in result.stderr
    assert not (tmp_path / "nope").exists()


def test_export_since_filters(filled_db: Path) -> None:
    # The items are dated 1 and 2 hours before NOW (2026-11-26 08:00Z): far in the past
    # relative to a --since of one day only when the wall clock is later than that.
    everything: list[dict[str, Any]] = [
        json.loads(line)
        for line in invoke(filled_db, "export", "--since", "5200w").stdout.splitlines()
    ]
    assert len(everything) == 2


def test_locked_database_gives_a_clear_error_and_nonzero_exit(
    filled_db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("busy_timeout_s = 0.2\n")
    other = sqlite3.connect(filled_db, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        result = invoke(filled_db, "feeds", "add", "https://x.example/rss", config=config)
    finally:
        other.rollback()
        other.close()
    assert result.exit_code == 1
    assert "locked" in result.output
