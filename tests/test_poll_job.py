"""poll_feeds with the fetcher and the parser handed in: no server, no feedparser."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from listener.classify.decision import Prediction
from listener.config import parse_settings
from listener.domain import LABELS, FeedSource, Fetched, FetchOutcome, Item, ParsedFeed
from listener.errors import FetchError
from listener.jobs.poll import parse_processes, poll_feeds, poll_job
from listener.jobs.services import Services
from listener.store import open_store
from tests.conftest import NOW


class FakeFetcher:
    """Answers every feed with the same body, or the error given for its URL."""

    def __init__(self, errors: dict[str, FetchError]) -> None:
        self.errors = errors
        self.fetched: list[str] = []

    def fetch_many(
        self, sources: Iterable[FeedSource], stop: threading.Event | None = None
    ) -> Iterator[tuple[FeedSource, FetchOutcome | FetchError]]:
        for source in sources:
            self.fetched.append(source.url)
            error = self.errors.get(source.url)
            yield source, error or Fetched(source.url, 200, b"<rss/>", {"etag": '"1"'})

    def close(self) -> None:
        pass


def two_items(feed_id: int, fetched: Fetched) -> ParsedFeed:
    items = tuple(
        Item(feed_id, f"{feed_id}-{n}", None, None, f"Acme {n}", "", None, None, None, "en", "h")
        for n in range(2)
    )
    return ParsedFeed(title="Fake", site_url=None, items=items)


def test_poll_feeds_runs_on_the_fetcher_and_parser_it_is_given(tmp_path: Path) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    for url in ("https://a.example/feed", "https://b.example/feed"):
        store.add_feed(url, now=NOW)
    fetcher = FakeFetcher({"https://b.example/feed": FetchError("https://b.example/feed", "down")})
    services = Services(settings, store, fetcher, parse=two_items, rand=lambda: 0.5)
    results = {r.url: r for r in poll_feeds(services, NOW, all_feeds=True)}
    assert sorted(fetcher.fetched) == ["https://a.example/feed", "https://b.example/feed"]
    assert (results["https://a.example/feed"].status, results["https://a.example/feed"].new) == (
        "ok",
        2,
    )
    assert results["https://b.example/feed"].status == "failed"
    feeds = {row.url: row for row in store.list_feeds()}
    assert (feeds["https://a.example/feed"].title, feeds["https://a.example/feed"].item_count) == (
        "Fake",
        2,
    )
    assert feeds["https://b.example/feed"].error_count == 1
    again = poll_feeds(services, NOW, all_feeds=True)  # the same bytes: nothing to parse
    assert {r.url: r.status for r in again}["https://a.example/feed"] == "unchanged"


def test_the_poll_job_says_no_network_once_when_every_feed_fails_to_connect(
    tmp_path: Path,
) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    urls = [f"https://{name}.example/feed" for name in "abc"]
    for url in urls:
        store.add_feed(url, now=NOW)
    fetcher = FakeFetcher(
        {url: FetchError(url, "cannot connect: [Errno 101] Network is unreachable") for url in urls}
    )
    services = Services(settings, store, fetcher, parse=two_items, rand=lambda: 0.5)
    with capture_logs() as logs:
        poll_job(services, NOW)
    unreachable = [entry for entry in logs if entry["event"] == "network_unreachable"]
    assert unreachable == [
        {
            "event": "network_unreachable",
            "log_level": "warning",
            "feeds": 3,
            "error": "cannot connect: [Errno 101] Network is unreachable",
        }
    ]


class CountingClassifier:
    """Labels every text "sales" from its title; records each predict call's batch size."""

    version = "counting-1"
    labels = LABELS

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        self.batches.append(list(texts))
        # The text's own number as its score: a prediction stored on the wrong item shows.
        return [
            Prediction(("sales",), {"sales": float(text.split()[1]) / 100}, False) for text in texts
        ]


