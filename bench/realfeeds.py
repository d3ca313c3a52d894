"""`python -m bench.realfeeds DIR`: poll every feed file of DIR over HTTP on 127.0.0.1, twice.

A robustness check against real-world captures (odd encodings, broken XML, mojibake, missing
ids), which stay outside the repository. For each file it prints what feedparser alone finds
in the bytes and what listener stored, flags any difference, and checks that the second poll
stores nothing new. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import sqlite3
import sys
import tempfile
import threading
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser

from listener.config import parse_settings
from listener.feeds.fetch import HttpFetcher
from listener.jobs.poll import poll_feeds
from listener.jobs.services import Services
from listener.store import open_store


class _Handler(SimpleHTTPRequestHandler):
    def guess_type(self, path: Any) -> str:
        name = str(path)
        if name.endswith(".json"):
            return "application/feed+json"
        if name.endswith(".html"):
            return "text/html"
        return "application/xml"

    def end_headers(self) -> None:
        if self.path.endswith(".gz"):  # a server would send a gzip body as Content-Encoding
            self.send_header("Content-Encoding", "gzip")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _feedparser_count(path: Path) -> tuple[int, int]:
    """Entries feedparser returns, and how many of them are distinct and not empty."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    entries = feedparser.parse(io.BytesIO(data)).entries
    fields = ("id", "link", "title", "summary", "published")
    distinct = {tuple(str(entry.get(f, "")) for f in fields) for entry in entries}
    return len(entries), len([d for d in distinct if any(d[:4])])  # a date alone is nothing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realfeeds")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--db", type=Path, help="keep the database at this path (new file)")
    options = parser.parse_args(argv)
    files = sorted(p for p in options.folder.iterdir() if p.is_file())
    handler = functools.partial(_Handler, directory=str(options.folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        db_path = options.db or Path(tmp) / "real.db"
        store = open_store(db_path)
        settings = parse_settings({"poll": {"max_per_host": 8}}, {})
        services = Services(settings, store, HttpFetcher(settings.poll.limits))
        now = datetime.now(UTC)
        for path in files:
            store.add_feed(base + path.name, now=now)
        first = {r.url: r for r in poll_feeds(services, now, all_feeds=True)}
        second = poll_feeds(services, now, all_feeds=True)
        conn = sqlite3.connect(db_path)
        stored = dict(
            conn.execute(
                "SELECT feeds.url, count(items.id) FROM feeds LEFT JOIN items"
                " ON items.feed_id = feeds.id GROUP BY feeds.url"
            ).fetchall()
        )
        print(f"{'file':<52} {'entries':>7} {'usable':>6} {'stored':>6} {'status':<7} note")
        for path in files:
            url = base + path.name
            entries, usable = _feedparser_count(path)
            result = first[url]
            got = stored.get(url, 0)
            note = result.error or ""
            flag = "" if got >= usable else "  <-- fewer than the distinct usable entries"
            if flag:
                failures += 1
            print(
                f"{path.name[:52]:<52} {entries:>7} {usable:>6} {got:>6} {result.status:<7} "
                f"{note[:50]}{flag}"
            )
        again = sum(r.new for r in second)
        total = sum(stored.values())
        print(f"\n{len(files)} files, {total} items stored; second poll: {again} new")
        if again:
            failures += 1
        services.fetcher.close()
        store.close()
    server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