def test_poll_feeds_classifies_many_feeds_in_one_call_and_keeps_each_item_own(
    tmp_path: Path,
) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    urls = [f"https://f{n}.example/feed" for n in range(3)]
    for url in urls:
        store.add_feed(url, now=NOW)
    classifier = CountingClassifier()
    services = Services(
        settings, store, FakeFetcher({}), parse=two_items, classifier=classifier, rand=lambda: 0.5
    )
    results = poll_feeds(services, NOW, all_feeds=True)
    assert sorted(r.url for r in results) == urls
    assert [len(batch) for batch in classifier.batches] == [6]  # 3 feeds x 2 items, one call
    stored = store.db.execute(
        "SELECT items.title, predictions.top_score FROM items"
        " JOIN predictions ON predictions.item_id = items.id"
    ).fetchall()
    assert len(stored) == 6
    assert all(float(title.split()[1]) / 100 == score for title, score in stored)
    assert store.db.execute("SELECT count(*) FROM polls").fetchone()[0] == 3


class SlowFetcher(FakeFetcher):
    """Fetches for ever, one feed at a time, until the poll tells it to stop."""

    def __init__(self) -> None:
        super().__init__({})
        self.stopped = threading.Event()

    def fetch_many(
        self, sources: Iterable[FeedSource], stop: threading.Event | None = None
    ) -> Iterator[tuple[FeedSource, FetchOutcome | FetchError]]:
        assert stop is not None
        source = next(iter(sources))
        while not stop.is_set():
            yield source, Fetched(source.url, 200, b"<rss/>", {"etag": '"1"'})
        self.stopped.set()


def test_a_writer_that_fails_stops_the_fetcher_thread_and_raises(tmp_path: Path) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    store.add_feed("https://a.example/feed", now=NOW)
    fetcher = SlowFetcher()
    services = Services(settings, store, fetcher, parse=two_items, rand=lambda: 0.5)

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the writer")

    store.apply_all = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug in the writer"):
        poll_feeds(services, NOW, all_feeds=True)
    assert fetcher.stopped.is_set(), "the fetcher thread was told to stop"
    assert not services.stop.is_set(), "the caller's stop (the daemon's) is left alone"
    assert [t for t in threading.enumerate() if t.name == "poll-fetch"] == []


def test_an_error_in_the_fetcher_thread_reaches_the_caller(tmp_path: Path) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    store.add_feed("https://a.example/feed", now=NOW)
    store.add_feed("https://b.example/feed", now=NOW)

    def parse(feed_id: int, fetched: Fetched) -> ParsedFeed:
        if fetched.url.startswith("https://b."):
            raise KeyError("a bug in the parser")
        return two_items(feed_id, fetched)

    services = Services(settings, store, FakeFetcher({}), parse=parse, rand=lambda: 0.5)
    with pytest.raises(KeyError, match="a bug in the parser"):
        poll_feeds(services, NOW, all_feeds=True)
    assert [t for t in threading.enumerate() if t.name == "poll-fetch"] == []


def test_the_poll_detects_the_language_of_the_items_it_writes(tmp_path: Path) -> None:
    settings = parse_settings({"poll": {"parse_workers": 1}}, {})
    store = open_store(tmp_path / "l.db")
    store.add_feed("https://a.example/feed", now=NOW)
    texts = {
        "fr": (
            "Le groupe ouvre cent postes",
            "Les candidatures sont ouvertes jusqu'à la fin du mois.",
        ),
        "en": (
            "The group opens a hundred jobs",
            "Applications are open until the end of the month.",
        ),
    }

    def parse(feed_id: int, fetched: Fetched) -> ParsedFeed:
        items = tuple(
            Item(feed_id, f"k-{code}", None, None, title, summary, None, None, None, None, code)
            for code, (title, summary) in texts.items()
        )
        assert all(item.lang is None for item in items)  # parsers leave it to the writer
        return ParsedFeed(title="Fake", site_url=None, items=items)

    services = Services(settings, store, FakeFetcher({}), parse=parse, rand=lambda: 0.5)
    poll_feeds(services, NOW, all_feeds=True)
    rows = store.db.execute("SELECT title, lang FROM items ORDER BY title").fetchall()
    assert rows == [(texts["fr"][0], "fr"), (texts["en"][0], "en")]


@pytest.mark.parametrize(
    ("parse_workers", "cores", "processes"),
    [
        (0, 1, 0),  # automatic on one core: inline
        (0, 2, 1),  # automatic leaves a core to the poller
        (0, 8, 7),
        (1, 8, 0),  # 1 always parses inline
        (2, 1, 2),  # an explicit count is kept
        (3, 8, 3),
    ],
)
def test_parse_processes_leaves_a_core_to_the_poller(
    parse_workers: int, cores: int, processes: int
) -> None:
    assert parse_processes(parse_workers, cores) == processes
